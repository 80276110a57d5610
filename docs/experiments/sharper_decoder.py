"""Can a sharper decoder take the streak index's excess out? The decoder fine-tuned adversarially.

The streak index's excess in the shipped volume model's samples is in-plane blur: they step from
slice to slice as real heads do (1.03x) while their in-plane step is 0.73x real heads', because
the 2D decoder renders each slice smoother than a real one (docs/experiments.md, "The streak
index's two parts"). This fine-tunes only the decoder of `pretrained/ixi-t1-128-volumes`, the
encoder and codebook frozen, so the codes (and the priors drawn over them) keep their meaning:
the reconstruction loss the VQ-VAE was trained with, plus the project's PatchGAN hinge loss with
its adaptive weight (`brainvq/losses/adversarial.py`, `--adversarial-weight` of train.py), on
the axial slices of `--subjects` training subjects. It then judges the validation subjects'
stacks decoded from their codes by the shipped and by the fine-tuned decoder (slice SSIM to the
real slices, streak index and its two parts, high-frequency share, slice brightness jumps;
`brainvq/evaluation/streaks.py`), and with `--samples N`, N volumes per seed of `--seeds` drawn
by the shipped priors, decoded both ways. Run from the repository root (2 CPU cores: a few
minutes to load the data, then about 1-2 s a step at batch 8):

    PYTHONPATH=. python docs/experiments/sharper_decoder.py --data-dir ../shared/data/ixi \
        --epochs 10 --samples 8 --seeds 0

Each epoch's decoder and discriminator weights are kept in `output/sharper-decoder/`; run it
again to go on from the last epoch (`--epochs` counts in all), `--epochs 0` only judges.
`--held-weight` uses `--adversarial-weight` as it is at every step instead of scaling it by the
adaptive weight; `--export DIR` writes a run folder with the fine-tuned decoder, for
`benchmark.py volumes`. `--refiner FILE --strengths 0.5,1` adds the fine-tuned decoder over the
codes refined along the slices by a slice-context refiner (`slice_context.keras` of `python
train.py --stage context`) moved that far; `--refined-only` judges the realism of those alone,
`--tuned-only` of all but the shipped decoder.
With `--train-on-refined` the decoder is fine-tuned on what it is then judged on: the training
stacks' codes refined by that refiner (at `--train-strength`), not the bare codes.
"""
import argparse
import csv
import json
import pathlib
import shutil

import keras
import numpy as np
from keras import ops
from slice_context import judge  # beside this script: the same figures of a set of stacks

from brainvq.benchmarks import volume_realism
from brainvq.data import layouts
from brainvq.evaluation import volume_checks
from brainvq.generation import stacks as stack_sampling
from brainvq.models import slice_context
from brainvq.models.vqvae_trainer import VQVAETrainer
from brainvq.runs import run_folder
from brainvq.training.context_stage import encoder_latents, nearest_codes, stack_images

WEIGHTS = "decoder_finetuned.weights.h5"
SLICE_CONTEXT_LATENTS = pathlib.Path("output/slice-context/latents.npz")


class DecoderFineTuner(VQVAETrainer):
    """A VQ-VAE whose encoder and quantizer only code the images (frozen, in inference mode:
    no EMA update of the codebook); the decoder and the discriminator train. With `held` the
    adversarial term's weight is `adversarial_weight` itself at every step, not scaled by the
    adaptive weight."""

    held = False

    def adversarial_scale(self, reconstruction_gradient, generator_gradient):
        if self.held:
            return ops.ones(())
        return super().adversarial_scale(reconstruction_gradient, generator_gradient)

    def autoencode(self, images, training=False):
        latents = self.encoder(images, training=False)
        quantized = self.quantizer(latents, training=False)
        reconstructions = ops.cast(
            self.decoder(ops.stop_gradient(quantized["quantized"]), training=training), "float32")
        return reconstructions, {"code_indices": quantized["code_indices"],
                                 "vq_loss": ops.zeros(()),
                                 "perplexity": quantized["perplexity"],
                                 "codebook_usage": quantized["usage"]}


class RefinedDecoderFineTuner(DecoderFineTuner):
    """A `DecoderFineTuner` fed each slice with the latents it is to be decoded from (a stack's
    codes refined along its slices), packed as a second channel: [B, S, S, 2], channel 0 the
    image, channel 1 the latents [g, g, D] laid out as S x S values (g * g * D = S * S)."""

    def real_images(self, inputs):
        return inputs[..., :1]

    def autoencode(self, inputs, training=False):
        latents = ops.reshape(inputs[..., 1],
                              (-1, self.grid_size, self.grid_size, self.code_dim))
        reconstructions = ops.cast(self.decoder(latents, training=training), "float32")
        zero = ops.zeros(())
        return reconstructions, {"code_indices": zero, "vq_loss": zero, "perplexity": zero,
                                 "codebook_usage": zero}


def refined_slices(args, shipped, refiner, stacks):
    """The stacks [V, S, H, W] and their mirror images, each slice [H, W, 2] with its stack's
    codes refined by `refiner` at `--train-strength` packed beside it (as
    `RefinedDecoderFineTuner` reads them)."""
    stacks = np.concatenate([stacks, stacks[..., ::-1]])
    codes = nearest_codes(shipped, encoder_latents(shipped, stacks))
    refined = np.concatenate([ops.convert_to_numpy(slice_context.refine_codes(
        refiner, shipped, codes[number:number + 1], args.train_strength)).astype(np.float16)
        for number in range(len(codes))])
    slices = stacks.reshape((-1,) + stacks.shape[2:])
    if refined[0, 0].size != slices[0].size:
        raise SystemExit(f"--train-on-refined needs a latent grid of as many values as a slice "
                         f"has pixels: {refined.shape[2:]} against {slices.shape[1:]}")
    return np.stack([slices.astype(np.float16), refined.reshape(slices.shape)], axis=-1)


def fine_tuner(shipped, args):
    """The tuner: the shipped VQ-VAE's configuration and weights, a new discriminator."""
    config = dict(shipped.get_config(), adversarial_weight=args.adversarial_weight,
                  adversarial_start=0, ssim_warmup_steps=0)
    tuner = (RefinedDecoderFineTuner if args.train_on_refined else
             DecoderFineTuner).from_config(config)
    tuner.held = args.held_weight
    tuner.build()
    for part in ("encoder", "quantizer", "decoder"):
        getattr(tuner, part).set_weights(getattr(shipped, part).get_weights())
    tuner.encoder.trainable = False
    tuner.quantizer.trainable = False
    return tuner


def train(args, values, tuner, shipped, refiner):
    """Fits the decoder (and the discriminator) for the epochs still to go; returns the tuner
    with the last epoch's weights."""
    path, log = args.work_dir / WEIGHTS, args.work_dir / "log.csv"
    done = 0
    if path.is_file():
        tuner.load_weights(path)
        with open(log, newline="") as handle:
            done = len(list(csv.DictReader(handle)))
        print(f"going on from epoch {done} ({path})")
    tuner.compile(optimizer=keras.optimizers.Adam(args.learning_rate, beta_1=0.5))
    if done >= args.epochs:
        return tuner
    splits, _ = layouts.load_splits_for(values)
    length = stack_sampling.stack_length(values)
    stacks = stack_images(splits["train"], length)[:args.subjects]
    if args.train_on_refined:
        slices = refined_slices(args, shipped, refiner, stacks)
    else:
        slices = stacks.reshape((-1,) + stacks.shape[2:])[..., None]
        slices = np.concatenate([slices, slices[:, :, ::-1]])  # and their mirror images
    print(f"{len(slices)} training slices (with mirror images) of {len(stacks)} subjects")
    import tensorflow as tf

    data = (tf.data.Dataset.from_tensor_slices(slices).shuffle(len(slices), seed=args.seed)
            .map(lambda batch: tf.cast(batch, tf.float32)).repeat()
            .batch(args.batch_size, drop_remainder=True).prefetch(2))
    tuner.fit(data, epochs=args.epochs, initial_epoch=done, steps_per_epoch=args.steps,
              verbose=2, callbacks=[
                  keras.callbacks.ModelCheckpoint(path, save_weights_only=True),
                  keras.callbacks.CSVLogger(log, append=True)])
    return tuner


def export(args, shipped, tuner):
    """A copy of the run folder `--output-dir` in `--export` whose VQ-VAE has the fine-tuned
    decoder (no model card: not a shipped model). The encoder and codebook are the shipped ones,
    so the priors' codes keep their meaning: their record of the VQ-VAE they were trained over
    is set to the new file."""
    destination = pathlib.Path(args.export)
    shutil.copytree(args.output_dir, destination, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(run_folder.MODEL_CARD_FILE))
    kept = shipped.decoder.get_weights()
    shipped.decoder.set_weights(tuner.decoder.get_weights())
    shipped.save(destination / run_folder.VQVAE_FILE)
    shipped.decoder.set_weights(kept)  # the shipped decoder back: it judges beside the tuned one
    state = run_folder.read_state(destination)
    state.pop(run_folder.FILES_KEY, None)
    fingerprint = run_folder.file_fingerprint(destination / run_folder.VQVAE_FILE)
    for stage in ("prior", "volume"):
        if "vqvae_fingerprint" in state.get(stage, {}):
            state[stage]["vqvae_fingerprint"] = fingerprint
    run_folder.write_state(destination, state)
    print(f"wrote {destination} (the fine-tuned decoder in {run_folder.VQVAE_FILE})")


def validation_latents(args, values, shipped):
    """The real validation stacks and their encoder latents: from `--latents`, else from the
    cache of slice_context.py when it has run, else computed (and kept in the work folder)."""
    path = args.latents or SLICE_CONTEXT_LATENTS
    if not path.is_file():
        path = args.work_dir / "validation_latents.npz"
    if not path.is_file():
        splits, _ = layouts.load_splits_for(values)
        real = stack_images(splits["validate"], stack_sampling.stack_length(values))
        np.savez(path, validate=encoder_latents(shipped, real),
                 validate_stacks=real.astype(np.float16))
    with np.load(path) as stored:
        return stored["validate_stacks"].astype(np.float32), stored["validate"]


def decodings(args, shipped, tuner, refiner):
    """(name, decoding function, judged for realism) of every way the codes are decoded."""
    ways = [(f"{which} decoder", lambda codes, model=model: stack_sampling.decode_stacks(
        model, codes), not args.refined_only and not (args.tuned_only and which == "shipped"))
        for which, model in (("shipped", shipped), ("fine-tuned", tuner))]
    if refiner is not None:
        ways += [(f"fine-tuned, refined {strength:g}",
                  lambda codes, strength=strength: stack_sampling.decode_stacks(
                      tuner, codes, refiner=refiner, strength=strength), True)
                 for strength in args.strengths]
    return ways


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="pretrained/ixi-t1-128-volumes")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--work-dir", type=pathlib.Path,
                        default=pathlib.Path("output/sharper-decoder"))
    parser.add_argument("--latents", type=pathlib.Path, default=None,
                        help="the validation latents and stacks (default: slice_context.py's "
                             "cache when it has run, else computed into the work folder)")
    parser.add_argument("--adversarial-weight", type=float, default=0.1)
    parser.add_argument("--held-weight", action="store_true",
                        help="the adversarial weight as it is at every step (not adaptive)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100, help="steps an epoch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=125)
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--realism", action="store_true",
                        help="the sampled volumes also judged as benchmark.py volumes judges "
                             "them (Fréchet distances of the reslices; feature networks "
                             "trained once into the work folder)")
    parser.add_argument("--feature-network-dir", type=pathlib.Path, default=None,
                        help="where --realism keeps its feature networks (default: the work "
                             "folder's features/; share one to compare runs)")
    parser.add_argument("--refiner", type=pathlib.Path, default=None,
                        help="a slice-context refiner (slice_context.keras): the fine-tuned "
                             "decoder also judged over codes it refines")
    parser.add_argument("--strengths", type=lambda text: [float(x) for x in text.split(",")],
                        default=[1.0], help="how far the refiner moves the codes (comma list)")
    parser.add_argument("--train-on-refined", action="store_true",
                        help="fine-tune the decoder on the training codes refined by --refiner")
    parser.add_argument("--train-strength", type=float, default=1.0,
                        help="how far --train-on-refined moves the codes")
    parser.add_argument("--refined-only", action="store_true",
                        help="the realism of the refined decodings only")
    parser.add_argument("--tuned-only", action="store_true",
                        help="no realism of the shipped decoder (the same seeds give the same "
                             "codes: judge it once)")
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="then write a copy of --output-dir with the fine-tuned decoder here")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    values, shipped = run_folder.load_run(args.output_dir, {"data_dir": args.data_dir})
    if args.train_on_refined and not args.refiner:
        parser.error("--train-on-refined needs --refiner")
    refiner = (keras.saving.load_model(args.refiner, compile=False) if args.refiner
               else None)
    tuner = train(args, values, fine_tuner(shipped, args), shipped, refiner)
    if args.export:
        export(args, shipped, tuner)
    real, latents = validation_latents(args, values, shipped)
    codes = nearest_codes(shipped, latents)
    ways = decodings(args, shipped, tuner, refiner)
    rows = [judge("real validation stacks", real),
            *(judge(f"codes, {name}", decode(codes), real) for name, decode, _ in ways)]
    realism = []  # (decoder, seed, volume report) with --realism
    splits = layouts.load_splits_for(values)[0] if args.realism and args.samples else None
    for seed in (int(text) for text in args.seeds.split(",")) if args.samples else ():
        _, sampled, _ = stack_sampling.generate_stacks(values, shipped, args.output_dir,
                                                       args.samples, seed=seed)
        for name, decode, judged in ways:
            decoded = decode(sampled)
            rows.append(judge(f"sampled, seed {seed}: {name}", decoded))
            if args.realism and judged:
                report = volume_checks.volume_report(
                    values, shipped, args.output_dir, splits, "validate", len(decoded), seed,
                    args.feature_network_dir or args.work_dir / "features", None,
                    independent=False, stacks=decoded)
                realism.append(((name, "null"), seed, report))
    print(f"\n{'':44s} {'SSIM':>6s} {'streak':>7s} {'slice step':>10s} {'in-plane':>9s} "
          f"{'HF share':>9s} {'bright. jump':>12s}")
    for row in rows:
        print(f"{row['name']:44s} {row.get('slice_ssim', float('nan')):6.3f} "
              f"{row['streak_index']:7.3f} {row['slice_step']:10.4f} {row['in_plane_step']:9.4f} "
              f"{row['high_frequency_share']:9.4f} {row['brightness_jump']:12.4f}")
    (args.work_dir / "judged.json").write_text(json.dumps(rows, indent=1))
    if realism:
        print("\n" + volume_realism.table(realism))
        (args.work_dir / "realism.json").write_text(json.dumps(
            [[name, seed, report] for (name, _), seed, report in realism], indent=1))


if __name__ == "__main__":
    main()
