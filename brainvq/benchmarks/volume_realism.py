"""Whole volumes on the validation split, per run and per `unconditional_covariates` (choosing a
volume model and how it is sampled), every run judged in one set of feature networks."""
from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

from brainvq import config
from brainvq.benchmarks.harness import comma_separated, machine_description, seeds_mean
from brainvq.benchmarks.realism_sweep import feature_network_folder
from brainvq.data import layouts
from brainvq.evaluation import volume_checks
from brainvq.runs import run_folder

# The settings that decide which slices the splits hold: runs compared must share them.
DATA_KEYS = ("image_size", "slices_per_volume", "num_slice_positions", "demo_copies", "seed",
             "skip_bad", "slice_axis", "split", "crop_to_head", "slice_spacing", "field_of_view")
# (heading, report key, format) of each column after the run's
COLUMNS = (("nb. SSIM", "neighbour_ssim_samples", "{:8.4f}"),
           ("head mL", ("head_volume_mean_samples", "head_volume_sd_samples"), "{:5.0f}±{:3.0f}"),
           ("cor. pl.", "coronal_plausible_samples", "{:8.1%}"),
           ("cor. Fr.", "coronal_frechet_samples", "{:8.3f}"),
           ("cor. P/R", ("coronal_precision_samples", "coronal_recall_samples"), "{:4.2f}/{:4.2f}"),
           ("sag. pl.", "sagittal_plausible_samples", "{:8.1%}"),
           ("sag. Fr.", "sagittal_frechet_samples", "{:8.3f}"),
           ("sag. P/R", ("sagittal_precision_samples", "sagittal_recall_samples"),
            "{:4.2f}/{:4.2f}"),
           ("axial pl.", "plausible_stack_slices", "{:9.1%}"),
           ("axial Fr.", "frechet_stack_slices", "{:9.4f}"))
# the held-out real volumes' figure beside each column's (the axial slices' plausibility has none)
REAL = {"frechet_stack_slices": "frechet_real_stack_slices", "plausible_stack_slices": None}


def _real_key(key: str) -> str:
    return REAL.get(key, key.replace("_samples", "_real"))


def _cell(figures: Mapping[str, Any], key: str, fmt: str, real: bool = False) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    if real:
        keys = tuple(_real_key(name) for name in keys)
    if not all(name in figures for name in keys):
        return " " * len(fmt.format(*([0.5] * len(keys))))
    return fmt.format(*(figures[name] for name in keys))


def table(rows: Sequence[tuple]) -> str:
    """The printed table: the held-out real volumes' row, then one per run, covariates and seed,
    and the seeds' mean per run and covariates when there are several seeds."""
    width = max(max(len(run) for (run, _), _, _ in rows), len("real (held out)"))
    cells = [(heading, len(fmt.format(*([0.5] * (len(key) if isinstance(key, tuple) else 1)))))
             for heading, key, fmt in COLUMNS]
    lines = [f"{'run':{width}s} {'covariates':>10s} {'seed':>5s} "
             + " ".join(f"{heading:>{size}s}" for heading, size in cells)]
    # the real volumes' figures (the axial slices' floor draws its real slices by seed; the head
    # volumes' sd: the mean of each seed's sd across its volumes): the mean over the seeds
    first = seeds_mean([figures for setting, _, figures in rows if setting == rows[0][0]])
    lines.append(f"{'real (held out)':{width}s} {'':>10s} {'':>5s} "
                 + " ".join(_cell(first, key, fmt, real=True) for _, key, fmt in COLUMNS))
    for setting in dict.fromkeys(setting for setting, _, _ in rows):  # in the order run
        mine = [(str(seed), figures) for other, seed, figures in rows if other == setting]
        if len(mine) > 1:
            mine.append(("mean", seeds_mean([figures for _, figures in mine])))
        run, covariates = setting
        for seed, figures in mine:
            lines.append(f"{run:{width}s} {covariates:>10s} {seed:>5s} "
                         + " ".join(_cell(figures, key, fmt) for _, key, fmt in COLUMNS))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> Any:
    """Samples `--volumes` stacks of each run in `--output-dirs` under each of
    `--unconditional-covariates` (a run whose priors take no covariates is sampled once) and
    judges them against the validation subjects' volumes (never the test subjects), with the
    feature networks of `--feature-network-dir`, at each of `--seeds`: rows of (run and
    covariates, seed, report). At 20 volumes one seed's coronal Fréchet distance moves by about
    0.2 between seeds, as much as two models differ: rank volume models on several."""
    seeds = args.seeds or [args.seed]
    for covariates in args.unconditional_covariates:
        if covariates not in config.CHOICES["unconditional_covariates"]:
            raise SystemExit(f"error: --unconditional-covariates {covariates}: choose from "
                             f"{', '.join(config.CHOICES['unconditional_covariates'])}")
    cache = feature_network_folder(argparse.Namespace(
        output_dir=args.output_dirs[0], feature_network_dir=args.feature_network_dir))
    print(f"machine: {machine_description()}")
    splits, data, rows = None, None, []
    for output_dir in args.output_dirs:
        covariate_settings = args.unconditional_covariates
        state = run_folder.read_state(output_dir)
        if not any(record.get("covariates") for stage, record in state.items()
                   if stage in ("prior", "volume")):
            covariate_settings = ["null"]
        for covariates in covariate_settings:
            values, vqvae = run_folder.load_run(output_dir, {
                "data_dir": args.data_dir, "covariates": args.covariates,
                "unconditional_covariates": covariates})
            run_folder.check_unconditional_covariates(output_dir, values)
            if values.get("slice_spacing", 0) <= 0:
                raise run_folder.RunError(f"{output_dir} was not trained on whole stacks "
                                          f"(--slice-spacing 0): it draws no volumes")
            settings = {key: values[key] for key in DATA_KEYS}
            if splits is None:
                splits, description = layouts.load_splits_for(values)
                data = settings
                print(f"{description}; {args.volumes} volumes per run, setting and seed "
                      f"(seeds {', '.join(map(str, seeds))}); feature networks in {cache}")
            elif settings != data:
                changed = sorted(key for key in DATA_KEYS if settings[key] != data[key])
                raise run_folder.RunError(f"{output_dir} was cut from its data differently from "
                                          f"{args.output_dirs[0]} ({', '.join(changed)}): their "
                                          f"volumes cannot be judged against the same real ones")
            for seed in seeds:
                print(f"\n{output_dir}, unconditional covariates {covariates}, seed {seed}:")
                report = volume_checks.volume_report(
                    values, vqvae, output_dir, splits, "validate", args.volumes, seed, cache,
                    images_dir=None, independent=args.independent == "yes")
                if report is not None:
                    rows.append(((output_dir, covariates), seed, report))
    if rows:
        print("\n" + table(rows))
    return rows


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    parser = commands.add_parser(
        "volumes", help="whole volumes on the validation split per run and covariates, one "
                        "set of feature networks")
    parser.add_argument("--output-dirs", type=comma_separated(), required=True,
                        help="run folders (or shipped models) cut as whole stacks, "
                             "comma-separated")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--covariates", default=None, metavar="FILE.csv")
    parser.add_argument("--volumes", type=config.non_negative_int, default=20)
    parser.add_argument("--unconditional-covariates", type=comma_separated(), default=["null"],
                        help="null and/or drawn, comma-separated (for priors trained on "
                             "covariates; others are sampled once)")
    parser.add_argument("--independent", choices=("yes", "no"), default="no",
                        help="also sample as many independent slices and judge the stacks' "
                             "slices against them (slower)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=comma_separated(int), default=None,
                        help="several sampling seeds (overrides --seed); the table adds their "
                             "mean per run and covariates")
    parser.add_argument("--feature-network-dir", default=None,
                        help="where the feature networks are kept (default: the first run's "
                             "folder, or output/<name> for a shipped model)")
    parser.set_defaults(run=run)
