"""A VQ-VAE trained for a wall-clock or step budget, then its test-split quality."""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from brainvq import config
from brainvq.benchmarks.harness import (
    KERASIO,
    STEPS_HELP,
    machine_description,
    positive_steps,
    reconstruction_quality,
    subjects,
    train_for_budget,
)
from brainvq.benchmarks.rate_distortion import budget_text
from brainvq.data import layouts, slice_sets


def run(args: argparse.Namespace) -> Any:
    """Trains a VQ-VAE for a fixed wall-clock budget, then measures the test split."""
    values = config.resolve(args)
    splits, description = layouts.load_splits_for(values)
    print(f"machine: {machine_description()}")
    print(description)
    # No model selection happens here, so the validation split is training data too.
    train = slice_sets.SliceSet.join([splits["train"], splits["validate"]])
    if args.train_subjects:
        train = subjects(train, args.train_subjects, values["seed"], "--train-subjects",
                          values)
    batch_size = KERASIO["batch_size"] if args.baseline == "kerasio" else values["batch_size"]
    name = "keras-io vq_vae.py design" if args.baseline == "kerasio" else "ours"
    print(f"training on {len(np.unique(train.case_id))} subjects of train + validate: "
          f"{len(train)} slices; testing on test: {len(splits['test'])} slices; batch "
          f"{batch_size}, budget {budget_text(args.minutes, args.steps)}")
    model, images, seconds = train_for_budget(values, args.baseline, train, args.minutes,
                                               args.steps)
    print(f"model: {name}, grid {model.grid_size}x{model.grid_size}, K={model.num_codes}, "
          f"D={model.code_dim}, {model.count_params():,} parameters")
    test = splits["test"]
    per_image, used = reconstruction_quality(model, test)
    bits = model.code_bits
    psnr = per_image["psnr"][np.isfinite(per_image["psnr"])]
    train_quality, _ = reconstruction_quality(model, train)
    print(f"trained {images:,} images in {seconds:.0f} s")
    print(f"mean SSIM on the training slices: {train_quality['ssim'].mean():.4f} (compare with "
          f"the test SSIM below)")
    print(f"test slices: {len(test)}")
    print(f"mean SSIM: {per_image['ssim'].mean():.4f} ± {per_image['ssim'].std():.4f}")
    print(f"mean brain SSIM: {per_image['brain_ssim'].mean():.4f}")
    print(f"mean sharpness (gradient-magnitude ratio inside the brain): "
          f"{np.nanmean(per_image['sharpness']):.3f}")
    print(f"mean PSNR: {psnr.mean():.2f} dB")
    print(f"codebook usage (test split): {used}/{model.num_codes} codes "
          f"({used / model.num_codes:.1%})")
    grids = " + ".join(f"{side}x{side}" for side in
                       ([model.top_grid_size] if model.levels == 2 else []) + [model.grid_size])
    print(f"code bits per image: {bits:,.0f} (({grids}) x log2 {model.num_codes})")
    print(f"training images/s: {images / seconds:.1f}")
    return per_image


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    quality_parser = commands.add_parser(
        "quality", help="train for a wall-clock budget, print test SSIM/PSNR/usage/bits")
    quality_parser.add_argument("--minutes", type=float, default=5.0)
    quality_parser.add_argument("--baseline", choices=("kerasio",), default=None,
                                help="run the keras-io vq_vae.py design instead of ours")
    quality_parser.add_argument("--train-subjects", type=int, default=0,
                                help="train on only this many subjects (0: all of train + "
                                     "validate)")
    quality_parser.add_argument("--steps", type=positive_steps, default=0, help=STEPS_HELP)
    config.add_arguments(quality_parser)
    quality_parser.set_defaults(run=run)
