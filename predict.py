"""Reconstruct test slices with a trained VQ-VAE, and sample new slices from the prior.

    python predict.py                     # reconstructions of the test split + mean SSIM
    python predict.py --samples 16        # ... and 16 new synthetic slices from the prior
    python predict.py --samples 16 --slice 20 --temperature 0.9 --top-k 64 --seed 3

Reads the run in --output-dir (as train.py wrote it); figures go to --images-dir.
"""
import sys

import numpy as np

import console
import errors
import hyperparameters
import inference
import runs


load_run = runs.load_run  # the scripts share it through runs.py


def parse_args(argv=None):
    parser = runs.add_run_arguments(
        hyperparameters.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--count", type=hyperparameters.non_negative_int, default=8,
                        help="test slices shown in the reconstruction figure (default: 8)")
    parser.add_argument("--samples", type=hyperparameters.non_negative_int, default=0,
                        help="number of new slices to sample from the prior (default: 0)")
    parser.add_argument("--slice", type=int, default=None, dest="slice_index",
                        help="condition the samples on this slice index (default: none)")
    console.add_verbose_flag(parser)
    return parser.parse_args(argv)


def check_slice(slice_index, values, output_dir):
    """Refuses, in one line, a --slice outside the run's slice positions or at a position no
    training slice had (its condition was never trained)."""
    positions = values["num_slice_positions"]
    if slice_index is None:
        return
    if not 0 <= slice_index < positions:
        raise runs.RunError(f"--slice {slice_index} is out of range: this run's slice positions "
                            f"run from 0 to {positions - 1}; leave --slice out for "
                            f"unconditional samples")
    counts = runs.slice_position_counts(output_dir, positions)
    if counts is not None and counts[slice_index] <= 0:
        trained = np.flatnonzero(counts > 0)
        raise runs.RunError(f"--slice {slice_index}: no training slice had this position, so "
                            f"its condition was never trained; this run was trained at "
                            f"positions {_ranges(trained)}")


def _ranges(numbers):
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    parts, start = [], None
    for index, number in enumerate(numbers):
        if start is None:
            start = number
        if index + 1 == len(numbers) or numbers[index + 1] != number + 1:
            parts.append(f"{start}" if start == number else f"{start}-{number}")
            start = None
    return ", ".join(parts)


def main(argv=None):
    args = parse_args(argv)
    console.quiet_start(args.verbose)
    try:
        run(args)
    except (runs.RunError, hyperparameters.IncompatibleCheckpoint,
            hyperparameters.InvalidHyperparameters, errors.OutputBlocked,
            FileNotFoundError) as failure:
        sys.exit(f"error: {failure}")
    except KeyboardInterrupt:
        sys.exit("interrupted: predict.py stopped; the run folder is unchanged (figures written "
                 "before the interruption stay in the images folder)")


def run(args):
    import dataset
    import pretrained

    images_dir = pretrained.work_dir(args.output_dir, args.images_dir)
    runs.check_writable(images_dir, "--images-dir")
    try:
        values, vqvae = load_run(args.output_dir, {"data_dir": args.data_dir,
                                                "unconditional": args.unconditional})
        check_slice(args.slice_index, values, args.output_dir)
        _predict(args, values, vqvae, images_dir)
    except dataset.DatasetError as failure:
        raise runs.RunError(str(failure)) from None


def _predict(args, values, vqvae, images_dir):
    """Reconstructions of the test split and, with --samples, new slices (see main)."""
    import dataset

    try:
        test = inference.load_test_split(values)
    except dataset.MissingData:
        if args.samples == 0 or args.data_dir is not None:
            raise
        print(f"no reconstructions: they need this run's data ({values['data_dir']} is not "
              f"here); pass --data-dir DIR to reconstruct held-out slices")
        test = None
    if test is not None:
        _reconstruct(args, vqvae, test, images_dir)
    if args.samples > 0:
        samples, _ = inference.generate(values, vqvae, args.output_dir, args.samples,
                                        slice_index=args.slice_index,
                                        temperature=args.temperature, top_k=args.top_k,
                                        seed=args.seed)
        grid = inference.write_samples(samples, images_dir, args.slice_index)
        print(f"{args.samples} samples written to {grid} and {images_dir / 'samples'}/")
        by_slice = inference.write_samples_by_slice(values, vqvae, args.output_dir, images_dir,
                                                    test, temperature=args.temperature,
                                                    top_k=args.top_k, seed=args.seed)
        print(f"slice-conditioned samples written to {by_slice}")


def _reconstruct(args, vqvae, test, images_dir):
    """The reconstruction figure of the test split, and its mean SSIM."""
    import figures
    import metrics

    reconstructions = inference.reconstruct(vqvae, test.images)
    ssim_values = np.array([metrics.ssim(a, b) for a, b in zip(test.images, reconstructions)])
    shown = np.linspace(0, len(test) - 1, min(args.count, len(test))).round().astype(int)
    figure = figures.plot_reconstructions(test.images[shown], reconstructions[shown],
                                          ssim_values[shown], images_dir / "reconstructions.png")
    print(f"mean SSIM over {len(test)} test slices: {ssim_values.mean():.4f} "
          f"± {ssim_values.std():.4f}")
    print(f"reconstructions written to {figure}")


if __name__ == "__main__":
    main()
