"""What similarity.py reports: the reconstruction metrics of a split (table, CSV, figures) and
the sample metrics (realism, diversity, distribution distances), each printed and returned."""
from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from PIL import Image

from brainvq.data import covariates
from brainvq.evaluation import covariate_checks, metrics, realism, sample_metrics
from brainvq.generation import generate
from brainvq.hints import PathLike, Splits
from brainvq.output import figures
from brainvq.progress import progress_bar
from brainvq.runs import run_folder

if TYPE_CHECKING:
    import keras

    from brainvq.data.slice_sets import SliceSet


def encoder_features(vqvae: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Per-image features for the Fréchet distance: mean and std of the encoder output over
    the grid, [N, 2 * code_dim]. Uses the frozen VQ-VAE encoder, so no downloaded weights."""
    latents = vqvae.encoder.predict(images, batch_size=batch_size, verbose=0)
    return np.concatenate([latents.mean(axis=(1, 2)), latents.std(axis=(1, 2))], axis=1)


def segmentation_path(image_path: PathLike) -> pathlib.Path | None:
    """Where the OASIS layout keeps the segmentation of a slice PNG: `keras_png_slices_test/
    case_001_slice_0.nii.png` -> `keras_png_slices_seg_test/seg_001_slice_0.nii.png`."""
    image_path = pathlib.Path(str(image_path))
    folder = image_path.parent
    if not folder.name.startswith("keras_png_slices_"):
        return None
    seg_folder = folder.with_name(folder.name.replace("keras_png_slices_",
                                                      "keras_png_slices_seg_", 1))
    return seg_folder / image_path.name.replace("case_", "seg_", 1)


def segmentation_masks(slices: SliceSet, image_size: int) -> np.ndarray | None:
    """Brain masks [N, S, S] from the OASIS segmentations (label > 0) when every slice has one;
    None otherwise (the metrics then use threshold masks)."""
    paths = [segmentation_path(path) for path in slices.paths]
    if not paths or any(path is None or not path.is_file() for path in paths):
        return None
    masks = []
    for path in paths:
        with Image.open(path) as segmentation:
            labels = segmentation.convert("L").resize((image_size, image_size), Image.NEAREST)
            masks.append(np.asarray(labels) > 0)
    return np.stack(masks)


def reconstruction_report(vqvae: keras.Model, test: SliceSet, images_dir: PathLike,
                          output_dir: PathLike, split: str = "test") -> dict[str, np.ndarray]:
    """Computes, prints and plots the reconstruction metrics of the split `test` (named
    `split` in the printout); the per-image CSV goes to `output_dir`."""
    reconstructions = generate.reconstruct(vqvae, test.images)
    masks = segmentation_masks(test, vqvae.image_size)
    progress = progress_bar(len(test), f"scoring {len(test)} reconstructions", minimum=200)
    per_image = metrics.per_image_metrics(test.images, reconstructions, masks=masks,
                                          progress=progress)
    source = "OASIS segmentations" if masks is not None else "a threshold of the original"
    print(f"Reconstruction metrics over {len(test)} {split} slices (brain mask from {source})")
    print(metrics.summary_table(per_image))
    print("  sharpness: mean gradient magnitude of the reconstruction over the original's, inside "
          "the brain (1 = as sharp; blur shows below 1)")
    csv_path = pathlib.Path(output_dir) / "reconstruction_metrics.csv"
    metrics.write_metrics_csv(csv_path, per_image, [str(p) for p in test.paths],
                              extra_columns={"slice_index": test.slice_index})
    written = [
        figures.plot_ssim_histogram(per_image["ssim"], images_dir / "ssim_histogram.png"),
        figures.plot_metric_by_slice(test.slice_index, per_image["ssim"],
                                     images_dir / "ssim_by_slice.png"),
        figures.plot_best_worst(test.images, reconstructions, per_image["ssim"],
                                images_dir / "best_worst.png"),
    ]
    print(f"per-image metrics: {csv_path}")
    print("figures: " + ", ".join(str(path) for path in written))
    return per_image


def sample_report(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                  train: SliceSet, test: SliceSet | None, count: int, seed: int,
                  feature_figures: bool = True, cache_dir: PathLike | None = None,
                  prior: keras.Model | None = None) -> dict[str, Any]:
    """Samples `count` slices and prints realism, diversity and distribution distances
    (`feature_figures`: also those in the feature network's space, `realism.realism_report`,
    whose network is kept in `cache_dir`, by default the run folder). `prior`: the run's prior
    when already loaded (one load, one compiled sampler for every draw)."""
    prior = run_folder.load_prior(output_dir) if prior is None else prior
    samples, sampled_codes = generate.generate(values, vqvae, output_dir, count, seed=seed,
                                                prior=prior)
    progress = progress_bar(count, f"nearest training slice of {count} samples", minimum=200)
    nearest, _ = sample_metrics.nearest_neighbour_ssim(samples, train.images, progress=progress)
    copies = sample_metrics.memorisation_flags(nearest)
    # The same search for as many held-out real slices (a fixed draw): how close a new real
    # subject's slice comes to a training slice, the level samples that copy nothing stay under.
    shown = np.random.default_rng(0).choice(len(test), min(count, len(test)), replace=False)
    real_nearest, _ = sample_metrics.nearest_neighbour_ssim(test.images[np.sort(shown)],
                                                            train.images)
    diversity_mean, diversity_std = sample_metrics.pairwise_ms_ssim(samples, max_pairs=500,
                                                                    seed=seed)
    real_features = encoder_features(vqvae, test.images)
    fake_features = encoder_features(vqvae, samples)
    frechet = sample_metrics.frechet_distance(real_features, fake_features)
    real_codes = sample_metrics.code_histogram(generate.encode_all(vqvae, test.images),
                                        values["num_codes"])
    fake_codes = sample_metrics.code_histogram(np.asarray(sampled_codes), values["num_codes"])
    distances = sample_metrics.histogram_distance(real_codes, fake_codes)
    print(f"\nSample metrics over {count} samples (seed {seed})")
    print(f"  nearest-training-slice SSIM: {nearest.mean():.4f} ± {nearest.std():.4f} "
          f"(max {nearest.max():.4f}); held-out real slices: {real_nearest.mean():.4f} ± "
          f"{real_nearest.std():.4f} (max {real_nearest.max():.4f}, {len(real_nearest)} slices)")
    print(f"  samples above {sample_metrics.COPY_THRESHOLD} SSIM to a training slice (copies): "
          f"{int(copies.sum())}")
    if copies.any():
        print(f"  WARNING: {int(copies.sum())} sample(s) are near-copies of training slices "
              f"(SSIM > {sample_metrics.COPY_THRESHOLD}): the prior may be memorising")
    print(f"  pairwise MS-SSIM among samples: {diversity_mean:.4f} ± {diversity_std:.4f} "
          f"(lower = more diverse)")
    print(f"  Fréchet distance, encoder features, test vs samples: {frechet:.4f}")
    print(f"  code-usage histogram, samples vs test: total variation "
          f"{distances['total_variation']:.4f}, JS divergence "
          f"{distances['js_divergence_bits']:.4f} bits")
    realism_figures = realism.realism_report(values, vqvae, output_dir, train, test, samples,
                                             count, seed, feature_figures=feature_figures,
                                             cache_dir=cache_dir, prior=prior)
    return {"nearest_ssim": nearest, "nearest_ssim_real": real_nearest,
            "diversity": diversity_mean, "frechet": frechet,
            **distances, **realism_figures}


def covariate_report(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                     splits: Splits, split: str, count: int, seed: int,
                     prior: keras.Model | None = None) -> dict[str, Any] | None:
    """For a run whose prior was trained on covariates (and whose covariates file is here): the
    rulers' agreement on real held-out slices, on samples and on the shuffled control
    (`covariate_checks`); None for any other run. `prior`: as for `sample_report`."""
    prior = run_folder.load_prior(output_dir) if prior is None else prior
    specs = getattr(prior, "covariates", [])
    if not specs:
        return None
    if not values.get("covariates") or not pathlib.Path(values["covariates"]).is_file():
        print(f"covariates: the run's file {values.get('covariates')!r} is not here; pass "
              f"--covariates FILE.csv to check the covariate-conditioned samples")
        return None
    splits, _, arrays = covariates.for_splits(values, splits)
    return covariate_checks.covariate_report(values, vqvae, output_dir, splits["train"],
                                             splits[split], arrays["train"], arrays[split],
                                             specs, count, seed, prior=prior)


def write_figures(figures: Mapping[str, Any], path: PathLike, settings: Mapping[str, Any]
                  ) -> pathlib.Path:
    """Writes a report's figures as JSON (an array as its mean and max) with the `settings`
    that made them; returns `path`."""
    import json

    def plain(value: Any) -> Any:
        array = np.asarray(value)
        if array.ndim:
            return {"mean": float(array.mean()), "max": float(array.max()), "count": array.size}
        return value.item() if hasattr(value, "item") else value

    record = {"settings": settings, "figures": {key: plain(value) for key, value in
                                                sorted(figures.items())}}
    pathlib.Path(path).write_text(json.dumps(record, indent=1) + "\n")
    return path


def reconstruction_figure(vqvae: keras.Model, test: SliceSet, images_dir: PathLike,
                          count: int = 8) -> tuple[pathlib.Path, np.ndarray]:
    """`reconstructions.png`: `count` test slices over their reconstructions, with SSIM; returns
    (the figure's path, per-slice SSIM of the whole split)."""
    reconstructions = generate.reconstruct(vqvae, test.images)
    ssim_values = np.array([metrics.ssim(a, b) for a, b in zip(test.images, reconstructions)])
    shown = np.linspace(0, len(test) - 1, min(count, len(test))).round().astype(int)
    figure = figures.plot_reconstructions(test.images[shown], reconstructions[shown],
                                          ssim_values[shown],
                                          pathlib.Path(images_dir) / "reconstructions.png")
    return figure, ssim_values
