"""Sample realism on the validation split per temperature, top-k and guidance (choosing sampling
defaults), over one or several sampling seeds."""
from __future__ import annotations

import argparse
import pathlib
from typing import Any, Mapping, Sequence

from brainvq import config
from brainvq.benchmarks.harness import (
    comma_separated,
    machine_description,
    seeds_mean,
    seeds_spread,
)
from brainvq.data import layouts
from brainvq.evaluation import realism
from brainvq.generation import generate
from brainvq.hints import PathLike
from brainvq.runs import pretrained, run_folder, subjects
from brainvq.runs.run_folder import RunError

# (heading, figure key, format) of each column after the setting's
COLUMNS = (("plausible", "plausible_samples", "{:10.1%}"),
           ("cond.", "plausible_conditioned", "{:6.1%}"),
           ("Fréchet", "frechet_samples", "{:8.3f}"),
           ("Fr. cond.", "frechet_conditioned", "{:9.3f}"),
           ("KID", "kid_samples", "{:7.4f}"),
           ("prec.", "precision_samples", "{:6.2f}"),
           ("recall", "recall_samples", "{:6.2f}"),
           ("rec. c.", "recall_conditioned", "{:7.2f}"),
           ("pos<=2", "position_within_2_samples", "{:7.1%}"),
           ("|off|", "centroid_offset_samples", "{:6.2f}"),
           ("|tilt|", "tilt_samples", "{:6.2f}"),
           ("worst", "worst_outside_samples", "{:6.1%}"),
           ("worst c.", "worst_outside_conditioned", "{:8.1%}"))
REAL = {"plausible_samples": "plausible_real", "frechet_samples": "frechet_real",
        "frechet_conditioned": "frechet_real", "kid_samples": "kid_real",
        "precision_samples": "precision_real", "recall_samples": "recall_real",
        "recall_conditioned": "recall_real", "position_within_2_samples": "position_within_2_real",
        "centroid_offset_samples": "centroid_offset_real", "tilt_samples": "tilt_real",
        "worst_outside_samples": "worst_outside_real",
        "worst_outside_conditioned": "worst_outside_real"}


def with_worst(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The figures, with the largest share of samples outside the real range of any one
    plausibility statistic, per set (samples, conditioned, real): the issue's "no statistic
    fails more than 3%"."""
    worst = {which: max(figures.get(f"outside_{name}_{which}", 0.0)
                        for name in realism.SHAPE_STATISTICS)
             for which in ("samples", "conditioned", "real")}
    return dict(figures, **{f"worst_outside_{which}": value for which, value in worst.items()})


def snapshot_path(output_dir: PathLike, epoch: int) -> pathlib.Path:
    """A run's kept prior weights of `epoch` (`--prior-snapshot-every`), checked to exist."""
    path = (pathlib.Path(output_dir) / run_folder.SNAPSHOTS_DIR
            / f"prior_epoch_{epoch:03d}.weights.h5")
    if not path.is_file():
        kept = sorted(path.parent.glob("prior_epoch_*.weights.h5"))
        raise RunError(f"{path} not found; kept: "
                       + (", ".join(p.name for p in kept) or "none (train with "
                          "--prior-snapshot-every N)"))
    return path


def feature_network_folder(args: argparse.Namespace) -> pathlib.Path:
    """Where the feature network is kept: `--feature-network-dir` (one network shared by the
    runs compared), else the run folder, or `output/<name>` for a shipped model (never written)."""
    if args.feature_network_dir:
        folder = pathlib.Path(args.feature_network_dir)
    else:
        folder = pretrained.cache_dir(args.output_dir, pretrained.work_dir(args.output_dir))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run(args: argparse.Namespace) -> Any:
    """Realism of a trained run's samples on the validation subjects, for each temperature,
    top-k and guidance (and, with --snapshots, each kept epoch), at each seed: what the sampling
    defaults and checkpoints are chosen by (never the test subjects; `--split test` gives a
    chosen model's final figures over several seeds, once). With several seeds each setting
    also gets a row of their means and spread: one seed's unconditional Fréchet distance moves
    by up to 2x between seeds at a few hundred samples."""
    values, vqvae = run_folder.load_run(args.output_dir, {
        "data_dir": args.data_dir, "unconditional_guidance": args.unconditional_guidance,
        "unconditional_covariates": args.unconditional_covariates,
        "pose_spread": args.pose_spread})
    splits, description = layouts.load_splits_for(values)
    seeds = args.seeds or [args.seed]
    cache = feature_network_folder(args)
    print(f"machine: {machine_description()}")
    print(f"{description}; run {args.output_dir}; unconditional guidance "
          f"{values['unconditional_guidance']}, covariates "
          f"{values['unconditional_covariates']}, pose spread {values['pose_spread']}; "
          f"{args.samples} unconditional + "
          f"{args.samples} slice-conditioned samples per setting and seed (seeds "
          f"{', '.join(map(str, seeds))}), judged against the {args.split} split; feature "
          f"network in {cache}")
    # The training and validation slices' figures (ranges, features, reconstructions): once.
    held_out = subjects.held_out(args.output_dir, splits[args.split], args.split,
                                 values["data_dir"])
    reference = realism.RealReference(values, vqvae, splits["train"], held_out,
                                      feature_figures=True, cache_dir=cache)
    # one load, one compiled sampler for every call; its own copy: snapshots load into it
    prior = run_folder.load_prior(args.output_dir, shared=False)
    snapshots = {epoch: snapshot_path(args.output_dir, epoch) for epoch in args.snapshots}
    rows = []
    for epoch in [*snapshots] or [None]:
        if epoch is not None:  # the same network, the weights of that epoch
            prior.load_weights(snapshots[epoch])
        for temperature in args.temperatures:
            for top_k in args.top_ks:
                for seed in seeds:
                    # Unconditional samples take none of these guidance values (only the run's
                    # `unconditional_guidance`): one draw serves every guidance value.
                    samples, _ = generate.generate(values, vqvae, args.output_dir,
                                                    args.samples, temperature=temperature,
                                                    top_k=top_k, seed=seed, prior=prior)
                    for guidance in args.guidances:
                        guided = dict(values, guidance=guidance)
                        figures = realism.realism_report(
                            guided, vqvae, args.output_dir, splits["train"],
                            held_out, samples, args.samples, seed,
                            temperature=temperature, top_k=top_k, verbose=False,
                            reference=reference, prior=prior)
                        rows.append(((epoch, temperature, top_k, guidance), seed,
                                     with_worst(figures)))
    print(table(rows, several_seeds=len(seeds) > 1))
    print(statistics_table(rows))
    return rows


def statistics_table(rows: Sequence[tuple]) -> str:
    """Per plausibility statistic, the share of unconditional / slice-conditioned samples
    outside the real training slices' range (the mean over the seeds), per setting, beside the
    held-out real slices' share: which statistic a setting fails."""
    names = list(realism.SHAPE_STATISTICS)
    settings = list(dict.fromkeys(setting for setting, _, _ in rows))
    lines = ["outside the real range, per statistic (samples / conditioned; seeds' mean):",
             f"{'':>22} {'real':>6} " + " ".join(
                 f"{('best' if s[0] is None else f'e{s[0]}') + f' T{s[1]:g} k{s[2]} g{s[3]:g}':>20}"
                 for s in settings)]
    means = [seeds_mean([figures for other, _, figures in rows if other == setting])
             for setting in settings]
    for name in names:
        real = rows[0][2].get(f"outside_{name}_real", 0.0)
        cells = []
        for mean in means:
            cells.append(f"{mean.get(f'outside_{name}_samples', 0.0):5.1%}/"
                         f"{mean.get(f'outside_{name}_conditioned', 0.0):<6.1%}")
        lines.append(f"{name:>22} {real:6.1%} " + " ".join(f"{cell:>20}" for cell in cells))
    return "\n".join(lines)


def table(rows: Sequence[tuple], several_seeds: bool) -> str:
    """The printed table: the real floor, then a row per setting and seed (and the seeds' mean
    per setting when there are several)."""
    header = (f"{'epoch':>5} {'T':>5} {'top-k':>6} {'guide':>6} {'seed':>5} "
              + " ".join(f"{heading:>{len(fmt.format(0.5))}}" for heading, _, fmt in COLUMNS))
    floor = rows[0][2]
    real = " ".join(fmt.format(floor[REAL[key]]) if key in REAL else " " * len(fmt.format(0.5))
                    for _, key, fmt in COLUMNS)
    lines = [header, f"{'':>5} {'real':>5} {'':>6} {'':>6} {'':>5} {real}"]
    for setting in dict.fromkeys(setting for setting, _, _ in rows):  # in the order run
        mine = [(seed, figures) for other, seed, figures in rows if other == setting]
        named = [(str(seed), figures) for seed, figures in mine]
        if several_seeds:
            named.append(("mean", seeds_mean([figures for _, figures in mine])))
            named.append(("sd", seeds_spread([figures for _, figures in mine])))
        epoch, temperature, top_k, guidance = setting
        for seed, figures in named:
            lines.append(f"{'best' if epoch is None else epoch:>5} {temperature:5.2f} "
                         f"{top_k:6d} {guidance:6.2f} {seed:>5} "
                         + " ".join(fmt.format(figures[key]) for _, key, fmt in COLUMNS))
    return "\n".join(lines)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    realism_parser = commands.add_parser(
        "realism", help="sample realism on the validation split per temperature and top-k")
    realism_parser.add_argument("--output-dir", default=config.DEFAULTS["output_dir"])
    realism_parser.add_argument("--data-dir", default=None)
    realism_parser.add_argument("--samples", type=int, default=64)
    realism_parser.add_argument("--temperatures", type=comma_separated(float),
                                default=[0.8, 0.9, 1.0])
    realism_parser.add_argument("--top-ks", type=comma_separated(int),
                                default=[0, 64])
    realism_parser.add_argument("--guidances", type=comma_separated(float),
                                default=[1.0], help="classifier-free guidance values (1: none)")
    realism_parser.add_argument("--unconditional-guidance", default=None,
                                type=config.flag_type("unconditional_guidance"),
                                help="guidance on the slice position each unconditional sample "
                                     "drew (default: the run's)")
    realism_parser.add_argument("--unconditional-covariates", default=None,
                                choices=config.CHOICES["unconditional_covariates"],
                                help="covariates of the unconditional samples, for a prior "
                                     "trained on them: null or drawn (default: the run's)")
    realism_parser.add_argument("--pose-spread", default=None,
                                type=config.flag_type("pose_spread"),
                                help="poses of the samples, for a prior trained with "
                                     "--prior-pose-condition: 0 centred and upright, s > 0 a "
                                     "training slice's pose times s (default: the run's)")
    realism_parser.add_argument("--split", default="validate", choices=("validate", "test"),
                                help="the held-out subjects the samples are judged against: "
                                     "validate (choose settings on these), or test (a chosen "
                                     "model's final figures, once)")
    realism_parser.add_argument("--seed", type=int, default=0)
    realism_parser.add_argument("--seeds", type=comma_separated(int), default=None,
                                help="several sampling seeds (overrides --seed); the table adds "
                                     "their mean per setting")
    realism_parser.add_argument("--snapshots", type=comma_separated(int), default=[],
                                help="epochs of the prior's kept weights to judge, each in "
                                     "turn (--prior-snapshot-every; default: the run's "
                                     "prior.keras)")
    realism_parser.add_argument("--feature-network-dir", default=None,
                                help="where the realism feature network is kept (one folder "
                                     "for runs to be compared in one feature space)")
    realism_parser.set_defaults(run=run)
