"""Covariate-conditioned samples on the validation split per covariate guidance scale (choosing
`covariate_guidance`): the rulers' agreement with the requests and the samples' plausibility,
at the edges of the range too."""
from __future__ import annotations

import argparse
import time
from typing import Any

from brainvq import config
from brainvq.benchmarks.harness import comma_separated, machine_description
from brainvq.benchmarks.rulers import load_covariate_run
from brainvq.evaluation import covariate_checks, realism
from brainvq.runs import run_folder


def run(args: argparse.Namespace) -> Any:
    """Trains each covariate's ruler once on the run's training slices, reads it on the
    validation slices (the ceiling), then judges `--samples` requested samples per covariate
    for each scale in `--covariate-guidances` (never the test subjects)."""
    values, vqvae, splits, specs, arrays, description = load_covariate_run(args)
    train, validate = splits["train"], splits["validate"]
    prior = run_folder.load_prior(args.output_dir)
    ranges = realism.plausibility_ranges(train.images)
    print(f"machine: {machine_description()}")
    print(f"{description}; run {args.output_dir}; T {values['temperature']}, top-k "
          f"{values['top_k']}, slice guidance {values['guidance']}; {args.samples} samples per "
          f"covariate and scale, seed {args.seed}")
    rulers = {}
    for column, spec in enumerate(specs):
        rulers[column] = covariate_checks.ruler_ceiling(
            train, validate, arrays["train"][:, column], arrays["validate"][:, column], spec,
            values["num_slice_positions"], seed=values["seed"])
    rows = []
    for scale in args.covariate_guidances:
        print(f"covariate guidance {scale}:")
        for column, spec in enumerate(specs):
            ruler, real = rulers[column]
            started = time.perf_counter()
            judged = covariate_checks.judge_requests(
                dict(values, covariate_guidance=scale), vqvae, args.output_dir, specs, column,
                ruler, args.samples, args.seed, ranges, prior)
            covariate_checks.print_judgement(spec, real, judged)
            print(f"  ({time.perf_counter() - started:.0f} s)")
            rows.append((scale, spec["name"], real, judged))
    return rows


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    parser = commands.add_parser(
        "covariate-guidance",
        help="covariate-requested samples on the validation split per covariate guidance")
    parser.add_argument("--output-dir", default=config.DEFAULTS["output_dir"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--covariates", default=None, metavar="FILE.csv")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--covariate-guidances", type=comma_separated(float),
                        default=[1.0, 1.5, 2.0, 3.0], help="covariate guidance scales (1: none)")
    parser.add_argument("--seed", type=int, default=42)
    parser.set_defaults(run=run)
