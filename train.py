"""Train the VQ-VAE, then the PixelCNN prior over its frozen code grids.

    python train.py                       # both stages on the default data (demo if no OASIS)
    python train.py --stage vqvae --data-dir /data/keras_png_slices_data --image-size 256
    python train.py --resume              # continue an interrupted run from its last checkpoint
    python train.py --output-dir RUN --export pretrained/NAME   # ship a trained run

Everything lands in --output-dir: `vqvae.keras`, `prior.keras`, `hyperparameters.json`,
`vqvae_log.csv`, `prior_log.csv`, `codes.npz` (the cached code grids of every split) and the
figures in `images/`. The work itself is `brainvq/training/`.
"""
from __future__ import annotations

import argparse
import pathlib
import shlex
import sys
from typing import Sequence

import hyperparameters
from brainvq import console, errors


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = hyperparameters.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=("vqvae", "context", "slab", "prior", "volume_vqvae",
                                            "volume", "all"),
                        default="all",
                        help="which stage to train (default: all = vqvae then prior, then the "
                             "volume prior when the volumes are cut as stacks, --slice-spacing; "
                             "for stacks the slice-context refiner after the VQ-VAE "
                             "(--context-blocks), with --slab-depth the slab autoencoder "
                             "before the priors, with --volume-latent 3d the volume VQ-VAE "
                             "before the volume prior)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output-dir from its last checkpoint, with "
                             "its saved values (flags given may change the training ones)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the stages being trained (and, for the VQ-VAE, the prior "
                             "trained over it) in an --output-dir that already holds them")
    parser.add_argument("--export", metavar="DIR", default=None,
                        help="train nothing: write the trained run in --output-dir as a shipped "
                             "model folder DIR (both models without optimizer state, "
                             "hyperparameters, state with file hashes, logs, MODEL_CARD.md); "
                             "with --overwrite it replaces a model there")
    console.add_verbose_flag(parser)
    hyperparameters.add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python train.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    console.quiet_start(args.verbose)
    from brainvq.runs import checks, lock, pretrained, run_folder
    from brainvq.training import pipeline

    failures = (pipeline.TrainingFailed, hyperparameters.IncompatibleCheckpoint,
                hyperparameters.InvalidHyperparameters, run_folder.RunError, errors.DatasetError,
                errors.WeightsUnavailable, errors.OutputBlocked, FileNotFoundError)
    try:
        values = checks.run_values(args)
        problem = hyperparameters.combination_problem(values)
        if problem:
            sys.exit(f"error: {problem}")
        output_dir = pathlib.Path(values["output_dir"])
        if args.export is not None:
            written = pretrained.export(output_dir, args.export, overwrite=args.overwrite)
            size = sum(path.stat().st_size for path in written) / 1e6
            print(f"exported {output_dir} to {args.export} ({size:.1f} MB): "
                  + ", ".join(path.name for path in written))
            return
        run_folder.check_writable(output_dir, "--output-dir")
        run_folder.check_writable(values["images_dir"], "--images-dir")
        with lock.RunLock(output_dir):
            pipeline.train(values, output_dir, checks.stages_of(args.stage, values),
                           resume=args.resume, overwrite=args.overwrite,
                           given=hyperparameters.given_flags(args), command=command)
    except failures as failure:
        sys.exit(f"error: {failure}")


if __name__ == "__main__":
    main()
