"""Reconstruct test slices with a trained VQ-VAE, and sample new slices from the prior.

    python predict.py                     # reconstructions of the test split + mean SSIM
    python predict.py --samples 16        # ... and 16 new synthetic slices from the prior
    python predict.py --samples 16 --slice 20 --temperature 0.9 --top-k 64 --seed 3

Reads the run in --output-dir (as train.py wrote it); figures go to --images-dir.
"""
import pathlib
import sys

import numpy as np

import console
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


def check_slice(slice_index, values):
    """Refuses a --slice outside the run's slice positions, in one line."""
    positions = values["num_slice_positions"]
    if slice_index is not None and not 0 <= slice_index < positions:
        raise runs.RunError(f"--slice {slice_index} is out of range: this run's slice positions "
                            f"run from 0 to {positions - 1}; leave --slice out for "
                            f"unconditional samples")


def main(argv=None):
    args = parse_args(argv)
    console.quiet_start(args.verbose)
    try:
        run(args)
    except (runs.RunError, hyperparameters.IncompatibleCheckpoint,
            hyperparameters.InvalidHyperparameters, FileNotFoundError) as failure:
        sys.exit(f"error: {failure}")


def run(args):
    import dataset

    images_dir = pathlib.Path(args.images_dir)
    runs.check_writable(images_dir, "--images-dir")
    try:
        values, vqvae = load_run(args.output_dir, {"data_dir": args.data_dir,
                                                "unconditional": args.unconditional})
        check_slice(args.slice_index, values)
        _predict(args, values, vqvae, images_dir)
    except dataset.DatasetError as failure:
        raise runs.RunError(str(failure)) from None


def _predict(args, values, vqvae, images_dir):
    """Reconstructions of the test split and, with --samples, new slices (see main)."""
    import figures
    import metrics

    test = inference.load_test_split(values)
    reconstructions = inference.reconstruct(vqvae, test.images)
    ssim_values = np.array([metrics.ssim(a, b) for a, b in zip(test.images, reconstructions)])
    shown = np.linspace(0, len(test) - 1, min(args.count, len(test))).round().astype(int)
    figure = figures.plot_reconstructions(test.images[shown], reconstructions[shown],
                                          ssim_values[shown], images_dir / "reconstructions.png")
    print(f"mean SSIM over {len(test)} test slices: {ssim_values.mean():.4f} "
          f"± {ssim_values.std():.4f}")
    print(f"reconstructions written to {figure}")

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


if __name__ == "__main__":
    main()
