"""Held-out reconstruction quality against code bits per image: `benchmark.py rate-distortion`.

Each point is one design trained from scratch for the same wall-clock budget on the same
training subjects, then scored on the same held-out test subjects. The designs:

* the keras-io `vq_vae.py` VQ-VAE as published (4x down, K=128, D=16, MSE / variance);
* the OASIS VQ-VAE seed's size: four stride-2 levels to an 8x8 grid of K=16 codes (our blocks);
* ours, one level at 8x (the default: 16x16, K=512) and at 4x (32x32, K=64; and K=4, 2,048
  bits, under the 8x default's 2,304);
* VQ-VAE-2 (hierarchy.py) at 8x + 16x (16x16 + 8x8, K=128) and 4x + 8x (32x32 + 16x16, K=32);

and any of them with the adversarial loss (name + "+adv").
"""
from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from brainvq import config
from brainvq.benchmarks import harness, plots
from brainvq.data import layouts, slice_sets
from brainvq.data.slice_sets import SliceSet
from brainvq.hints import PathLike

# name: (label, baseline, hyperparameter overrides)
DESIGNS = {
    "kerasio": ("keras-io as published", "kerasio", {}),
    "seed": ("OASIS seed's size (8x8, K=16)", None, {"num_downsamples": 4, "num_codes": 16}),
    "8x": ("ours 8x (16x16, K=512)", None, {}),
    "4x": ("ours 4x (32x32, K=64)", None, {"num_downsamples": 2, "num_codes": 64}),
    # the 8x default's rate spent on grid resolution instead of codebook size: 2 bits per code
    "4x-k4": ("ours 4x (32x32, K=4)", None, {"num_downsamples": 2, "num_codes": 4}),
    "vqvae2-8x": ("VQ-VAE-2 (16x16 + 8x8, K=128)", None, {"levels": 2, "num_codes": 128}),
    "vqvae2-4x": ("VQ-VAE-2 (32x32 + 16x16, K=32)", None,
                  {"levels": 2, "num_downsamples": 2, "num_codes": 32}),
}
REFERENCES = ("kerasio", "seed")  # the designs we compare with (grey in the figure)


def design(name: str, values: Mapping[str, Any]) -> tuple[str, bool, dict[str, Any]]:
    """(label, baseline, values) of a design name; "+adv" keeps the run's --adversarial-weight
    and --adversarial-start, every other design trains without the adversarial loss."""
    adversarial = name.endswith("+adv")
    base = name[:-len("+adv")] if adversarial else name
    if base not in DESIGNS:
        raise SystemExit(f"error: unknown design {name!r}: use one of "
                         f"{', '.join(DESIGNS)} (each also with +adv)")
    label, baseline, overrides = DESIGNS[base]
    if adversarial and baseline:
        raise SystemExit(f"error: {name}: the adversarial loss is ours, not the baseline's")
    if adversarial and not values["adversarial_weight"] > 0:
        raise SystemExit(f"error: {name} needs the adversarial loss's weight: add "
                         f"--adversarial-weight W (and --adversarial-start STEPS)")
    values = dict(values, **overrides)
    if adversarial:
        label += " + adversarial"
    else:
        values["adversarial_weight"] = 0.0
    return label, baseline, values


def sweep(args: argparse.Namespace, machine: str, train_for_budget: Callable,
          quality: Callable, budget: str) -> list[dict[str, Any]]:
    """`benchmark.py rate-distortion`: loads the data, measures each of `args.points`, prints
    the table and writes `args.json` and `args.figure`.

    Args:
        args: the parsed flags (points, minutes, json, figure and the hyperparameters).
        machine: a description of this machine, for the JSON.
        train_for_budget, quality: benchmark.py's `_train_for_budget` and
            `_reconstruction_quality`.
        budget: the training budget per design in words ("9 min", "300 steps").
    """
    values = config.resolve(args)
    names = args.points.split(",")
    for name in names:  # refuse a misspelt design before any training
        design(name, values)
    splits, description = layouts.load_splits_for(values)
    print(f"machine: {machine}")
    print(description)
    # No model selection happens here, so the validation split is training data too.
    train = slice_sets.SliceSet.join([splits["train"], splits["validate"]])
    test = splits["test"]
    subjects = len(np.unique(train.case_id))
    print(f"training on {subjects} subjects ({len(train)} slices), testing on "
          f"{len(np.unique(test.case_id))} held-out subjects ({len(test)} slices); "
          f"{budget} per design")
    header = {"machine": machine, "data": description, "minutes": args.minutes,
              "steps": args.steps,
              "train_subjects": subjects, "test_slices": len(test),
              "title": f"{budget} of training per point; {subjects} training / "
                       f"{len(np.unique(test.case_id))} held-out subjects of {values['data_dir']}"}

    def save(rows: Sequence[Mapping[str, Any]]) -> None:
        write(rows, args.json, args.figure, header, quiet=True)

    rows = measure(names, values, train, test, args.minutes, train_for_budget, quality, save,
                   steps=args.steps)
    write(rows, args.json, args.figure, header)
    return rows


def measure(names: Sequence[str], values: Mapping[str, Any], train: SliceSet, test: SliceSet,
            minutes: float, train_for_budget: Callable, quality: Callable,
            on_row: Callable | None = None, steps: int = 0) -> list[dict[str, Any]]:
    """Trains and scores each design; returns one row per design (printed as it finishes).

    Args:
        names: design names (see `DESIGNS`).
        values: the run's hyperparameters (each design overrides its own).
        train, test: `SliceSet`s of the training and held-out subjects.
        minutes: wall-clock training budget per design.
        steps: when > 0, the budget is this many optimizer steps instead.
        train_for_budget, quality: benchmark.py's `_train_for_budget` and
            `_reconstruction_quality`.
        on_row: called with the rows so far after each design.
    """
    rows = []
    print(f"{'design':<44} {'bits':>6} {'images':>7} {'train SSIM':>10} {'test SSIM':>15} "
          f"{'brain':>6} {'sharp':>6} {'PSNR':>6} {'codes':>9}")
    for name in names:
        label, baseline, design_values = design(name, values)
        keras.backend.clear_session()
        model, images, seconds = train_for_budget(design_values, baseline, train, minutes, steps)
        train_quality, _ = quality(model, train)
        test_quality, used = quality(model, test)
        psnr = test_quality["psnr"][np.isfinite(test_quality["psnr"])]
        row = {"design": name, "label": label, "bits": float(model.code_bits),
               "levels": int(model.levels), "adversarial": name.endswith("+adv"),
               "baseline": name in REFERENCES, "images_seen": images, "seconds": round(seconds, 1),
               "train_ssim": float(train_quality["ssim"].mean()),
               "test_ssim": float(test_quality["ssim"].mean()),
               "test_ssim_std": float(test_quality["ssim"].std()),
               "test_brain_ssim": float(np.nanmean(test_quality["brain_ssim"])),
               "test_sharpness": float(np.nanmean(test_quality["sharpness"])),
               "test_psnr": float(psnr.mean()), "codes_used": used,
               "num_codes": int(model.num_codes)}
        rows.append(row)
        print(f"{label:<44} {row['bits']:>6,.0f} {images:>7,} {row['train_ssim']:>10.4f} "
              f"{row['test_ssim']:>8.4f} ± {row['test_ssim_std']:.3f} "
              f"{row['test_brain_ssim']:>6.3f} {row['test_sharpness']:>6.3f} "
              f"{row['test_psnr']:>6.2f} {used:>4}/{row['num_codes']:<4}", flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


def merge(paths: Sequence[PathLike], names: Sequence[str] | None, json_path: PathLike | None,
          figure_path: PathLike | None) -> dict[str, Any]:
    """`benchmark.py rate-distortion --merge`: one table and figure from sweeps measured before
    (a full sweep is hours on a CPU, so it is often run in parts), nothing trained.

    Args:
        paths: JSON files written by `--json`, all on the same data (refused otherwise). Where
            two hold the same design, the later file's row is kept.
        names: the designs to show, in this order (those in no file are named and left out).
        json_path, figure_path: where to write the merged rows and figure (either may be None).

    Returns:
        The merged rows; each carries its file's budget ("budget") and source ("source").
    """
    parts = []
    for path in paths:
        try:
            parts.append((path, json.loads(pathlib.Path(path).read_text())))
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(
                f"error: --merge {path}: not a rate-distortion JSON ({error}); give the files "
                f"that `benchmark.py rate-distortion --json` wrote") from None
    datasets = {part.get("data") for _, part in parts}
    if len(datasets) > 1:
        raise SystemExit("error: --merge: the files were measured on different data ("
                         + "; ".join(f"{path}: {part.get('data')}" for path, part in parts)
                         + "), so their points do not share held-out subjects")
    rows = {}
    for path, part in parts:
        for row in part["rows"]:
            # a row of a merged file keeps the budget and source it was measured with
            budget = row.get("budget") or budget_text(part.get("minutes", 0),
                                                      part.get("steps", 0))
            rows[row["design"]] = dict(row, budget=budget, source=row.get("source", str(path)))
    missing = [name for name in names if name not in rows]
    if missing:
        print(f"not in any file, left out: {', '.join(missing)}")
    merged = [rows[name] for name in names if name in rows]
    budgets = {}
    for row in merged:
        budgets.setdefault(row["budget"], []).append(row["design"])
    budget_words = "; ".join(f"{budget} ({', '.join(designs)})" if len(budgets) > 1 else budget
                             for budget, designs in budgets.items())
    first = parts[-1][1]
    header = {"machine": first.get("machine"), "data": first.get("data"),
              "train_subjects": first.get("train_subjects"),
              "test_slices": first.get("test_slices"), "merged_from": [str(p) for p in paths],
              "title": f"training per point: {budget_words}; {first.get('train_subjects')} "
                       f"training subjects, {first.get('test_slices')} held-out slices"}
    print(f"{'design':<44} {'budget':>10} {'seconds':>8} {'bits':>6} {'test SSIM':>15} "
          f"{'brain':>6} {'sharp':>6}")
    for row in merged:
        print(f"{row['label']:<44} {row['budget']:>10} {row.get('seconds', 0):>8,.0f} "
              f"{row['bits']:>6,.0f} {row['test_ssim']:>8.4f} ± {row['test_ssim_std']:.3f} "
              f"{row['test_brain_ssim']:>6.3f} {row['test_sharpness']:>6.3f}")
    write(merged, json_path, figure_path, header)
    return merged


def budget_text(minutes: float, steps: int) -> str:
    """How a training budget reads: "300 steps" or "9 min"."""
    return f"{steps:,} steps" if steps else f"{minutes:g} min"


def write(rows: Sequence[Mapping[str, Any]], json_path: PathLike | None,
          figure_path: PathLike | None, header: Mapping[str, Any], quiet: bool = False) -> None:
    """Writes the rows as JSON (with `header`: machine, data, budget) and the figure."""
    if json_path:
        pathlib.Path(json_path).write_text(json.dumps(dict(header, rows=rows), indent=2))
        if not quiet:
            print(f"rows: {json_path}")
    if figure_path:
        plots.rate_distortion(rows, figure_path, title=header.get("title", ""))
        if not quiet:
            print(f"figure: {figure_path}")


def run(args: argparse.Namespace) -> Any:
    """Held-out SSIM against code bits per image, one design per point, same budget each
    (rate_distortion.py); prints the table, writes --json and --figure."""
    if args.merge:
        return merge(args.merge, args.points.split(","), args.json, args.figure)
    return sweep(args, harness.machine_description(), harness.train_for_budget,
                 harness.reconstruction_quality, budget_text(args.minutes, args.steps))


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    rd_parser = commands.add_parser(
        "rate-distortion", help="held-out SSIM against code bits per image, one design per "
                                "point (rate_distortion.py)")
    rd_parser.add_argument("--points", default="kerasio,seed,8x,4x,vqvae2-8x,vqvae2-4x",
                           help="designs, comma-separated; +adv adds the adversarial loss "
                                "(e.g. 8x+adv)")
    rd_parser.add_argument("--minutes", type=float, default=20.0,
                           help="wall-clock training budget per point")
    rd_parser.add_argument("--json", default=None, help="also write the rows here")
    rd_parser.add_argument("--figure", default=None, help="plot the points to this PNG")
    rd_parser.add_argument("--steps", type=harness.positive_steps, default=0,
                           help=harness.STEPS_HELP)
    rd_parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                           help="train nothing: one table and figure of the --points found in "
                                "these earlier --json files (same data; a later file's row of "
                                "a design replaces an earlier one)")
    config.add_arguments(rd_parser)
    rd_parser.set_defaults(run=run)
