"""Reconstruct test slices with a trained VQ-VAE, and sample new slices from the prior.

    python predict.py                     # reconstructions of the test split + mean SSIM
    python predict.py --samples 16        # ... and 16 new synthetic slices from the prior
    python predict.py --samples 16 --slice 20 --temperature 0.9 --top-k 64 --seed 3

Reads the run in --output-dir (as train.py wrote it); figures go to --images-dir.
"""
import os
import pathlib
import sys

import numpy as np

import hyperparameters
import runs


load_run = runs.load_run  # the scripts share it through runs.py


def load_test_split(values, split="test"):
    """The evaluation split of the run's data (the demo data if its folder is absent)."""
    import dataset

    splits, description = dataset.load_splits_for(values)
    print(description)
    return splits[split]


def reconstruct(vqvae, images, batch_size=32):
    """Reconstructions of `images` [N, S, S, 1], clipped to [0, 1]."""
    return np.clip(vqvae.predict(images, batch_size=batch_size, verbose=0), 0.0, 1.0)


def plot_reconstructions(originals, reconstructions, ssim_values, path):
    """Two rows: originals above their reconstructions, SSIM in each title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(originals)
    figure, axes = plt.subplots(2, count, figsize=(1.8 * count, 4.3), squeeze=False)
    for column in range(count):
        axes[0, column].imshow(originals[column, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[1, column].imshow(reconstructions[column, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[1, column].text(0.5, -0.04, f"SSIM {ssim_values[column]:.3f}", fontsize=9,
                             ha="center", va="top", transform=axes[1, column].transAxes)
        for row in range(2):
            axes[row, column].axis("off")
    figure.suptitle("Test slices (top) and their VQ-VAE reconstructions (bottom)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_samples(images, images_dir, slice_index=None):
    """Writes a grid of samples and each sample as its own PNG; returns the grid's path."""
    from PIL import Image

    import figures

    images_dir = pathlib.Path(images_dir)
    folder = images_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for number, image in enumerate(images):
        pixels = (np.clip(image[..., 0], 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"sample_{number:03d}.png")
    condition = "unconditional" if slice_index is None else f"slice index {slice_index}"
    grid = images_dir / "samples.png"
    figures.plot_image_grid(images, grid, columns=min(8, len(images)),
                            title=f"{len(images)} new synthetic slices ({condition})")
    return grid


def write_samples_by_slice(values, vqvae, output_dir, images_dir, slices, rows=8, columns=6,
                           temperature=None, top_k=None, seed=None):
    """A figure of slice-conditioned samples: one row per slice position, from the bottom of the
    brain (top row) to its top, `columns` samples each; the positions are spread over those
    the real slices have. Returns the figure's path."""
    import figures

    present = np.unique(np.asarray(slices.slice_index))
    positions = present[np.linspace(0, len(present) - 1, min(rows, len(present))).round()
                        .astype(int)]
    requested = np.repeat(positions, columns).astype(np.int32)
    images, _ = generate(values, vqvae, output_dir, len(requested), slice_index=requested,
                         temperature=temperature, top_k=top_k, seed=seed)
    titles = [f"slice {position}" if column == 0 else ""
              for position in positions for column in range(columns)]
    return figures.plot_image_grid(
        images, pathlib.Path(images_dir) / "samples_by_slice.png", columns=columns,
        titles=titles, title="Slice-conditioned samples, one row per slice position "
                             "(bottom of the brain first)")


def generate(values, vqvae, output_dir, count, slice_index=None, temperature=None, top_k=None,
             seed=None):
    """Samples `count` code grids from the prior and decodes them into images [N, S, S, 1]."""
    import keras

    import sampling

    prior = runs.load_prior(output_dir)
    codes = sampling.sample_codes(
        prior, count, vqvae.grid_size, slice_index=slice_index,
        temperature=values["temperature"] if temperature is None else temperature,
        top_k=min(values["top_k"] if top_k is None else top_k, prior.num_codes),  # k >= K: all
        seed=values["seed"] if seed is None else seed)
    return np.clip(keras.ops.convert_to_numpy(vqvae.decode_codes(codes)), 0.0, 1.0), codes


def add_run_arguments(parser):
    """The flags that predict.py and similarity.py share: which run, which data, where to."""
    parser.add_argument("--output-dir", default=hyperparameters.DEFAULTS["output_dir"],
                        help="the run to load (default: %(default)s)")
    parser.add_argument("--images-dir", default=hyperparameters.DEFAULTS["images_dir"],
                        help="where figures are written (default: %(default)s)")
    parser.add_argument("--data-dir", default=None,
                        help="evaluate on this data instead of the run's own")
    return parser


def parse_args(argv=None):
    parser = add_run_arguments(
        hyperparameters.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--count", type=hyperparameters.non_negative_int, default=8,
                        help="test slices shown in the reconstruction figure (default: 8)")
    parser.add_argument("--samples", type=hyperparameters.non_negative_int, default=0,
                        help="number of new slices to sample from the prior (default: 0)")
    parser.add_argument("--slice", type=int, default=None, dest="slice_index",
                        help="condition the samples on this slice index (default: none)")
    parser.add_argument("--temperature", type=hyperparameters._flag_type("temperature"),
                        default=None)
    parser.add_argument("--top-k", type=hyperparameters.non_negative_int, default=None)
    parser.add_argument("--seed", type=int, default=None)
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
        values, vqvae = load_run(args.output_dir, {"data_dir": args.data_dir})
        check_slice(args.slice_index, values)
        _predict(args, values, vqvae, images_dir)
    except dataset.DatasetError as failure:
        raise runs.RunError(str(failure)) from None


def _predict(args, values, vqvae, images_dir):
    """Reconstructions of the test split and, with --samples, new slices (see main)."""
    import metrics

    test = load_test_split(values)
    reconstructions = reconstruct(vqvae, test.images)
    ssim_values = np.array([metrics.ssim(a, b) for a, b in zip(test.images, reconstructions)])
    shown = np.linspace(0, len(test) - 1, min(args.count, len(test))).round().astype(int)
    figure = plot_reconstructions(test.images[shown], reconstructions[shown], ssim_values[shown],
                                  images_dir / "reconstructions.png")
    print(f"mean SSIM over {len(test)} test slices: {ssim_values.mean():.4f} "
          f"± {ssim_values.std():.4f}")
    print(f"reconstructions written to {figure}")

    if args.samples > 0:
        samples, _ = generate(values, vqvae, args.output_dir, args.samples,
                              slice_index=args.slice_index, temperature=args.temperature,
                              top_k=args.top_k, seed=args.seed)
        grid = write_samples(samples, images_dir, args.slice_index)
        print(f"{args.samples} samples written to {grid} and {images_dir / 'samples'}/")
        by_slice = write_samples_by_slice(values, vqvae, args.output_dir, images_dir, test,
                                          temperature=args.temperature, top_k=args.top_k,
                                          seed=args.seed)
        print(f"slice-conditioned samples written to {by_slice}")


if __name__ == "__main__":
    main()
