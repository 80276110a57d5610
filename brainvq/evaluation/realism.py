"""Do sampled slices look like brains? Checks against real anatomy, with no downloaded weights.

Three families of figures, each printed beside the same figure for held-out real slices (the
floor a perfect generator would reach):

* **Anatomical plausibility** (`shape_statistics`, `plausible`): per image a brain mask
  (threshold, hole fill, largest component) and its shape statistics; an image is plausible when
  every statistic lies within the 1st-99th percentile range of the real training slices'
  values, widened by 10% of its width on each side (a fifth in all).
* **Distribution distances** in the feature space of a small CNN trained on the real training
  slices only (`feature_network.py`): Fréchet distance, KID (kernel inception distance with the
  cubic polynomial kernel, unbiased), and k-NN precision and recall (Kynkäänniemi et al., 2019).
* **Slice position**: for slice-conditioned samples, how often the feature network's predicted
  position lies within 2 positions of the requested one (`position_accuracy`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from numpy.typing import ArrayLike

from brainvq.data.pose import TISSUE_THRESHOLD, largest_filled_component, mask_pose
from brainvq.evaluation import feature_network, sample_metrics
from brainvq.generation import generate
from brainvq.hints import PathLike

if TYPE_CHECKING:
    import keras

    from brainvq.data.slice_sets import SliceSet

# Random subsets averaged when a larger set is scored at a smaller set's size (equal_size_report).
EQUAL_SIZE_DRAWS = 20
# Each statistic and what it measures; all are computed on the brain mask of one image.
SHAPE_STATISTICS = {
    "components": "tissue fragments of at least 0.5% of the image (a brain is one)",
    "area": "fraction of the image inside the brain mask",
    "solidity": "mask area / area of its convex hull (dents and splits lower it)",
    "smoothness": "perimeter of the convex hull / perimeter of the mask (ragged outlines lower it)",
    "symmetry": "IoU of the mask with its mirror image about its own centre column",
    # Where the head sits in the frame, as an outside reviewer sees it: real slices are cropped
    # to their head's box, so a head shifted or tilted in the frame is unlike every real slice,
    # however symmetric it is about itself.
    "frame_symmetry": "IoU of the mask with its mirror image about the image's centre column",
    "centroid_offset": "the mask centroid's column minus the image's centre column, in pixels",
    "tilt": "angle of the mask's long axis from the image's vertical, in degrees",
    "intensity": "mean intensity inside the mask",
    "contrast": "standard deviation of the intensity inside the mask",
}


def shape_statistics(image: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> dict[str, float]:
    """The shape statistics (`SHAPE_STATISTICS`) of the brain mask of one image.

    Args:
        image: [H, W] or [H, W, 1], values in [0, 1].
        threshold: intensity above which a pixel is tissue.

    Returns:
        dict of floats, one per key of `SHAPE_STATISTICS`; an image with no tissue gets zeros
        (and 0 components), which no real slice has.
    """
    from skimage.measure import perimeter
    from skimage.morphology import convex_hull_image

    image = np.asarray(image, dtype=np.float64)
    image = image[..., 0] if image.ndim == 3 else image
    mask, labels, sizes = largest_filled_component(image > threshold)
    if not mask.any():
        return {name: 0.0 for name in SHAPE_STATISTICS}
    minimum = 0.005 * image.size
    components = int((np.asarray(sizes)[1:] >= minimum).sum())
    hull = convex_hull_image(mask)
    columns = np.nonzero(mask.any(axis=0))[0]
    low, high = columns.min(), columns.max()
    mirrored = np.zeros_like(mask)
    mirrored[:, low:high + 1] = mask[:, low:high + 1][:, ::-1]  # about the mask's centre column
    framed = mask[:, ::-1]  # about the image's centre column
    inside = image[mask]
    offset, tilt = mask_pose(mask)
    return {
        "components": float(components),
        "area": float(mask.mean()),
        "solidity": float(mask.sum() / max(hull.sum(), 1)),
        "smoothness": float(perimeter(hull) / max(perimeter(mask), 1e-9)),
        "symmetry": float((mask & mirrored).sum() / max((mask | mirrored).sum(), 1)),
        "frame_symmetry": float((mask & framed).sum() / max((mask | framed).sum(), 1)),
        "centroid_offset": offset,
        "tilt": tilt,
        "intensity": float(inside.mean()),
        "contrast": float(inside.std()),
    }


def pose_summary(images: np.ndarray, table: np.ndarray | None = None) -> dict[str, float]:
    """Mean absolute centroid offset (pixels) and tilt (degrees) of images' brain masks: where
    the heads sit in the frame (real slices: centred and upright). `table`: their
    `statistics_table`, when already computed."""
    table = statistics_table(images) if table is None else table
    names = list(SHAPE_STATISTICS)
    return {"centroid_offset": float(np.abs(table[:, names.index("centroid_offset")]).mean()),
            "tilt": float(np.abs(table[:, names.index("tilt")]).mean())}


def statistics_table(images: np.ndarray) -> np.ndarray:
    """[N, len(SHAPE_STATISTICS)] shape statistics of a batch of images, columns in the order
    of `SHAPE_STATISTICS`."""
    return np.array([[stats[name] for name in SHAPE_STATISTICS]
                     for stats in map(shape_statistics, np.asarray(images))]).reshape(
                         -1, len(SHAPE_STATISTICS))


PLAUSIBLE_PERCENTILES = (1.0, 99.0)  # the range of the training slices' statistics ...
PLAUSIBLE_MARGIN = 0.1  # ... widened by this share of its width on each side (a fifth in all)


def plausibility_ranges(training_images: np.ndarray, margin: float = PLAUSIBLE_MARGIN,
                        percentiles: tuple[float, float] = PLAUSIBLE_PERCENTILES
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per statistic: the 1st to 99th percentile of the real training slices'
    values, widened by `margin` times its width on each side. The percentiles keep a few odd
    training slices from stretching the range; the margin covers real anatomy that a finite
    training set does not show (without it, a few held-out real slices fall just outside)."""
    table = statistics_table(training_images)
    low, high = np.percentile(table, percentiles, axis=0)
    return low - margin * (high - low), high + margin * (high - low)


def plausible(images: np.ndarray, ranges: tuple[np.ndarray, np.ndarray],
              table: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Which images are anatomically plausible, and which statistics fail.

    Args:
        images: [N, H, W, 1] images in [0, 1].
        ranges: (low, high) from `plausibility_ranges`.
        table: the images' `statistics_table`, when already computed.

    Returns:
        (ok [N] bool, failures {statistic: count of images outside its range}).
    """
    table = statistics_table(images) if table is None else table
    low, high = ranges
    inside = (table >= low) & (table <= high)
    failures = {name: int((~inside[:, column]).sum())
                for column, name in enumerate(SHAPE_STATISTICS)}
    return inside.all(axis=1), failures


# ---------------------------------------------------------------------------------------------
# Distribution distances in a feature space
# ---------------------------------------------------------------------------------------------

def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 (Bińkowski et al., 2018).

    Args:
        features_a: [N, d] features (N >= 2); features_b: [M, d] (M >= 2).

    Returns:
        float (~0 for two samples of one distribution; can be slightly negative).
    """
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("KID needs at least 2 feature vectors per set")
    dimension = a.shape[1]
    kernel_aa = (a @ a.T / dimension + 1.0) ** 3
    kernel_bb = (b @ b.T / dimension + 1.0) ** 3
    kernel_ab = (a @ b.T / dimension + 1.0) ** 3
    n, m = len(a), len(b)
    within_a = (kernel_aa.sum() - np.trace(kernel_aa)) / (n * (n - 1))
    within_b = (kernel_bb.sum() - np.trace(kernel_bb)) / (m * (m - 1))
    return float(within_a + within_b - 2.0 * kernel_ab.mean())


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def knn_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour among `points` (itself excluded)."""
    points = np.asarray(points, np.float64)
    within = _pairwise_distances(points, points)
    return np.sort(within, axis=1)[:, min(k, len(points) - 1)]  # column 0: the point itself


def _coverage(reference: np.ndarray, queries: np.ndarray, k: int,
              radii: np.ndarray | None = None) -> float:
    """Fraction of `queries` inside the k-NN ball of at least one `reference` point (`radii`:
    the reference's `knn_radii`, when already known)."""
    radii = knn_radii(reference, k) if radii is None else radii
    return float((_pairwise_distances(queries, reference) <= radii[None, :]).any(axis=1).mean())


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
                     real_radii: np.ndarray | None = None) -> tuple[float, float]:
    """k-NN precision and recall (Kynkäänniemi et al., 2019).

    Precision: the fraction of generated points inside the real manifold (the union of the
    balls reaching each real point's k-th nearest real neighbour); recall: the fraction of real
    points inside the generated manifold.

    Args:
        real_radii: `knn_radii(real_features, k)`, to skip recomputing it for each call.

    Returns:
        (precision, recall), each in [0, 1].
    """
    real = np.asarray(real_features, np.float64)
    fake = np.asarray(fake_features, np.float64)
    return _coverage(real, fake, k, real_radii), _coverage(fake, real, k)


def distribution_report(reference: np.ndarray, candidates: Mapping[str, np.ndarray], k: int = 3,
                        reference_radii: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Fréchet distance, KID, precision and recall of each candidate set against `reference`.

    Args:
        reference: [N, d] features of the real training slices.
        candidates: {name: [M, d] features}, e.g. held-out real slices (the floor) and samples.
        reference_radii: `knn_radii(reference, k)`, when already known.

    Returns:
        {name: {"frechet", "kid", "precision", "recall"}}.
    """
    if reference_radii is None:
        reference_radii = knn_radii(reference, k)
    return {name: {"frechet": sample_metrics.frechet_distance(reference, features),
                   "kid": kernel_inception_distance(reference, features),
                   **dict(zip(("precision", "recall"),
                              precision_recall(reference, features, k, reference_radii)))}
            for name, features in candidates.items()}


def equal_size_report(reference: np.ndarray, candidates: Mapping[str, np.ndarray], k: int = 3,
                      seed: int = 0, draws: int = EQUAL_SIZE_DRAWS
                      ) -> tuple[dict[str, dict[str, float]], int]:
    """`distribution_report` with every candidate set scored at the same size.

    Fréchet distance and recall depend on how many points a set has (the Fréchet distance of
    128 real slices to the training slices is about three times that of 640 of them), so a
    floor measured on more or fewer held-out slices than there are samples is not a fair floor.
    Every candidate set is scored at the size of the smallest one: a larger set is scored on
    `draws` random subsets of that size and the figures are averaged. The subsets depend on
    `seed` and the sets' sizes only, so runs scored on the same held-out slices share one floor.

    Returns:
        ({name: {"frechet", "kid", "precision", "recall"}}, the common size).
    """
    size = min(len(features) for features in candidates.values())
    radii = knn_radii(reference, k)
    report = {}
    for name, features in candidates.items():
        if len(features) == size:
            report.update(distribution_report(reference, {name: features}, k, radii))
            continue
        rng = np.random.default_rng([seed, len(features), size])
        subsets = [features[rng.choice(len(features), size, replace=False)]
                   for _ in range(draws)]
        rows = [distribution_report(reference, {name: subset}, k, radii)[name]
                for subset in subsets]
        report[name] = {metric: float(np.mean([row[metric] for row in rows]))
                        for metric in rows[0]}
    return report, size


def position_accuracy(predicted: ArrayLike, requested: ArrayLike, tolerance: int = 2) -> float:
    """Fraction of predicted slice positions within `tolerance` of the requested ones."""
    predicted, requested = np.asarray(predicted, float), np.asarray(requested, float)
    return float((np.abs(predicted - requested) <= tolerance).mean())


# --- a trained run's samples, judged -------------------------------------------------------

def conditional_positions(slices: SliceSet, count: int) -> np.ndarray:
    """`count` requested slice positions cycling through the positions the real slices have."""
    present = np.unique(np.asarray(slices.slice_index))
    return present[np.arange(count) % len(present)].astype(np.int32)


class RealReference:
    """What every realism report on one run and one held-out set compares against, computed
    once: the plausibility ranges of the training slices, the held-out real slices' and their
    reconstructions' plausibility, and (with `feature_figures`) the feature network with the
    training, held-out and reconstructed features. A benchmark that scores many sampling
    settings builds one and passes it to every `realism_report`.

    Args:
        train: the real training slices (ranges of the shape statistics; the feature network).
        held_out: real slices of subjects the models never saw (the floor).
        feature_figures: also train (once) the feature network and keep the features.
        cache_dir: where the feature network is kept.
    """

    def __init__(self, values: Mapping[str, Any], vqvae: keras.Model, train: SliceSet,
                 held_out: SliceSet, feature_figures: bool, cache_dir: PathLike | None) -> None:
        self.train, self.held_out = train, held_out
        self.positions = values["num_slice_positions"]
        self.reconstructed = generate.reconstruct(vqvae, held_out.images)
        self.ranges = plausibility_ranges(train.images)
        real_table = statistics_table(held_out.images)
        self.real_ok, self.real_failures = plausible(held_out.images, self.ranges, real_table)
        self.real_pose = pose_summary(held_out.images, real_table)
        self.reconstructed_ok, _ = plausible(self.reconstructed, self.ranges)
        self.network = None
        if feature_figures:
            self.network = feature_network.load_or_train(cache_dir, train.images,
                                                         train.slice_index, self.positions,
                                                         seed=values["seed"])
            self.train_features, _ = self.features(train.images)
            self.real_features, self.real_positions = self.features(held_out.images)
            self.decoded_features, _ = self.features(self.reconstructed)

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, d], predicted slice positions [N]) in the reference's network."""
        return feature_network.features_and_positions(self.network, images, self.positions)


def print_realism_report(figures: Mapping[str, Any], distances: Mapping[str, Any],
                         poses: Mapping[str, Any], outside: Mapping[str, Any],
                         sizes: tuple[int, int, int]) -> None:
    """Prints `realism_report`'s figures as a table: samples, conditioned samples, held-out
    real slices (the floor) and their reconstructions; `sizes`: (samples per set, held-out
    slices, training slices)."""
    count, held_out, train = sizes
    print(f"\nRealism against real anatomy: {count} unconditional and {count} "
          f"slice-conditioned samples (positions cycling through the training slices') vs "
          f"{held_out} held-out real slices (the floor) and their reconstructions "
          f"(what this decoder allows), each against the {train} real training slices")
    print(f"  {'':34s} {'samples':>10s} {'conditioned':>12s} {'real (floor)':>13s} "
          f"{'reconstructed':>14s}")
    print(f"  {'anatomically plausible':34s} {figures['plausible_samples']:10.1%} "
          f"{figures['plausible_conditioned']:12.1%} {figures['plausible_real']:13.1%} "
          f"{figures['plausible_reconstructed']:14.1%}")
    if distances:
        print(f"  (distribution figures: each set at {figures['compared_set_size']} slices, a "
              f"larger set averaged over {EQUAL_SIZE_DRAWS} random subsets of that size)")
        for metric, label in (("frechet", "Fréchet distance (features)"), ("kid", "KID"),
                              ("precision", "k-NN precision"), ("recall", "k-NN recall")):
            print(f"  {label:34s} {distances['samples'][metric]:10.4f} "
                  f"{distances['conditioned'][metric]:12.4f} "
                  f"{distances['real'][metric]:13.4f} "
                  f"{distances['reconstructed'][metric]:14.4f}")
        print(f"  {'position within 2 of the request':34s} {'':>10s} "
              f"{figures['position_within_2_samples']:12.1%} "
              f"{figures['position_within_2_real']:13.1%}")
    else:
        print("  (feature-network figures not computed: Fréchet distance, KID, precision, "
              "recall, slice position)")
    print(f"  {'mean |centroid offset| (pixels)':34s} "
          f"{poses['samples']['centroid_offset']:10.2f} "
          f"{poses['conditioned']['centroid_offset']:12.2f} "
          f"{poses['real']['centroid_offset']:13.2f}")
    print(f"  {'mean |tilt| (degrees)':34s} {poses['samples']['tilt']:10.2f} "
          f"{poses['conditioned']['tilt']:12.2f} {poses['real']['tilt']:13.2f}")
    print("  outside the real training slices' range, per statistic:")
    for name in SHAPE_STATISTICS:
        print(f"    {name:32s} " + " ".join(
            f"{counts[name] / max(total, 1):{width}.1%}"
            for (counts, total), width in zip(outside.values(), (10, 12, 13))))


def realism_report(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                   train: SliceSet, held_out: SliceSet, samples: np.ndarray | None, count: int,
                   seed: int, temperature: float | None = None, top_k: int | None = None,
                   verbose: bool = True, feature_figures: bool = True,
                   cache_dir: PathLike | None = None, reference: RealReference | None = None,
                   prior: keras.Model | None = None) -> dict[str, Any]:
    """Judges samples against real anatomy, each figure beside its real floor.

    Args:
        train: the real training slices (ranges of the shape statistics; the feature network).
        held_out: real slices of subjects the models never saw (the floor).
        samples: [N, S, S, 1] unconditional samples.
        count: how many slice-conditioned samples to draw for the position check.
        feature_figures: also train (once) the feature network and report the figures in its
            space (Fréchet distance, KID, precision, recall, position); False: plausibility only.
        cache_dir: where the feature network is kept (default: `output_dir`).
        reference: a `RealReference` for these `train` and `held_out` slices, when already
            built (a benchmark's many calls share one); its `feature_figures` decide.
        prior: the run's prior, when already loaded (default: loaded from `output_dir`).

    Returns:
        dict of the figures (see the printed table).
    """
    if reference is None:
        reference = RealReference(values, vqvae, train, held_out, feature_figures,
                                  cache_dir or output_dir)
    elif reference.train is not train or reference.held_out is not held_out:
        raise ValueError("realism_report: the reference was built on other training or "
                         "held-out slices than these")
    requested = conditional_positions(train, count)
    conditioned, _ = generate.generate(values, vqvae, output_dir, count, slice_index=requested,
                                        temperature=temperature, top_k=top_k, seed=seed + 1,
                                        prior=prior)
    sample_table, conditioned_table = statistics_table(samples), statistics_table(conditioned)
    sample_ok, failures = plausible(samples, reference.ranges, sample_table)
    conditioned_ok, conditioned_failures = plausible(conditioned, reference.ranges,
                                                     conditioned_table)
    real_ok, reconstructed_ok = reference.real_ok, reference.reconstructed_ok
    outside = {"samples": (failures, len(samples)),
               "conditioned": (conditioned_failures, len(conditioned)),
               "real": (reference.real_failures, len(held_out))}
    poses = {"samples": pose_summary(samples, sample_table),
             "conditioned": pose_summary(conditioned, conditioned_table),
             "real": reference.real_pose}
    figures = {
        "plausible_samples": float(sample_ok.mean()), "plausible_real": float(real_ok.mean()),
        "plausible_reconstructed": float(reconstructed_ok.mean()),
        "plausible_conditioned": float(conditioned_ok.mean()),
        **{f"outside_{name}_{which}": counts[name] / max(total, 1)
           for which, (counts, total) in outside.items() for name in SHAPE_STATISTICS},
        **{f"{pose}_{which}": value for which, row in poses.items()
           for pose, value in row.items()},
    }
    distances = {}
    if reference.network is not None:
        fake_features, _ = reference.features(samples)
        conditioned_features, conditioned_positions = reference.features(conditioned)
        # One fixed draw of subsets, not the sampling seed's: runs on the same data, one floor.
        distances, compared_size = equal_size_report(
            reference.train_features,
            {"real": reference.real_features, "reconstructed": reference.decoded_features,
             "samples": fake_features, "conditioned": conditioned_features})
        figures.update({
            "compared_set_size": compared_size,
            "position_within_2_samples": position_accuracy(conditioned_positions, requested),
            "position_within_2_real": position_accuracy(reference.real_positions,
                                                        held_out.slice_index),
            **{f"{metric}_{name}": value for name, row in distances.items()
               for metric, value in row.items()},
        })
    if verbose:
        print_realism_report(figures, distances, poses, outside, (count, len(held_out),
                                                                   len(train)))
    return figures
