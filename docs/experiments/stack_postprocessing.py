"""Does post-processing a stack along its axis bring synthetic volumes nearer real heads?

The shipped volume model's 20 stacks (seed 42) are drawn once and judged raw and after each
post-processing below, against the 20 validation subjects' volumes, in one set of feature
networks (trained on the training subjects only). Results: docs/experiments.md, "Post-processing
the stacks, and the heads' sizes". Run from the repository root:

    PYTHONPATH=. python docs/experiments/stack_postprocessing.py --data-dir ../shared/data/ixi

`--yardstick` judges the 20 real test volumes the same way, as if they were samples: what real
heads the model never saw score against the validation floor (nothing is chosen on it).
`--spread` prints instead how much the heads vary across stacks: their tissue area slice by
slice, synthetic beside the validation subjects' real volumes, and their head volumes beside
those of each split's real volumes.
"""
import argparse
import pathlib

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter1d

from brainvq.benchmarks.volume_realism import table
from brainvq.data import layouts
from brainvq.data.stacks import subject_stacks
from brainvq.evaluation import realism, volume_checks
from brainvq.generation import stacks as stack_sampling
from brainvq.runs import run_folder


def matched_brightness(stacks, sigma=2.0):
    """Each slice's tissue brightness scaled onto its stack's profile smoothed along the axis."""
    result = []
    for stack in stacks:
        tissue = stack > realism.TISSUE_THRESHOLD
        means = np.array([piece[mask].mean() if mask.sum() > 50 else np.nan
                          for piece, mask in zip(stack, tissue)])
        known = np.isfinite(means)
        filled = np.where(known, means, np.nanmean(means))
        target = gaussian_filter1d(filled, sigma, mode="nearest")
        gain = np.where(known, np.clip(target / filled, 0.8, 1.25), 1.0)
        result.append(stack * gain[:, None, None])
    return np.stack(result)


def rescaled(stacks, spread, along_axis=False, seed=0):
    """Each stack resized by its own factor ~ N(1, spread): in-plane about the image centre and,
    with `along_axis`, along the stack with its top slice fixed."""
    rng = np.random.default_rng(seed)
    result = []
    for stack in stacks:
        factor = float(np.clip(rng.normal(1.0, spread), 1 - 2.5 * spread, 1 + 2.5 * spread))
        length, height, width = stack.shape
        axial = factor if along_axis else 1.0
        matrix = np.diag([1 / axial, 1 / factor, 1 / factor])
        offset = np.array([(length - 1) * (1 - 1 / axial), (height - 1) / 2 * (1 - 1 / factor),
                           (width - 1) / 2 * (1 - 1 / factor)])
        result.append(affine_transform(stack, matrix, offset=offset, order=1))
    return np.stack(result)


VARIANTS = {
    "raw": lambda stacks: stacks,
    "brightness matched": matched_brightness,
    "Gaussian 0.4 slices": lambda stacks: gaussian_filter1d(stacks, 0.4, axis=1),
    "Gaussian 0.5 slices": lambda stacks: gaussian_filter1d(stacks, 0.5, axis=1),
    "matched + Gaussian 0.4": lambda stacks: gaussian_filter1d(matched_brightness(stacks), 0.4,
                                                               axis=1),
    "resized 4% in-plane": lambda stacks: rescaled(stacks, 0.04),
    "resized 4% in 3D": lambda stacks: rescaled(stacks, 0.04, along_axis=True),
    "resized 7% in 3D": lambda stacks: rescaled(stacks, 0.07, along_axis=True),
}


def print_spread(synthetic, real, positions=(0, 16, 32, 48, 63)):
    """Standard deviation across stacks of the share of each slice that is tissue."""
    for name, stacks in (("synthetic", synthetic), ("real (validation)", real)):
        area = (np.asarray(stacks) > realism.TISSUE_THRESHOLD).mean(axis=(2, 3))  # [V, S]
        cells = ", ".join(f"{position}: {area[:, position].std():.3f}" for position in positions)
        print(f"{name:18s} tissue area across stacks, sd at slice {cells}")


def print_head_volumes(sets, pixel, spacing):
    """Mean and sd of the millilitres of tissue in each set of stacks ({name: stacks})."""
    for name, stacks in sets.items():
        millilitres = volume_checks.head_volumes(stacks, pixel, spacing)
        print(f"{name:18s} {len(millilitres):4d} stacks, head volume {millilitres.mean():6.0f} "
              f"± {millilitres.std():4.0f} mL")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="pretrained/ixi-t1-128-volumes")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work-dir", default="output/stack-postprocessing",
                        help="the drawn stacks and the feature networks are kept here")
    parser.add_argument("--yardstick", action="store_true",
                        help="judge the real test volumes as if they were samples, and stop")
    parser.add_argument("--spread", action="store_true",
                        help="print the tissue area's spread across stacks per slice, and stop")
    args = parser.parse_args()
    work = pathlib.Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    values, vqvae = run_folder.load_run(args.output_dir, {"data_dir": args.data_dir})
    splits, _ = layouts.load_splits_for(values)
    length = stack_sampling.stack_length(values)
    if args.yardstick:
        real = np.stack(list(subject_stacks(splits["test"], length).values()))
        volume_checks.volume_report(values, vqvae, args.output_dir, splits, "validate", None,
                                    args.seed, work, images_dir=None, independent=False,
                                    stacks=real)
        return
    cached = work / f"stacks_{args.volumes}_seed{args.seed}.npy"
    if cached.is_file():
        raw = np.load(cached)
    else:
        raw, _, _ = stack_sampling.generate_stacks(values, vqvae, args.output_dir, args.volumes,
                                                   seed=args.seed)
        np.save(cached, raw)
    if args.spread:
        real = {split: list(subject_stacks(splits[split], length).values())
                for split in ("train", "validate", "test")}
        print_spread(raw, real["validate"])
        print_head_volumes({"synthetic": raw, **real},
                           values["field_of_view"] / values["image_size"], values["slice_spacing"])
        return
    rows = []
    for name, post_process in VARIANTS.items():
        stacks = np.clip(post_process(raw), 0.0, 1.0).astype(np.float32)
        print(f"\n{name}:")
        rows.append(((name, "null"), volume_checks.volume_report(
            values, vqvae, args.output_dir, splits, "validate", None, args.seed, work,
            images_dir=None, independent=False, stacks=stacks)))
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
