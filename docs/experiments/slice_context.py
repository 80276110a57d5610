"""Can a decoder that sees the neighbouring slices take the streaks out? A latent refiner.

Real stacks decoded from their slice codes one slice at a time have a streak index 1.19x the
real stacks' (1.09x from the unquantized latents): quantization takes away what keeps
neighbouring slices alike. A `SliceContextRefiner` (brainvq/models/slice_context.py) refines a
stack's quantized latents along its slices, trained to give back the encoder's unquantized
latents; the shipped VQ-VAE's decoder renders its output. This trains one on the 125 training
subjects' stacks of `pretrained/ixi-t1-128-volumes` (random runs of `--crop` slices, and their
left-right mirror images) and judges the 20 validation subjects' stacks four ways (real, codes
decoded, unquantized latents decoded, refined latents decoded): slice SSIM to the real slices,
streak index and high-frequency share (brainvq/evaluation/streaks.py). With `--samples N`, it
also draws N volumes with the shipped priors for each of `--seeds` and judges them decoded with
and without the refiner. Results: docs/experiments.md, "A decoder that sees the neighbouring
slices". Run from the repository root (2 CPU cores: about 10 minutes to encode, then about
2 minutes an epoch; sampling about 30 s a volume):

    PYTHONPATH=. python docs/experiments/slice_context.py --data-dir ../shared/data/ixi \
        --epochs 12 --samples 8 --seeds 0,1,2 [--strengths 0.5,1]

Writes `output/slice-context/` (the latents, `refiner.keras` and its log, `judged.json`).
"""
import argparse
import json
import pathlib

import keras
import numpy as np

from brainvq.data import layouts
from brainvq.evaluation import streaks, volume_checks
from brainvq.generation import stacks as stack_sampling
from brainvq.models.slice_context import SliceContextRefiner, decode_refined
from brainvq.runs import run_folder
from brainvq.training.context_stage import (
    LatentRuns,
    encoder_latents,
    nearest_codes,
    stack_images,
)


def load_latents(args, values, vqvae):
    """{"train", "validate"} unquantized latents (train: mirrored copies appended) and the real
    validation stacks; cached in the work folder."""
    cache = args.work_dir / "latents.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return {name: stored[name] for name in stored.files}
    splits, _ = layouts.load_splits_for(values)
    length = stack_sampling.stack_length(values)
    train, validate = (stack_images(splits[name], length) for name in ("train", "validate"))
    arrays = {"train": np.concatenate([encoder_latents(vqvae, train),
                                       encoder_latents(vqvae, train[..., ::-1])]),
              "validate": encoder_latents(vqvae, validate),
              "validate_stacks": validate.astype(np.float16)}
    args.work_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def train(args, vqvae, latents):
    """The refiner fitted on the training latents; the epoch best on validation."""
    path = args.work_dir / "refiner.keras"
    if path.is_file() and not args.retrain:
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(args.seed)
    codebook = keras.ops.convert_to_numpy(vqvae.quantizer.codebook.value)
    codes = {name: nearest_codes(vqvae, latents[name]) for name in ("train", "validate")}
    refiner = SliceContextRefiner(code_dim=codebook.shape[1], channels=args.channels,
                                  blocks=args.blocks)
    refiner.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    refiner.fit(LatentRuns(codes["train"], latents["train"], codebook, args.batch_size,
                           args.crop, seed=args.seed),
                validation_data=LatentRuns(codes["validate"], latents["validate"], codebook, 2),
                epochs=args.epochs, verbose=2, callbacks=[
                    keras.callbacks.ModelCheckpoint(path, monitor="val_loss",
                                                    save_best_only=True),
                    keras.callbacks.CSVLogger(args.work_dir / "refiner_log.csv")])
    return keras.saving.load_model(path)


def refined_stacks(refiner, vqvae, codes, batch=2, strength=1.0):
    return np.concatenate([keras.ops.convert_to_numpy(
        decode_refined(refiner, vqvae, codes[i:i + batch], strength=strength))
        for i in range(0, len(codes), batch)])


def strength_label(strength):
    return "refined" if strength == 1.0 else f"refined at strength {strength:g}"


def unquantized(vqvae, latents, batch=128):
    """Latents [V, S, g, g, D] decoded slice by slice with no quantizer: images [V, S, H, W]."""
    flat = latents.reshape((-1,) + latents.shape[2:]).astype(np.float32)
    images = np.concatenate([keras.ops.convert_to_numpy(vqvae.decoder(flat[i:i + batch]))
                             for i in range(0, len(flat), batch)])
    return np.clip(images, 0.0, 1.0)[..., 0].reshape(latents.shape[:2] + images.shape[1:3])


def judge(name, stacks, real=None):
    """A dict of the figures of one set of stacks (slice SSIM when the real ones are given)."""
    neighbours = np.array([volume_checks.neighbour_ssim(stack).mean() for stack in stacks])
    row = dict({"name": name}, **streaks.stack_figures(stacks, real),
               neighbour_ssim=float(neighbours.mean()), neighbour_ssim_sd=float(neighbours.std()))
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="pretrained/ixi-t1-128-volumes")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--work-dir", type=pathlib.Path,
                        default=pathlib.Path("output/slice-context"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--crop", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--strengths", type=lambda text: [float(x) for x in text.split(",")],
                        default=[1.0], help="how far the refiner moves the codebook rows "
                                            "(comma-separated; 1: all the way)")
    args = parser.parse_args()
    values, vqvae = run_folder.load_run(args.output_dir, {"data_dir": args.data_dir})
    latents = load_latents(args, values, vqvae)
    refiner = train(args, vqvae, latents)
    real = latents["validate_stacks"].astype(np.float32)
    codes = nearest_codes(vqvae, latents["validate"])
    rows = [judge("real validation stacks", real),
            judge("codes decoded slice by slice", stack_sampling.decode_stacks(vqvae, codes),
                  real),
            judge("unquantized latents decoded", unquantized(vqvae, latents["validate"]), real),
            *(judge(f"codes {strength_label(strength)}, then decoded",
                    refined_stacks(refiner, vqvae, codes, strength=strength), real)
              for strength in args.strengths)]
    for seed in (int(text) for text in args.seeds.split(",")) if args.samples else ():
        _, sampled, _ = stack_sampling.generate_stacks(values, vqvae, args.output_dir,
                                                       args.samples, seed=seed)
        rows.append(judge(f"sampled volumes, seed {seed}: decoded slice by slice",
                          stack_sampling.decode_stacks(vqvae, sampled)))
        rows.extend(judge(f"sampled volumes, seed {seed}: {strength_label(strength)}, then "
                          f"decoded", refined_stacks(refiner, vqvae, sampled, strength=strength))
                    for strength in args.strengths)
    print(f"\n{'':64s} {'SSIM':>6s} {'streak index':>15s} {'steps: slice, in-plane':>23s} "
          f"{'HF share':>16s} {'nbr SSIM':>14s} {'brightness: step, jump':>23s}")
    for row in rows:
        print(f"{row['name']:64s} {row.get('slice_ssim', float('nan')):6.3f} "
              f"{row['streak_index']:7.3f} ± {row['streak_index_sd']:.3f} "
              f"{row['slice_step']:11.4f} {row['in_plane_step']:11.4f} "
              f"{row['high_frequency_share']:7.4f} ± {row['high_frequency_share_sd']:.4f} "
              f"{row['neighbour_ssim']:6.3f} ± {row['neighbour_ssim_sd']:.3f} "
              f"{row['brightness_step']:11.4f} {row['brightness_jump']:11.4f}")
    (args.work_dir / "judged.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
