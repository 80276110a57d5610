"""Held-out SSIM against the number of training subjects, one budget per point."""
from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import numpy as np

from brainvq import config
from brainvq.benchmarks import plots
from brainvq.benchmarks.harness import (
    STEPS_HELP,
    comma_separated,
    machine_description,
    positive_steps,
    reconstruction_quality,
    subjects,
    train_for_budget,
)
from brainvq.benchmarks.rate_distortion import budget_text
from brainvq.data import layouts


def run(args: argparse.Namespace) -> Any:
    """Held-out SSIM against the number of training subjects, at one wall-clock budget each.

    Every point trains a fresh VQ-VAE on the first N subjects of the train split (nested sets,
    seeded order) for `--minutes`, and is tested on the same test subjects; the training-subject
    SSIM is printed beside it, so the gap between the two can be read per point.
    """


    values = config.resolve(args)
    splits, description = layouts.load_splits_for(values)
    print(f"machine: {machine_description()}")
    print(description)
    test = splits["test"]
    rows = []
    print(f"{'subjects':>8} {'slices':>7} {'images':>8} {'epochs':>6} {'train SSIM':>10} "
          f"{'test SSIM':>15} {'test brain SSIM':>15}")
    for count in args.subjects:
        train = subjects(splits["train"], count, values["seed"], values=values)
        model, images, seconds = train_for_budget(values, None, train, args.minutes,
                                                   args.steps)
        train_quality, _ = reconstruction_quality(model, train)
        test_quality, used = reconstruction_quality(model, test)
        row = {"subjects": count, "slices": len(train), "images_seen": images,
               "seconds": round(seconds, 1), "epochs": images / len(train),
               "train_ssim": float(train_quality["ssim"].mean()),
               "test_ssim": float(test_quality["ssim"].mean()),
               "test_ssim_std": float(test_quality["ssim"].std()),
               "test_brain_ssim": float(np.nanmean(test_quality["brain_ssim"])),
               "test_sharpness": float(np.nanmean(test_quality["sharpness"])),
               "test_codes_used": used}
        rows.append(row)
        print(f"{count:>8} {len(train):>7} {images:>8,} {row['epochs']:>6.1f} "
              f"{row['train_ssim']:>10.4f} {row['test_ssim']:>8.4f} ± {row['test_ssim_std']:.3f} "
              f"{row['test_brain_ssim']:>15.4f}", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"machine": machine_description(), "data": description, "minutes": args.minutes,
             "steps": args.steps,
             "test_slices": len(test), "rows": rows}, indent=2))
    if args.figure:
        budget = budget_text(args.minutes, args.steps)
        plots.learning_curve(rows, args.figure, title=f"{budget} per point, "
                               f"{len(np.unique(test.case_id))} test subjects")
        print(f"figure: {args.figure}")
    return rows


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    curve_parser = commands.add_parser(
        "learning-curve", help="held-out SSIM against the number of training subjects")
    curve_parser.add_argument("--subjects", default=[8, 32, 125],
                              type=comma_separated(int),
                              help="training subjects per point (default: 8,32,125)")
    curve_parser.add_argument("--minutes", type=float, default=10.0,
                              help="wall-clock training budget per point")
    curve_parser.add_argument("--json", default=None, help="also write the rows here")
    curve_parser.add_argument("--figure", default=None, help="plot the curve to this PNG")
    curve_parser.add_argument("--steps", type=positive_steps, default=0, help=STEPS_HELP)
    config.add_arguments(curve_parser)
    curve_parser.set_defaults(run=run)
