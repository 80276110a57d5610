"""Reconstruct test slices with a trained VQ-VAE, and sample new slices from the prior.

    python predict.py                     # reconstructions of the test split + mean SSIM
    python predict.py --samples 16        # ... and 16 new synthetic slices from the prior
    python predict.py --samples 16 --slice 20 --temperature 0.9 --top-k 64 --seed 3
    python predict.py --output-dir pretrained/ixi-t1-128 --samples 16   # the shipped model
    python predict.py --age 70 --sex F --slice 20 --samples 16   # a run trained --condition-on
    python predict.py --samples 16 --by-covariate   # ... and samples_by_age.png, ..._sex.png
    python predict.py --volumes 4         # whole volumes (NIfTI) from a run cut as stacks

Reads the run in --output-dir (as train.py wrote it); figures go to --images-dir (default: the
run's images/ folder; for a shipped model output/<its name>). The work is brainvq/generation/.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import hyperparameters
from brainvq import console, errors
from brainvq.runs.arguments import add_run_arguments

if TYPE_CHECKING:
    import keras
    import numpy as np

    from brainvq.data.slice_sets import SliceSet
    from brainvq.runs.run import Run

MAX_VOLUMES = 1000  # whole volumes one predict.py call draws at most (14 s each on 2 CPU cores)


def positive_int(text: str) -> int:
    """argparse type for --count: a whole number >= 1."""
    value = hyperparameters.non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1 (the slices the figure shows)")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = add_run_arguments(hyperparameters.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--count", type=positive_int, default=8,
                        help="test slices shown in the reconstruction figure (default: 8)")
    parser.add_argument("--samples", type=hyperparameters.non_negative_int, default=0,
                        help="number of new slices to sample from the prior (default: 0)")
    parser.add_argument("--slice", type=int, default=None, dest="slice_index",
                        help="condition the samples on this slice index (default: none)")
    parser.add_argument("--volumes", type=hyperparameters.non_negative_int, default=0,
                        help="number of whole volumes to sample, written as "
                             "samples/volume_NNN.nii.gz (a run cut as stacks, --slice-spacing; "
                             "default: 0)")
    parser.add_argument("--age", default=None,
                        help="for a run trained --condition-on age: sample at this age")
    parser.add_argument("--sex", default=None,
                        help="for a run trained --condition-on sex: sample this sex (e.g. F)")
    parser.add_argument("--by-covariate", action="store_true",
                        help="for a run trained --condition-on: with --samples, also draw one "
                             "figure per covariate (samples_by_age.png, ...), one row per value")
    parser.add_argument("--condition", action="append", default=[], metavar="NAME=VALUE",
                        help="any other covariate the run was trained on (repeatable)")
    console.add_verbose_flag(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console.quiet_start(args.verbose)
    from brainvq.runs import run_folder

    try:
        run(args)
    except run_folder.script_errors() as failure:
        sys.exit(f"error: {failure}")
    except KeyboardInterrupt:
        sys.exit("interrupted: predict.py stopped; the run folder is unchanged (figures written "
                 "before the interruption stay in the images folder)")


def run(args: argparse.Namespace) -> None:
    """Reconstructions of the test split (skipped, in one line, when only samples are asked for
    and the run's data are not here) and, with --samples, new slices."""
    from brainvq.runs import lock, pretrained, run_folder
    from brainvq.runs.run_folder import RunError

    run_folder.check_run_dir(args.output_dir)
    images_dir = pretrained.work_dir(args.output_dir, args.images_dir)
    run_folder.check_writable(images_dir, "--images-dir")
    if args.volumes > MAX_VOLUMES:
        raise RunError(f"--volumes {args.volumes}: at about 14 s a volume on 2 CPU cores "
                       f"that is {args.volumes * 14 / 3600:,.0f} hours; draw at most "
                       f"{MAX_VOLUMES} a call")
    # One call at a time writes into a figures folder: a second one's samples would replace
    # the first one's (samples/sample_NNN.png).
    with lock.RunLock(images_dir, flag="--images-dir"):
        _run(args, images_dir)


def _run(args: argparse.Namespace, images_dir: pathlib.Path) -> None:
    from brainvq.evaluation import reports
    from brainvq.generation import generate
    from brainvq.runs import pretrained, run_folder, subjects
    from brainvq.runs.run import Run
    from brainvq.runs.run_folder import RunError

    run = Run.load(args.output_dir, {"data_dir": args.data_dir,
                                     "unconditional": args.unconditional,
                                     "guidance": args.guidance,
                                     "covariate_guidance": args.covariate_guidance,
                                     "unconditional_guidance": args.unconditional_guidance,
                                     "unconditional_covariates": args.unconditional_covariates,
                                     "pose_spread": args.pose_spread})
    values, vqvae = run.values, run.vqvae
    generate.check_slice(args.slice_index, values, args.output_dir)
    run_folder.check_unconditional_covariates(args.output_dir, values)
    requested = {name: value for name, value in (("age", args.age), ("sex", args.sex))
                 if value is not None}
    for item in args.condition:
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name or not value.strip():
            raise RunError(f"--condition {item}: give NAME=VALUE, e.g. --condition "
                           f"age=70")
        if name in requested:
            raise RunError(f"--condition {item}: {name} is asked for twice (also "
                           f"{requested[name]!r}); give it once")
        requested[name] = value
    if args.by_covariate and args.samples == 0:
        raise RunError("--by-covariate draws its figures beside --samples N: add "
                       "--samples (e.g. --samples 16)")
    if args.volumes:
        run_folder.check_stack_run(values, args.output_dir)
    wants_prior = args.samples > 0 or args.volumes > 0 or requested
    prior = run.prior if wants_prior else None
    volume_prior = run.volume_prior if args.volumes else None
    covariates, volume_covariates = covariate_rows(args.output_dir, values, requested, prior,
                                                   volume_prior, args.samples, args.volumes)
    try:
        test = subjects.held_out(args.output_dir, generate.load_test_split(values), "test",
                                 values["data_dir"])
    except errors.MissingData:
        if (args.samples == 0 and args.volumes == 0) or args.data_dir is not None:
            raise
        where = values["data_dir"]
        if not where:  # a shipped model names its data
            named = pretrained.data_description(args.output_dir) or "named in its model card"
            where = f"{named}; no folder recorded"
        elif not os.path.isabs(where):
            where = f"{where}, from {args.output_dir}: not found"
        print(f"no reconstructions: they need this run's data ({where}); pass --data-dir DIR "
              f"to reconstruct held-out slices")
        test = None
    if test is not None:
        figure, ssim_values = reports.reconstruction_figure(vqvae, test, images_dir,
                                                               args.count)
        print(f"mean SSIM over {len(test)} test slices: {ssim_values.mean():.4f} "
              f"± {ssim_values.std():.4f}")
        print(f"reconstructions written to {figure}")
    if args.samples > 0:
        write_samples(args, run, covariates, requested, test, images_dir)
    if args.volumes > 0:
        from brainvq.generation import stacks

        images, _, seconds = stacks.generate_stacks(
            values, vqvae, args.output_dir, args.volumes, temperature=args.temperature,
            top_k=args.top_k, seed=args.seed, prior=prior, volume_prior=volume_prior,
            covariates=volume_covariates)
        paths, figure = stacks.write_volumes(images, values, images_dir)
        print(f"{args.volumes} volume(s) of {images.shape[1]} slices written to "
              f"{paths[0].parent}/ ({', '.join(path.name for path in paths[:3])}"
              f"{', ...' if len(paths) > 3 else ''}), {seconds:.1f} s per volume; middle "
              f"planes in {figure}")


def covariate_rows(output_dir: pathlib.Path, values: Mapping[str, Any],
                   requested: Mapping[str, str], prior: keras.Model | None,
                   volume_prior: keras.Model | None, samples: int, volumes: int
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The covariate rows asked for: (the slice prior's, for the samples; the one the volumes
    are drawn with), each checked against the prior that takes it. Volumes drawn slice by slice
    take the slice prior's row; a run with a 3D code draws its heads on its stack prior's own
    covariates (`--volume-condition-on`), which need not be the slice prior's."""
    from brainvq import config
    from brainvq.generation import generate

    three_d = volumes > 0 and config.uses_3d_code(values)
    slice_row = None
    if samples > 0 or not three_d:
        slice_row = generate.requested_covariates(output_dir, requested, prior)
    if not three_d:
        return slice_row, slice_row
    return slice_row, generate.requested_covariates(output_dir, requested, volume_prior)


def write_samples(args: argparse.Namespace, run: Run, covariates: np.ndarray | None,
                  requested: dict[str, str], test: SliceSet | None, images_dir: pathlib.Path
                  ) -> None:
    """The samples asked for, the slice-conditioned figure and, with --by-covariate, one figure
    per covariate: all drawn in one sampling call (one compilation)."""
    from brainvq.generation import generate

    values = run.values
    requests = [generate.Request(args.samples, args.slice_index, covariates)]
    by_slice, positions = generate.samples_by_slice_request(values, run.folder, test,
                                                            covariates=covariates)
    requests.append(by_slice)
    trained_on = getattr(run.prior, "covariates", [])
    specs = trained_on if args.by_covariate else []
    if args.by_covariate and not trained_on:
        print(f"no figures by covariate: {args.output_dir} was trained without covariates")
    if specs:
        by_covariates, levels, position = generate.samples_by_covariates_request(
            values, run.folder, specs)
        requests.append(by_covariates)
    drawn = generate.draw(run, requests, temperature=args.temperature, top_k=args.top_k,
                          seed=args.seed)
    grid = generate.write_samples(drawn[0][0], images_dir, args.slice_index, requested)
    print(f"{args.samples} samples written to {grid} and {images_dir / 'samples'}/")
    figure = generate.plot_samples_by_slice(drawn[1][0], positions, images_dir)
    print(f"slice-conditioned samples written to {figure}")
    if specs:
        for spec, figure in zip(specs, generate.plot_samples_by_covariates(
                drawn[2][0], specs, levels, position, images_dir)):
            print(f"samples by {spec['name']} written to {figure}")
    elif trained_on:
        names = ", ".join(spec["name"] for spec in trained_on)
        print(f"this model also samples by {names}: add --by-covariate for a figure of each")


if __name__ == "__main__":
    main()
