"""Metrics of sampled slices (numbers only): realism against the training slices, diversity,
and distances between distributions.

`nearest_neighbour_ssim` + `memorisation_flags` (realism / copying), `pairwise_ms_ssim`
(diversity), `frechet_distance` (distribution of features), `code_histogram` +
`histogram_distance` (code usage). Same image conventions as metrics.py.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg

from brainvq.data.arrays import as_batch
from brainvq.evaluation.metrics import ms_ssim, ms_ssim_scales, ssim


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 sqrtm(C_a C_b)), with scipy.linalg.sqrtm; tiny
    imaginary parts of the square root are dropped, and `eps` * I is added to both covariances
    if the square root is not finite or scipy warns that the product is singular (e.g. fewer
    samples than features).

    Args:
        features_a: [N, F] features (a 1-D array is taken as [N, 1]); N >= 2.
        features_b: [M, F] features; M >= 2.
        eps: the diagonal offset used when sqrtm fails.

    Returns:
        float: the distance (>= 0; ~0 for a set against itself).
    """
    features_a = np.asarray(features_a, dtype=np.float64)
    features_b = np.asarray(features_b, dtype=np.float64)
    features_a = features_a[:, None] if features_a.ndim == 1 else features_a
    features_b = features_b[:, None] if features_b.ndim == 1 else features_b
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"expected two [N, F] feature sets with the same F, got "
                         f"{features_a.shape} and {features_b.shape}")
    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 feature vectors per set")
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(features_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(features_b, rowvar=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    singular = any(issubclass(warning.category, linalg.LinAlgWarning) for warning in caught)
    if singular or not np.isfinite(root).all():
        offset = eps * np.eye(len(cov_a))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    difference = mean_a - mean_b
    distance = difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root)
    return float(max(distance, 0.0))


def _pool(images: np.ndarray, factor: int) -> np.ndarray:
    """factor x factor average pooling of an [N, H, W] batch, flattened to [N, H*W/factor^2]."""
    count, height, width = images.shape
    height, width = (height // factor) * factor, (width // factor) * factor
    images = images[:, :height, :width].astype(np.float32)
    pooled = images.reshape(count, height // factor, factor, width // factor, factor).mean(
        axis=(2, 4))
    return pooled.reshape(count, -1)


def nearest_neighbour_ssim(samples: ArrayLike, training_images: ArrayLike,
                           max_training: int | None = None, candidates: int = 16,
                           chunk_size: int = 2048, progress: Any = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """For each sample, the highest SSIM against any training image, and that image's index.

    Candidates are prefiltered by L2 distance between 4 x 4 average-pooled images (the
    `candidates` nearest per sample), then the exact SSIM (`ssim`) is computed on those.

    Args:
        samples: [M, H, W] or [M, H, W, 1], values in [0, 1].
        training_images: [T, H, W] or [T, H, W, 1], same H, W.
        max_training: if set and smaller than T, only this many training images, evenly spaced
            through the set, are searched (returned indices still index `training_images`).
        candidates: how many prefiltered training images get the exact SSIM per sample.
        chunk_size: training images pooled at a time (bounds memory).
        progress: optional object whose `step()` is called after each sample.

    Returns:
        (nearest_ssim float64 [M], nearest_index int64 [M]).
    """
    samples = as_batch(samples)
    training_images = as_batch(training_images)
    if samples.shape[1:] != training_images.shape[1:]:
        raise ValueError(f"samples {samples.shape[1:]} and training images "
                         f"{training_images.shape[1:]} differ in size")
    if len(training_images) == 0:
        raise ValueError("no training images to compare with")
    searched = np.arange(len(training_images))
    if max_training is not None and max_training < len(training_images):
        searched = np.unique(np.linspace(0, len(training_images) - 1,
                                         max(int(max_training), 1)).round().astype(np.int64))
    factor = 4 if min(samples.shape[1:]) >= 4 * 7 else 1
    sample_features = _pool(samples, factor)
    training_features = np.concatenate(
        [_pool(training_images[searched[start:start + chunk_size]], factor)
         for start in range(0, len(searched), chunk_size)])
    distances = ((sample_features ** 2).sum(1)[:, None]
                 + (training_features ** 2).sum(1)[None, :]
                 - 2.0 * sample_features @ training_features.T)
    keep = min(int(candidates), len(searched))
    if keep < len(searched):
        shortlist = np.argpartition(distances, keep - 1, axis=1)[:, :keep]
    else:
        shortlist = np.broadcast_to(np.arange(len(searched)), (len(samples), len(searched)))
    nearest_ssim = np.empty(len(samples), dtype=np.float64)
    nearest_index = np.empty(len(samples), dtype=np.int64)
    for number, sample in enumerate(samples):
        # nearest candidates by L2 first so ties keep the closest image
        ordered = shortlist[number][np.argsort(distances[number, shortlist[number]],
                                               kind="stable")]
        scores = [ssim(training_images[searched[candidate]], sample) for candidate in ordered]
        best = int(np.argmax(scores))
        nearest_ssim[number] = scores[best]
        nearest_index[number] = searched[ordered[best]]
        if progress is not None:
            progress.add(1)
    return nearest_ssim, nearest_index


COPY_THRESHOLD = 0.9  # nearest-training-slice SSIM above which a sample counts as a copy


def memorisation_flags(nearest_ssim: ArrayLike, threshold: float = COPY_THRESHOLD) -> np.ndarray:
    """Which samples are (near) copies of a training image.

    Args:
        nearest_ssim: [M] best SSIM of each sample against the training set
            (from `nearest_neighbour_ssim`).
        threshold: SSIM at or above which a sample counts as a copy.

    Returns:
        np.ndarray of bool [M] (NaN -> False).
    """
    values = np.asarray(nearest_ssim, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(values, nan=-np.inf) >= threshold


def _pair_indices(count: int, max_pairs: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) with i < j: all pairs, or `max_pairs` distinct pairs drawn at random."""
    total = count * (count - 1) // 2
    if max_pairs is None or max_pairs >= total:
        return np.triu_indices(count, 1)
    ranks = np.sort(np.random.default_rng(seed).choice(total, size=int(max_pairs),
                                                       replace=False))
    rows = np.arange(count, dtype=np.int64)
    offsets = rows * (2 * count - rows - 1) // 2  # rank of the first pair of each row
    first = np.searchsorted(offsets, ranks, side="right") - 1
    second = ranks - offsets[first] + first + 1
    return first, second


def pairwise_ms_ssim(samples: ArrayLike, max_pairs: int | None = None, seed: int = 0
                     ) -> tuple[float, float]:
    """Mean and std of MS-SSIM over distinct pairs of samples: lower is more diverse.

    Falls back to SSIM when the images are too small for 2 MS-SSIM scales.

    Args:
        samples: [N, H, W] or [N, H, W, 1], values in [0, 1].
        max_pairs: if set and smaller than N(N-1)/2, a random subset of this many distinct pairs.
        seed: seed of the pair subset.

    Returns:
        (mean, std) as floats; (nan, nan) for fewer than 2 samples.
    """
    samples = as_batch(samples)
    if len(samples) < 2:
        return math.nan, math.nan
    similarity = ms_ssim if ms_ssim_scales(samples.shape[1:]) >= 2 else ssim
    first, second = _pair_indices(len(samples), max_pairs, seed)
    values = np.array([similarity(samples[i], samples[j]) for i, j in zip(first, second)])
    return float(values.mean()), float(values.std())


def code_histogram(code_indices: ArrayLike, num_codes: int) -> np.ndarray:
    """Normalised frequency of each code over all positions of integer code grids.

    Args:
        code_indices: integer array of any shape (e.g. [N, g, g]) with values in [0, num_codes).
        num_codes: the codebook size.

    Returns:
        np.ndarray float64 [num_codes], summing to 1.
    """
    codes = np.asarray(code_indices).ravel()
    if codes.size == 0:
        raise ValueError("no codes to count")
    if not np.issubdtype(codes.dtype, np.integer):
        if not np.all(np.equal(np.mod(codes, 1), 0)):
            raise ValueError("code indices must be integers")
        codes = codes.astype(np.int64)
    if codes.min() < 0 or codes.max() >= num_codes:
        raise ValueError(f"code indices must lie in [0, {num_codes}), got "
                         f"[{codes.min()}, {codes.max()}]")
    counts = np.bincount(codes, minlength=num_codes).astype(np.float64)
    return counts / counts.sum()


def histogram_distance(p: ArrayLike, q: ArrayLike) -> dict[str, float]:
    """Distances between two discrete distributions (each renormalised to sum 1).

    Args:
        p: non-negative weights [K].
        q: non-negative weights [K].

    Returns:
        dict: "total_variation" 0.5 * sum |p - q| (0 to 1) and "js_divergence_bits" the
        Jensen-Shannon divergence in bits (0 to 1).
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in length: {p.size} vs {q.size}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("histograms must be non-negative with a positive sum")
    p, q = p / p.sum(), q / q.sum()
    middle = 0.5 * (p + q)

    def kl_bits(a: np.ndarray, b: np.ndarray) -> float:
        support = a > 0
        return float(np.sum(a[support] * np.log2(a[support] / b[support])))

    js = 0.5 * kl_bits(p, middle) + 0.5 * kl_bits(q, middle)
    return {"total_variation": float(0.5 * np.abs(p - q).sum()),
            "js_divergence_bits": float(min(max(js, 0.0), 1.0))}
