"""Train on synthetic, test on real: what the samples are worth to a model trained on them.

The same small model (evaluation/utility.py) is trained on the real training slices of N
subjects, on synthetic slices alone (as many as the real training slices, and multiples of
that), on both, and on the synthetic slices with their labels shuffled (the control), and
judged on the real slices of held-out subjects. Synthetic slices are drawn at the label rows of
the real training slices (age, sex and slice position together, each row once per multiple),
so their labels are distributed as the training subjects' are. They are kept on disk by the
model's checksum, the sampling settings and the seed, chunk by chunk: an interrupted run loses
at most one chunk, and a second run samples nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from brainvq import config
from brainvq.benchmarks import plots
from brainvq.benchmarks.harness import comma_separated, machine_description, seeds_mean
from brainvq.benchmarks.rulers import load_covariate_run
from brainvq.evaluation import utility
from brainvq.generation import generate
from brainvq.hints import PathLike
from brainvq.runs import fingerprints, run_folder

if TYPE_CHECKING:
    import keras

    from brainvq.data.slice_sets import SliceSet

CHUNK = 256  # synthetic slices sampled (and kept) per file
SAMPLING_SETTINGS = ("temperature", "top_k", "guidance", "covariate_guidance")


def labelled(split: SliceSet, covariate_rows: np.ndarray
             ) -> tuple[utility.LabelledSlices, np.ndarray]:
    """A split's slices with their covariates (LabelledSlices) and subject ids, slices with an
    unknown covariate left out."""
    known = ~np.isnan(covariate_rows).any(axis=1)
    slices = utility.LabelledSlices(split.images[known], covariate_rows[known],
                                    np.asarray(split.slice_index, np.int32)[known])
    return slices, np.asarray(split.case_id)[known]


def subject_subset(slices: utility.LabelledSlices, case_id: np.ndarray, count: int, seed: int
                   ) -> utility.LabelledSlices:
    """The slices of `count` subjects drawn in a seeded order (nested: the first 10 of 25 are
    the 10)."""
    cases = np.unique(case_id)
    if count > len(cases):
        raise run_folder.RunError(f"--subjects {count}: the training subjects with every "
                                  f"covariate known number only {len(cases)}")
    chosen = np.random.default_rng([seed, 7]).permutation(cases)[:count]
    return slices.take(np.isin(case_id, chosen))


def synthetic_key(output_dir: PathLike, values: Mapping[str, Any],
                  real: utility.LabelledSlices) -> str:
    """What a synthetic set depends on, as one hex digest: the models' files, the sampling
    settings and the real label rows it is drawn at."""
    digest = hashlib.sha256()
    for name in (run_folder.VQVAE_FILE, run_folder.PRIOR_FILE):
        digest.update(str(fingerprints.file_fingerprint(pathlib.Path(output_dir) / name))
                      .encode())
    digest.update(json.dumps({name: values.get(name) for name in SAMPLING_SETTINGS},
                             sort_keys=True).encode())
    digest.update(np.ascontiguousarray(real.covariates, np.float32).tobytes())
    digest.update(np.ascontiguousarray(real.slice_index, np.int32).tobytes())
    return digest.hexdigest()


def synthetic_round(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                    prior: keras.Model, real: utility.LabelledSlices, cache: pathlib.Path,
                    seed: int, round_index: int) -> utility.LabelledSlices:
    """One round of synthetic slices: one per real training slice, at its label row, in a
    seeded order; sampled chunk by chunk into `cache` (a chunk already there is read, not
    sampled again)."""
    order = np.random.default_rng([seed, round_index]).permutation(len(real))
    labels = real.take(order)
    parts, started, sampled = [], time.perf_counter(), 0
    for start in range(0, len(labels), CHUNK):
        chunk = labels.take(np.arange(start, min(start + CHUNK, len(labels))))
        path = cache / f"seed{seed}_round{round_index}_{start // CHUNK:04d}.npz"
        if path.is_file():
            with np.load(path) as saved:
                images = saved["images"].astype(np.float32) / 255.0
        else:
            images, _ = generate.generate(
                values, vqvae, output_dir, len(chunk), slice_index=chunk.slice_index,
                seed=seed * 100_000 + round_index * 1_000 + start // CHUNK,
                covariates=chunk.covariates, prior=prior)
            quantised = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
            partial = path.with_suffix(".partial.npz")
            np.savez_compressed(partial, images=quantised)
            partial.replace(path)
            images = quantised.astype(np.float32) / 255.0
            sampled += len(chunk)
            seconds = time.perf_counter() - started
            print(f"  synthetic seed {seed}, round {round_index}: "
                  f"{start + len(chunk)}/{len(labels)} slices ({seconds / sampled:.2f} s a "
                  f"slice)", flush=True)
        parts.append(utility.LabelledSlices(images, chunk.covariates, chunk.slice_index))
    return utility.concatenate(*parts)


def configurations(subjects: Sequence[int | str], multiples: Sequence[int]
                   ) -> list[tuple[str, int | str | None, int, bool]]:
    """(name, real subjects or None, synthetic multiple or 0, shuffled) of every training set."""
    first = multiples[0]
    sets = [(f"real {count}", count, 0, False) for count in subjects]
    sets += [(f"synthetic x{multiple}", None, multiple, False) for multiple in multiples]
    sets += [(f"real {count} + synthetic x{first}", count, first, False) for count in subjects]
    sets.append((f"synthetic x{first}, labels shuffled", None, first, True))
    return sets


def run(args: argparse.Namespace) -> Any:
    """Trains the utility model on every training set for every seed (the subjects drawn, the
    synthetic slices sampled and the model trained at that seed) and judges it on the real
    validation slices (and, with `--report-test`, on the test slices too; choose nothing on
    those)."""
    values, vqvae, splits, specs, arrays, description = load_covariate_run(args)
    real, case_id = labelled(splits["train"], arrays["train"])
    held_out = {"validate": labelled(splits["validate"], arrays["validate"])[0]}
    if args.report_test:
        held_out["test"] = labelled(splits["test"], arrays["test"])[0]
    key = synthetic_key(args.output_dir, values, real)
    cache = pathlib.Path(args.cache_dir or pathlib.Path(values["images_dir"]) / "synthetic")
    cache = cache / key[:16]
    cache.mkdir(parents=True, exist_ok=True)
    results_path = pathlib.Path(args.json or cache / "utility.json")
    done = read_results(results_path, key, args.images_seen)
    prior = run_folder.load_prior(args.output_dir)
    print(f"machine: {machine_description()}")
    print(f"{description}; run {args.output_dir}; {len(real)} real training slices of "
          f"{len(np.unique(case_id))} subjects; held out: "
          + ", ".join(f"{len(slices)} {name} slices" for name, slices in held_out.items())
          + f"; {args.images_seen} images seen per model; synthetic slices kept in {cache}")
    subjects_known = len(np.unique(case_id))
    subjects = [subjects_known if count == "all" else count for count in args.subjects]
    if max(subjects) > subjects_known:
        raise run_folder.RunError(f"--subjects {max(subjects)}: the training subjects with "
                                  f"every covariate known number only {subjects_known} (all: "
                                  f"every one)")
    sets = configurations(subjects, args.multiples)
    for seed in args.seeds:
        rounds = []
        for multiple in sorted({multiple for _, _, multiple, _ in sets if multiple}):
            while len(rounds) < multiple:
                rounds.append(synthetic_round(values, vqvae, args.output_dir, prior, real,
                                              cache, seed, len(rounds)))
        for name, count, multiple, shuffled in sets:
            if (name, seed) in done:
                continue
            parts = [subject_subset(real, case_id, count, seed)] if count else []
            if multiple:
                synthetic = utility.concatenate(*rounds[:multiple])
                parts.append(synthetic.shuffled(seed) if shuffled else synthetic)
            training = utility.concatenate(*parts)
            started = time.perf_counter()
            model = utility.train_utility_model(training, specs, values["num_slice_positions"],
                                                seed=seed, images_seen=args.images_seen)
            row = {"set": name, "seed": seed, "slices": len(training),
                   "seconds": round(time.perf_counter() - started, 1)}
            for split, slices in held_out.items():
                row[split] = utility.judge(model, slices, specs)
            done[(name, seed)] = row
            write_results(results_path, key, args.images_seen, done)
            print(f"  seed {seed}, {name}: {len(training)} slices, "
                  + "; ".join(f"{metric} {value:.3f}"
                              for metric, value in row["validate"].items())
                  + f" ({row['seconds']:.0f} s)", flush=True)
    summary = summarise(done.values(), [name for name, *_ in sets], args.seeds)
    for split in held_out:
        print_table(summary, split)
    print_targets(summary, subjects, args.multiples)
    if args.figure:
        # the data folder by name: a figure that names this machine's paths cannot be shipped
        data_dir = str(args.data_dir)
        title = description.replace(data_dir, pathlib.Path(data_dir).name)
        plots.utility_curve(summary, subjects, args.multiples[0], args.figure, title=title)
        print(f"figure: {args.figure}")
    print(f"rows: {results_path}")
    return summary


def read_results(path: PathLike, key: str, images_seen: int) -> dict[tuple[str, int], dict]:
    """The rows of an earlier run of the same synthetic sets and budget, by (set, seed)."""
    if not pathlib.Path(path).is_file():
        return {}
    saved = json.loads(pathlib.Path(path).read_text())
    if saved.get("key") != key or saved.get("images_seen") != images_seen:
        return {}
    return {(row["set"], row["seed"]): row for row in saved["rows"]}


def write_results(path: PathLike, key: str, images_seen: int,
                  done: Mapping[tuple[str, int], dict]) -> None:
    """Every row so far, written whole after each model (an interruption loses one model)."""
    path = pathlib.Path(path)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"key": key, "images_seen": images_seen,
                                   "machine": machine_description(),
                                   "rows": list(done.values())}, indent=2))
    partial.replace(path)


def summarise(rows: Sequence[Mapping[str, Any]], names: Sequence[str], seeds: Sequence[int]
              ) -> dict[str, Any]:
    """{set: {split: {"mean": {...}, "sd": {...}}, "slices": n, "seeds": k}} over `seeds`."""
    summary = {}
    for name in names:
        chosen = [row for row in rows if row["set"] == name and row["seed"] in seeds]
        if not chosen:
            continue
        entry = {"slices": chosen[0]["slices"], "seeds": len(chosen)}
        for split in ("validate", "test"):
            reports = [row[split] for row in chosen if split in row]
            if reports:
                entry[split] = {"mean": seeds_mean(reports),
                                "sd": {metric: float(np.std([report[metric]
                                                             for report in reports]))
                                       for metric in reports[0]}}
        summary[name] = entry
    return summary


def print_table(summary: Mapping[str, Any], split: str) -> None:
    """One line per training set: each figure's mean ± sd over the seeds on `split`."""
    metrics = next(iter(summary.values()))[split]["mean"].keys()
    print(f"\nreal {split} slices, mean ± sd over seeds:")
    print(f"  {'training set':38s} {'slices':>7s} " + " ".join(f"{m:>17s}" for m in metrics))
    for name, entry in summary.items():
        if split not in entry:
            continue
        cells = [f"{entry[split]['mean'][m]:8.3f} ± {entry[split]['sd'][m]:6.3f}"
                 for m in metrics]
        print(f"  {name:38s} {entry['slices']:>7d} " + " ".join(f"{c:>17s}" for c in cells))


def print_targets(summary: Mapping[str, Any], subjects: Sequence[int | str],
                  multiples: Sequence[int]) -> None:
    """The issue's three comparisons on the validation slices, as ratios."""
    def mean(name: str, metric: str) -> float | None:
        entry = summary.get(name, {}).get("validate")
        return entry["mean"].get(metric) if entry else None

    first, fewest, most = multiples[0], min(subjects), max(subjects)
    print("\ncomparisons (validation):")
    for metric in next(iter(summary.values()))["validate"]["mean"]:
        real_all, synthetic = mean(f"real {most}", metric), mean(f"synthetic x{first}", metric)
        few, mixed = mean(f"real {fewest}", metric), mean(f"real {fewest} + synthetic x{first}",
                                                          metric)
        shuffled = mean(f"synthetic x{first}, labels shuffled", metric)
        parts = []
        if real_all and synthetic is not None:
            parts.append(f"synthetic x{first} / real {most}: {synthetic / real_all:.2f}x")
        if few and mixed is not None:
            parts.append(f"real {fewest} + synthetic / real {fewest}: {mixed / few:.2f}x")
        if shuffled is not None:
            parts.append(f"shuffled control {shuffled:.3f}")
        print(f"  {metric}: " + "; ".join(parts))


def subject_count(text: str) -> int | str:
    """argparse item type of --subjects: a whole number >= 1, or "all"."""
    if text == "all":
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or all, got {text!r}")
    return count


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    parser = commands.add_parser(
        "utility", help="train on synthetic, test on real: a small model trained on real, "
                        "synthetic and mixed slices, judged on real held-out slices")
    parser.add_argument("--output-dir", default=config.DEFAULTS["output_dir"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--covariates", default=None, metavar="FILE.csv")
    parser.add_argument("--subjects", type=comma_separated(subject_count),
                        default=[10, 25, "all"],
                        help="real training subjects per point of the curve (all: every "
                             "training subject whose covariates are known)")
    parser.add_argument("--multiples", type=comma_separated(int), default=[1, 4],
                        help="synthetic sets as multiples of the real training slices (the "
                             "first is the one mixed with real slices and shuffled)")
    parser.add_argument("--seeds", type=comma_separated(int), default=[0, 1, 2])
    parser.add_argument("--images-seen", type=int, default=utility.IMAGES_SEEN,
                        help="images each utility model sees while it trains")
    parser.add_argument("--report-test", action="store_true",
                        help="also judge every model on the test subjects (choose nothing on "
                             "those figures)")
    parser.add_argument("--cache-dir", default=None,
                        help="where synthetic slices are kept (default: <images dir>/synthetic)")
    parser.add_argument("--json", default=None, help="the rows (default: in the cache folder); "
                                                     "an earlier run's rows there are reused")
    parser.add_argument("--figure", default=None, help="the learning curve as a PNG")
    parser.set_defaults(run=run)
