"""How well the covariate rulers read age, sex, ... from real slices of the validation subjects
(choosing the rulers' training budget: the ruler must be good before it judges samples)."""
from __future__ import annotations

import argparse
import time
from typing import Any

from brainvq import config
from brainvq.benchmarks.harness import comma_separated, machine_description
from brainvq.data import covariates, layouts
from brainvq.evaluation import covariate_checks
from brainvq.runs import run_folder
from brainvq.runs.run_folder import RunError


def load_covariate_run(args: argparse.Namespace) -> tuple:
    """The run in `args.output_dir`, trained on covariates, and its data: (values, VQ-VAE,
    splits with covariates, covariate specs, covariate arrays per split, data description)."""
    values, vqvae = run_folder.load_run(args.output_dir, {"data_dir": args.data_dir,
                                                          "covariates": args.covariates})
    if not values.get("condition_on"):
        raise RunError(f"{args.output_dir} was trained without covariates: pass the "
                       f"output dir of a run trained with --covariates and --condition-on")
    splits, description = layouts.load_splits_for(values)
    splits, specs, arrays = covariates.for_splits(values, splits)
    return values, vqvae, splits, specs, arrays, description


def run(args: argparse.Namespace) -> Any:
    """Trains each covariate's ruler on the run's training slices for each budget and prints its
    agreement with the truth on the validation slices (never the test subjects)."""
    values, _, splits, specs, arrays, description = load_covariate_run(args)
    train, validate = splits["train"], splits["validate"]
    print(f"machine: {machine_description()}")
    print(f"{description}; rulers trained on {len(train)} training slices, read on "
          f"{len(validate)} validation slices")
    rows = []
    for images_seen in args.images_seen:
        for column, spec in enumerate(specs):
            if args.only and spec["name"] not in args.only:
                continue
            started = time.perf_counter()
            _, figures = covariate_checks.ruler_ceiling(
                train, validate, arrays["train"][:, column], arrays["validate"][:, column],
                spec, values["num_slice_positions"], seed=args.seed, images_seen=images_seen,
                size=args.ruler_size, copies=args.ruler_copies)
            seconds = time.perf_counter() - started
            rows.append((images_seen, spec["name"], figures, seconds))
            shown = ", ".join(f"{name} {value:.3f}" for name, value in figures.items())
            print(f"  {images_seen:>7d} images seen, {spec['name']}: {shown} ({seconds:.0f} s)",
                  flush=True)
    return rows


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    parser = commands.add_parser(
        "rulers", help="the covariate rulers' agreement on validation slices per training budget")
    parser.add_argument("--output-dir", default=config.DEFAULTS["output_dir"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--covariates", default=None, metavar="FILE.csv")
    parser.add_argument("--images-seen", type=comma_separated(int),
                        default=[covariate_checks.IMAGES_SEEN],
                        help="images each ruler sees while it trains, comma-separated")
    parser.add_argument("--ruler-size", type=int, default=covariate_checks.RULER_SIZE,
                        help="side the rulers read slices at (area-averaged)")
    parser.add_argument("--ruler-copies", type=int, default=covariate_checks.RULER_COPIES,
                        help="augmented copies of each training slice (1: its mirror; more: "
                             "also shifted, rotated and scaled at random)")
    parser.add_argument("--only", type=comma_separated(), default=None,
                        metavar="NAME[,NAME]", help="these covariates' rulers only")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)
