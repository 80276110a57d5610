"""How good are the reconstructions and the samples? Metrics as a table and CSV, and plots.

    python similarity.py                  # reconstruction metrics over the test split
    python similarity.py --samples 64     # ... plus realism / diversity / Fréchet of 64 samples
    python similarity.py --volumes 8      # whole volumes against held-out real ones (stacks)

Reconstruction metrics per test image: SSIM (scikit-image, data_range=1.0), PSNR, MS-SSIM (where
the image is large enough) and SSIM inside the brain (the `keras_png_slices_seg_*` masks of the
OASIS layout when present, else a threshold mask of the original).
Figures: SSIM histogram, SSIM against slice index, best and worst reconstructions.

Sample metrics: SSIM of each sample to its nearest training slice (realism; near 1 warns of
memorisation), pairwise MS-SSIM among samples (lower is more diverse), the Fréchet distance
between real and generated images in the frozen encoder's feature space, and the distance between
the code-usage histograms of sampled and real code grids. The work is brainvq/evaluation/.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping, Sequence

import hyperparameters
from brainvq import console
from brainvq.runs.arguments import add_run_arguments

SPLIT_NAMES = ("train", "validate", "test")


def split_argument(text: str) -> str:
    """`--split`: a split name, or subject shares (train,validate,test) kept as text."""
    if text in SPLIT_NAMES or hyperparameters.split_shares(text) is not None:
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r}: use one of {', '.join(SPLIT_NAMES)}, or the run's subject split such as "
        f"125,20,20")


def evaluated_split(text: str, values: Mapping[str, Any]) -> str:
    """The split name to evaluate for `--split` text; subject shares must be the run's own."""
    if text in SPLIT_NAMES:
        return text
    given, recorded = hyperparameters.split_shares(text), hyperparameters.split_shares(
        values["split"])
    if given != recorded:
        raise hyperparameters.IncompatibleCheckpoint(
            f"--split {text}: this run split its subjects {values['split']}; another split "
            f"would put training subjects among the held-out ones. Use --split "
            f"{values['split']} (or leave it out)")
    return "test"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = add_run_arguments(hyperparameters.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument(
        "--split", default="test", type=split_argument,
        help="the split to evaluate: train, validate or test (default: test); or the run's "
             "subject split of NIfTI volumes, e.g. 125,20,20 (checked against the run's, so "
             "the held-out subjects stay held out), which evaluates the test split")
    parser.add_argument("--covariates", default=None, metavar="FILE.csv",
                        help="for a run trained on covariates: the subjects' covariates file "
                             "(default: the run's)")
    parser.add_argument("--samples", type=hyperparameters.non_negative_int, default=0,
                        help="also sample this many slices and report sample metrics")
    parser.add_argument("--volumes", type=hyperparameters.non_negative_int, default=0,
                        help="for a run cut as stacks (--slice-spacing): also sample this many "
                             "whole volumes and compare them with the held-out real volumes "
                             "(neighbouring-slice SSIM, coronal and sagittal reslices, the "
                             "stacks' slices against independent samples); as many as "
                             "there are held-out volumes scores every set at full size")
    parser.add_argument(
        "--feature-network", default="auto", choices=("auto", "yes", "no"),
        help="with --samples: train (once per run, a few minutes on a CPU) the realism feature "
             "network and report Fréchet distance, KID, precision, recall and slice position in "
             "its space (auto: yes, except on the demo data, where 73 slices of one template "
             "make them meaningless); with --volumes, no leaves out the reslices' and slices' "
             "feature-space figures and trains none of their networks")
    console.add_verbose_flag(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console.quiet_start(args.verbose)
    from brainvq.data import demo, layouts
    from brainvq.evaluation.reports import (
        covariate_report,
        reconstruction_report,
        sample_report,
        write_figures,
    )
    from brainvq.runs import pretrained, run_folder, subjects

    try:
        run_folder.check_run_dir(args.output_dir)
        images_dir = pretrained.work_dir(args.output_dir, args.images_dir)
        run_folder.check_writable(images_dir, "--images-dir")
        cache_dir = pretrained.cache_dir(args.output_dir, images_dir)
        values, vqvae = run_folder.load_run(args.output_dir, {
            "data_dir": args.data_dir, "covariates": args.covariates,
            "temperature": args.temperature, "top_k": args.top_k, "guidance": args.guidance,
            "covariate_guidance": args.covariate_guidance,
            "unconditional_guidance": args.unconditional_guidance,
            "unconditional": args.unconditional,
            "unconditional_covariates": args.unconditional_covariates,
            "pose_spread": args.pose_spread})
        run_folder.check_unconditional_covariates(args.output_dir, values)
        split = evaluated_split(args.split, values)
        if args.volumes > 0:  # before anything is written
            run_folder.check_stack_run(values, args.output_dir)
        splits, description = layouts.load_splits_for(values)
        print(description)
        splits[split] = subjects.held_out(args.output_dir, splits[split], split,
                                          values["data_dir"])
        reconstruction_report(vqvae, splits[split], images_dir, cache_dir,
                              split=split)
        if args.samples > 0:
            seed = values["seed"] if args.seed is None else args.seed
            feature_figures = args.feature_network == "yes" or (
                args.feature_network == "auto" and not demo.is_demo(splits["train"]))
            if args.feature_network == "auto" and not feature_figures:
                print("demo data: the realism feature network is not trained (its figures need "
                      "real training subjects); --feature-network yes computes them anyway")
            prior = run_folder.load_prior(args.output_dir)  # one load, one sampler, every draw
            figures = sample_report(values, vqvae, args.output_dir, splits["train"],
                                    splits[split], args.samples, seed,
                                    feature_figures=feature_figures, cache_dir=cache_dir,
                                    prior=prior)
            covariate_report(values, vqvae, args.output_dir, splits, split, args.samples,
                             seed, prior=prior)
            written = write_figures(figures, cache_dir / "sample_metrics.json",
                                    {"split": split, "samples": args.samples, "seed": seed,
                                     "temperature": values["temperature"],
                                     "top_k": values["top_k"],
                                     "guidance": values["guidance"],
                                     "covariate_guidance": values["covariate_guidance"],
                                     "unconditional_guidance":
                                         values["unconditional_guidance"],
                                     "unconditional_covariates":
                                         values["unconditional_covariates"],
                                     "pose_spread": values["pose_spread"]})
            print(f"sample figures: {written}")
        if args.volumes > 0:
            from brainvq.evaluation import volume_checks

            seed = values["seed"] if args.seed is None else args.seed
            volume_checks.volume_report(values, vqvae, args.output_dir, splits, split,
                                        args.volumes, seed, cache_dir, images_dir,
                                        feature_figures=args.feature_network != "no")
    except run_folder.script_errors() as failure:
        sys.exit(f"error: {failure}")
    except KeyboardInterrupt:
        sys.exit("interrupted: similarity.py stopped; the checkpoints are untouched, and the "
                 "figures and metrics written before the interruption stay where they are")


if __name__ == "__main__":
    main()
