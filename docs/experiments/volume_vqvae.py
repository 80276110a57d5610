"""A VQ-VAE over whole stacks (issue 52): how well does a 3D code of a head give the head back?

The slice VQ-VAE of `pretrained/ixi-t1-128-volumes` codes each 128 x 128 axial slice of a
64-slice stack as 16 x 16 codes (16,384 a head); its real stacks decoded from their slice codes
give slice SSIM 0.88 and a streak index 1.19x the real heads'. A `VolumeVQVAE`
(brainvq/models/volume_vqvae.py) codes the stack as one 3D grid (8 x 16 x 16 = 2,048 codes at 8x
in every direction, 16 x 16 x 16 with `--slice-downsamples 2`) and decodes all its slices
together. This trains one on random crops of the 125 training subjects' stacks (and their
left-right mirror images), keeps the epoch with the lowest error on the 20 validation subjects'
whole stacks, and judges those stacks given back: slice SSIM and the streak figures of
`brainvq/evaluation/streaks.py`, beside the real stacks. Run from the repository root
(2 CPU cores: about 0.6 s a stack's worth of crops at `--channels 32`):

    PYTHONPATH=. python docs/experiments/volume_vqvae.py --data-dir ../shared/data/ixi \
        --name iso8 --epochs 20
    PYTHONPATH=. python docs/experiments/volume_vqvae.py --data-dir ../shared/data/ixi \
        --name iso8 --judge

`--resume` goes on from the last epoch kept; `--export DIR` writes the best epoch's model without
its optimizer state. `--tune-from RUN --name NEW --learning-rate 1e-4` fine-tunes RUN's decoder
with a 3D PatchGAN at a held `--adversarial-weight` (encoder and codebook frozen: the codes, and a
prior over them, keep their meaning); judge it with `--checkpoint last`. `--fresh-decoder
--upsampling resize` trains a new decoder over RUN's codes instead (at `--adversarial-weight 0`
on the reconstruction loss alone), to be tuned in turn. Writes
`output/volume-vqvae/<name>/` (its `best.keras`, `last.keras`, log and `judged.json`); the stacks
are cached in `output/volume-vqvae/stacks.npz`.
"""
import argparse
import json
import pathlib
import shutil
import time

import keras
import numpy as np

from brainvq.evaluation import streaks
from brainvq.generation.stacks import decode_volumes, encode_volumes
from brainvq.losses import adversarial
from brainvq.models.volume_vqvae import UPSAMPLING, VolumeVQVAE
from brainvq.training.volume3d_stage import RandomCrops, StackLoss


def load_stacks(args):
    """{"train": [V, S, H, W] float16, "validate": ...}: the subjects' stacks of the shipped
    volume model's split and length; cached."""
    cache = args.root / "stacks.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return {name: stored[name] for name in ("train", "validate")}
    from brainvq.data import layouts
    from brainvq.data.stacks import subject_stacks
    from brainvq.generation import stacks as stack_sampling
    from brainvq.runs import run_folder

    values, _ = run_folder.load_run(args.output_dir, {"data_dir": args.data_dir})
    splits, _ = layouts.load_splits_for(values)
    length = stack_sampling.stack_length(values)
    arrays = {name: np.stack(list(subject_stacks(splits[name], length).values()))
              .astype(np.float16) for name in ("train", "validate")}
    args.root.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def build(args):
    return VolumeVQVAE(num_codes=args.num_codes, code_dim=args.code_dim,
                       num_downsamples=args.num_downsamples, channels=args.channels,
                       slice_downsamples=args.slice_downsamples, upsampling=args.upsampling)


def train(args, stacks):
    work = args.root / args.name
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    initial_epoch = 0
    if args.resume and (work / "last.keras").is_file():
        model = keras.saving.load_model(work / "last.keras")
        initial_epoch = json.loads(state_path.read_text())["epochs_done"]
        print(f"resuming {work} after epoch {initial_epoch}", flush=True)
    else:
        keras.utils.set_random_seed(args.seed)
        model = build(args)
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                      loss=StackLoss(args.ssim_weight))
    crops = RandomCrops(stacks["train"], tuple(args.crop), args.batch_size, args.steps_per_epoch,
                        args.seed)
    crops.epoch = initial_epoch
    validate = stacks["validate"].astype(np.float32)[..., None]
    best = json.loads(state_path.read_text()).get("best") if initial_epoch else None

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            nonlocal best
            if best is None or logs["val_loss"] < best:
                best = float(logs["val_loss"])
                self.model.save(work / "best.keras")
            self.model.save(work / "last.partial.keras")
            (work / "last.partial.keras").replace(work / "last.keras")
            state_path.write_text(json.dumps({"epochs_done": epoch + 1, "best": best,
                                              "settings": settings(args)}, indent=1))

    model.fit(crops, validation_data=(validate, validate), validation_batch_size=1,
              epochs=args.epochs, initial_epoch=initial_epoch, verbose=2,
              callbacks=[Keep(), keras.callbacks.CSVLogger(work / "log.csv", append=True)])


class DecoderTuner(keras.Model):
    """A trained `VolumeVQVAE` whose encoder and codebook only code the crops (frozen, so a prior
    over its codes keeps their meaning) and whose decoder trains on `StackLoss` plus a 3D
    PatchGAN's hinge loss (`adversarial.build_volume_discriminator`) at a held weight: the
    adaptive weight of VQGAN shrank as soon as the discriminator got ahead in the slice decoder's
    fine-tune (docs/experiments.md, "A sharper decoder: the adversarial weight held"). The
    discriminator has an Adam of its own. TensorFlow only (a tape)."""

    def __init__(self, vqvae, adversarial_weight, ssim_weight, learning_rate):
        super().__init__()
        self.vqvae = vqvae
        self.vqvae.encoder.trainable = False
        self.vqvae.quantizer.trainable = False
        self.discriminator = adversarial.build_volume_discriminator()
        self.adversarial_weight = float(adversarial_weight)
        self.stack_loss = StackLoss(ssim_weight)
        self.critic_optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.5)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "loss", "generator_loss", "discriminator_loss")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _given_back(self, stacks):
        """The crops coded and rendered (the decoder has no layer that trains differently)."""
        return self.vqvae.decode_codes(self.vqvae.encode(stacks))

    def train_step(self, data):
        import tensorflow as tf

        stacks = tf.cast(data[0], tf.float32)
        adversarial_loss = self.adversarial_weight > 0  # at 0 the decoder learns to reconstruct
        with tf.GradientTape(persistent=True) as tape:
            given_back = self._given_back(stacks)
            loss = keras.ops.mean(self.stack_loss(stacks, given_back))
            generator = critic = keras.ops.zeros(())
            if adversarial_loss:
                generator = adversarial.generator_hinge(self.discriminator(given_back,
                                                                           training=True))
                critic = adversarial.discriminator_hinge(
                    self.discriminator(stacks, training=True),
                    self.discriminator(tf.stop_gradient(given_back), training=True))
            total = loss + self.adversarial_weight * generator
        decoder = self.vqvae.decoder.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, decoder), decoder))
        if adversarial_loss:
            discriminator = self.discriminator.trainable_variables
            self.critic_optimizer.apply_gradients(zip(tape.gradient(critic, discriminator),
                                                      discriminator))
        del tape
        for name, value in (("loss", loss), ("generator_loss", generator),
                            ("discriminator_loss", critic)):
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, data):
        stacks = keras.ops.cast(data[0], "float32")
        self.trackers["loss"].update_state(
            keras.ops.mean(self.stack_loss(stacks, self._given_back(stacks))))
        return {"loss": self.trackers["loss"].result()}


def tune(args, stacks):
    """Fine-tunes the decoder of run `--tune-from` (its `--checkpoint`) into run `--name`: each
    epoch's model as `last.keras` (what is judged: the validation error is not what a sharper
    decoder is chosen on) and `epoch<n>.keras`, the discriminator's weights beside them;
    `--resume` goes on from them (the two Adams start afresh)."""
    work = args.root / args.name
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    initial_epoch = 0
    if args.resume and (work / "last.keras").is_file():
        vqvae = keras.saving.load_model(work / "last.keras", compile=False)
        initial_epoch = json.loads(state_path.read_text())["epochs_done"]
        print(f"resuming {work} after epoch {initial_epoch}", flush=True)
    else:
        vqvae = keras.saving.load_model(args.root / args.tune_from / f"{args.checkpoint}.keras",
                                        compile=False)
        if args.fresh_decoder:  # the same encoder and codebook, a decoder of --upsampling
            trained, vqvae = vqvae, VolumeVQVAE.from_config(
                dict(vqvae.get_config(), upsampling=args.upsampling))
            vqvae.encoder.set_weights(trained.encoder.get_weights())
            vqvae.quantizer.set_weights(trained.quantizer.get_weights())
    keras.utils.set_random_seed(args.seed + initial_epoch)
    tuner = DecoderTuner(vqvae, args.adversarial_weight, args.ssim_weight, args.learning_rate)
    if initial_epoch:
        tuner.discriminator.load_weights(work / "discriminator.weights.h5")
    tuner.compile(optimizer=keras.optimizers.Adam(args.learning_rate, beta_1=0.5))
    crops = RandomCrops(stacks["train"], tuple(args.crop), args.batch_size, args.steps_per_epoch,
                        args.seed + 1)
    crops.epoch = initial_epoch
    validate = stacks["validate"].astype(np.float32)[..., None]

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            vqvae.save(work / "last.partial.keras")
            (work / "last.partial.keras").replace(work / "last.keras")
            shutil.copyfile(work / "last.keras", work / f"epoch{epoch + 1}.keras")
            tuner.discriminator.save_weights(work / "discriminator.weights.h5")
            state_path.write_text(json.dumps({"epochs_done": epoch + 1,
                                              "tuned_from": args.tune_from,
                                              "fresh_decoder": args.fresh_decoder,
                                              "adversarial_weight": args.adversarial_weight,
                                              "settings": settings(args)}, indent=1))

    tuner.fit(crops, validation_data=(validate, validate), validation_batch_size=1,
              epochs=args.epochs, initial_epoch=initial_epoch, verbose=2,
              callbacks=[Keep(), keras.callbacks.CSVLogger(work / "log.csv", append=True)])


def settings(args):
    return {name: getattr(args, name) for name in (
        "num_codes", "code_dim", "num_downsamples", "slice_downsamples", "upsampling",
        "channels", "crop", "batch_size", "steps_per_epoch", "learning_rate", "ssim_weight",
        "seed")}


def judge(args, stacks):
    work = args.root / args.name
    model = keras.saving.load_model(work / f"{args.checkpoint}.keras", compile=False)
    real = stacks["validate"].astype(np.float32)
    started = time.perf_counter()
    codes = encode_volumes(model, real)
    given_back = decode_volumes(model, codes)
    seconds = (time.perf_counter() - started) / len(real)
    rows = [dict(name="real validation stacks", **streaks.stack_figures(real)),
            dict(name=f"{args.name}: {model.code_shape(real.shape[1:])} codes",
                 codes_used=int(len(np.unique(codes))),
                 seconds_a_stack=round(seconds, 2),
                 **streaks.stack_figures(given_back, real))]
    print(f"{'':40s} {'SSIM':>6s} {'streak index':>14s} {'HF share':>8s} {'slice step':>10s} "
          f"{'in-plane':>8s}")
    for row in rows:
        print(f"{row['name']:40s} {row.get('slice_ssim', float('nan')):6.3f} "
              f"{row['streak_index']:7.3f} ± {row['streak_index_sd']:.3f} "
              f"{row['high_frequency_share']:8.4f} {row['slice_step']:10.4f} "
              f"{row['in_plane_step']:8.4f}")
    print(f"codes used: {rows[1]['codes_used']} of {model.num_codes}; {seconds:.2f} s a stack")
    (work / "judged.json").write_text(json.dumps(rows, indent=1))
    np.save(work / "validate_given_back.npy", given_back[:4].astype(np.float16))


def export(args, folder):
    """The `--checkpoint` epoch's model without its optimizer state, as `volume_vqvae.keras`."""
    # loaded uncompiled, as pretrained.export does: saved again, it holds no optimizer state
    clean = keras.saving.load_model(args.root / args.name / f"{args.checkpoint}.keras",
                                    compile=False)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clean.save(folder / "volume_vqvae.keras")
    print(f"exported {folder / 'volume_vqvae.keras'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="pretrained/ixi-t1-128-volumes",
                        help="the run whose split and stack length are used")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("output/volume-vqvae"))
    parser.add_argument("--name", required=True)
    parser.add_argument("--num-codes", type=int, default=512)
    parser.add_argument("--code-dim", type=int, default=64)
    parser.add_argument("--num-downsamples", type=int, default=3)
    parser.add_argument("--slice-downsamples", type=int, default=3)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--upsampling", choices=UPSAMPLING, default="transposed",
                        help="the decoder's: transposed convolutions or resize + convolution")
    parser.add_argument("--crop", type=int, nargs=3, default=[32, 64, 64])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--ssim-weight", type=float, default=0.5,
                        help="loss: MSE + this x (1 - axial slice SSIM), as the slice VQ-VAE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--judge", action="store_true")
    parser.add_argument("--export", default=None)
    parser.add_argument("--checkpoint", default="best",
                        help="the model --judge, --export and --tune-from read: best, last "
                             "or (a tuned run) epoch<n>")
    parser.add_argument("--tune-from", default=None,
                        help="a trained run whose decoder is fine-tuned adversarially into --name")
    parser.add_argument("--adversarial-weight", type=float, default=0.015,
                        help="--tune-from: the held weight of the 3D PatchGAN's hinge loss")
    parser.add_argument("--fresh-decoder", action="store_true",
                        help="--tune-from: train a new decoder of --upsampling from the start "
                             "on the run's codes (with --adversarial-weight 0: reconstruction "
                             "alone), instead of fine-tuning its own")
    args = parser.parse_args()
    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    stacks = load_stacks(args)
    if args.export:
        export(args, args.export)
    elif args.judge:
        judge(args, stacks)
    elif args.tune_from:
        tune(args, stacks)
    else:
        train(args, stacks)


if __name__ == "__main__":
    main()
