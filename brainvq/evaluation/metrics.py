"""Image-quality metrics of reconstructions (numbers only).

Pure numpy / scipy / scikit-image / matplotlib: no model code, so everything here can be tested
without Keras. Images are grayscale floats in [0, 1], one image shaped [H, W] or [H, W, 1] and a
batch shaped [N, H, W] or [N, H, W, 1].

`ssim`, `psnr`, `ms_ssim`, `masked_ssim` (inside a `brain_mask`), `gradient_magnitude_ratio`
(sharpness), `per_image_metrics`, `summary_table`, `write_metrics_csv`. Metrics of samples live
in sample_metrics.py, the figures in figures.py.
"""
from __future__ import annotations

import csv
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from skimage.metrics import structural_similarity

from brainvq.data.arrays import as_batch, check_same_shape
from brainvq.hints import PathLike

DATA_RANGE = 1.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_SIGMA = 1.5
MS_SSIM_TRUNCATE = 3.5  # sigma 1.5 truncated at 3.5 sigma: an 11 x 11 window, as in Wang et al.
MS_SSIM_MIN_SIDE = 11  # the smallest side allowed at the coarsest scale
K1, K2 = 0.01, 0.03


# ------------------------------------------------------------------------------------------------
# helpers


def _as_image(image: ArrayLike) -> np.ndarray:
    """One grayscale image as a float64 [H, W] array (a trailing channel of 1 is dropped).

    Args:
        image: array shaped [H, W] or [H, W, 1].

    Returns:
        np.ndarray, float64, [H, W].
    """
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"expected one grayscale image [H, W] or [H, W, 1], got shape "
                         f"{np.shape(image)}")
    return array


def _ssim_window(shape: tuple[int, ...]) -> int:
    """skimage's default 7 x 7 window, shrunk (odd, >= 3) for images smaller than 7 px."""
    side = min(shape)
    if side >= 7:
        return 7
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3 x 3 px, got {shape}")
    return side if side % 2 == 1 else side - 1


# ------------------------------------------------------------------------------------------------
# full-reference image quality


def ssim(reference: ArrayLike, test: ArrayLike) -> float:
    """Structural similarity of two images (scikit-image, data_range 1.0, 7 x 7 uniform window).

    Args:
        reference: the original image, [H, W] or [H, W, 1], values in [0, 1].
        test: the image compared with it, same shape.

    Returns:
        float: mean SSIM, 1.0 for identical images.
    """
    reference, test = _as_image(reference), _as_image(test)
    check_same_shape(reference, test)
    return float(structural_similarity(reference, test, data_range=DATA_RANGE,
                                       win_size=_ssim_window(reference.shape)))


def psnr(reference: ArrayLike, test: ArrayLike) -> float:
    """Peak signal-to-noise ratio 10 log10(1 / MSE) in dB, for data_range 1.0.

    Args:
        reference: the original image, [H, W] or [H, W, 1], values in [0, 1].
        test: the image compared with it, same shape.

    Returns:
        float: PSNR in dB; math.inf for identical images (no warning is raised).
    """
    reference, test = _as_image(reference), _as_image(test)
    check_same_shape(reference, test)
    mse = float(np.mean((reference - test) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE ** 2 / mse)


def ms_ssim_scales(shape: tuple[int, ...], max_scales: int | None = None) -> int:
    """How many MS-SSIM scales an image of `shape` allows.

    Each scale halves the image; the coarsest must keep a smallest side of at least 11 px.

    Args:
        shape: (H, W) of the image.
        max_scales: the most scales wanted (default: the number of weights).

    Returns:
        int: the number of scales, between 0 and `max_scales`.
    """
    max_scales = len(MS_SSIM_WEIGHTS) if max_scales is None else max_scales
    side = min(shape[:2])
    scales = 0
    while scales < max_scales and side >= MS_SSIM_MIN_SIDE:
        scales += 1
        side //= 2
    return scales


def _ssim_components(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-window SSIM maps (sigma 1.5, 11 x 11) of two [H, W] images.

    Returns:
        (luminance map, contrast*structure map), each cropped to the pixels whose window lies
        inside the image (at least one pixel for images of 11 px or more).
    """
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2

    def blur(image: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(image, MS_SSIM_SIGMA, truncate=MS_SSIM_TRUNCATE,
                                       mode="reflect")

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov_xy = blur(x * y) - mu_x * mu_y
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    contrast_structure = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    radius = int(MS_SSIM_TRUNCATE * MS_SSIM_SIGMA + 0.5)
    crop = (slice(radius, -radius or None),) * 2
    if luminance[crop].size == 0:
        crop = (slice(None),) * 2
    return luminance[crop], contrast_structure[crop]


def _downsample2(image: np.ndarray) -> np.ndarray:
    """2 x 2 average pooling of an [H, W] image (an odd last row / column is dropped)."""
    height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    image = image[:height, :width]
    return image.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))


def ms_ssim(reference: ArrayLike, test: ArrayLike,
            weights: Sequence[float] = MS_SSIM_WEIGHTS) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003).

    At each scale the mean contrast*structure term is computed with an 11 x 11 Gaussian window
    (sigma 1.5, K1 0.01, K2 0.03, data_range 1); images are halved by 2 x 2 average pooling
    between scales, and the luminance term enters only at the coarsest scale, where the mean of
    luminance * contrast * structure is used. As many scales are used as keep the coarsest
    smallest side >= 11 px (5 scales need 176 px, 128 px images get 4); with fewer scales than
    weights the first n weights are renormalised to sum to 1. Negative terms are clipped to 0
    before the power so the result stays real.

    Args:
        reference: the original image, [H, W] or [H, W, 1], values in [0, 1].
        test: the image compared with it, same shape.
        weights: the exponent of each scale, finest first.

    Returns:
        float: MS-SSIM in [0, 1], 1.0 for identical images.

    Raises:
        ValueError: if the image is too small for 2 scales (smallest side < 22 px).
    """
    reference, test = _as_image(reference), _as_image(test)
    check_same_shape(reference, test)
    weights = np.asarray(weights, dtype=np.float64)
    scales = ms_ssim_scales(reference.shape, len(weights))
    if scales < 2:
        raise ValueError(f"MS-SSIM needs images of at least {2 * MS_SSIM_MIN_SIDE} px on the "
                         f"smallest side (2 scales), got {reference.shape}")
    weights = weights[:scales] / weights[:scales].sum()
    result = 1.0
    for scale in range(scales):
        luminance, contrast_structure = _ssim_components(reference, test)
        if scale < scales - 1:
            term = float(np.mean(contrast_structure))
            reference, test = _downsample2(reference), _downsample2(test)
        else:
            term = float(np.mean(luminance * contrast_structure))
        result *= max(term, 0.0) ** weights[scale]
    return float(result)


def brain_mask(image: ArrayLike, threshold: float = 0.05) -> np.ndarray:
    """A brain (foreground) mask from intensity, for when no segmentation is available.

    Pixels above `threshold` are kept, then only the largest connected component, with its
    holes filled.

    Args:
        image: [H, W] or [H, W, 1], values in [0, 1].
        threshold: intensity above which a pixel is foreground.

    Returns:
        np.ndarray of bool, [H, W]; all False if no pixel exceeds the threshold.
    """
    image = _as_image(image)
    foreground = image > threshold
    labels, count = ndimage.label(foreground)
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(largest)


def masked_ssim(reference: ArrayLike, test: ArrayLike, mask: ArrayLike) -> float:
    """Mean of the SSIM map (scikit-image, full=True, data_range 1.0) inside `mask`.

    Args:
        reference: the original image, [H, W] or [H, W, 1], values in [0, 1].
        test: the image compared with it, same shape.
        mask: bool-like [H, W] or [H, W, 1], True where the pixel counts (e.g. `brain_mask`).

    Returns:
        float: mean SSIM inside the mask; the whole-image SSIM if the mask is empty.
    """
    reference, test = _as_image(reference), _as_image(test)
    check_same_shape(reference, test)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    mask = mask.astype(bool)
    check_same_shape(reference, mask)
    mean, ssim_map = structural_similarity(reference, test, data_range=DATA_RANGE,
                                           win_size=_ssim_window(reference.shape), full=True)
    if not mask.any():
        return float(mean)
    return float(ssim_map[mask].mean())


def gradient_magnitude_ratio(reference: ArrayLike, test: ArrayLike,
                             mask: ArrayLike | None = None) -> float:
    """Sharpness of `test` relative to `reference`: mean Sobel gradient magnitude of `test`
    over that of `reference`, inside `mask`. 1 means as sharp; blur shows as values below 1
    (a Gaussian blur of sigma 1 px takes a brain slice to roughly 0.7), noise as values above.

    Args:
        reference: the original image, [H, W] or [H, W, 1].
        test: the image compared with it, same shape.
        mask: bool-like [H, W] (or [H, W, 1]) where the ratio is measured (e.g. `brain_mask`);
            None: the whole image.

    Returns:
        float, NaN when the reference has no gradient inside the mask.
    """
    reference, test = _as_image(reference), _as_image(test)
    check_same_shape(reference, test)
    if mask is None:
        mask = np.ones(reference.shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    mask = mask.astype(bool)
    check_same_shape(reference, mask)
    if not mask.any():
        mask = np.ones(reference.shape, dtype=bool)

    def magnitude(image: np.ndarray) -> np.ndarray:
        return np.hypot(ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1))

    original = magnitude(reference)[mask].mean()
    return float(magnitude(test)[mask].mean() / original) if original > 0 else math.nan


def per_image_metrics(references: ArrayLike, reconstructions: ArrayLike,
                      masks: ArrayLike | None = None, progress: Any = None
                      ) -> dict[str, np.ndarray]:
    """SSIM, PSNR, MS-SSIM and SSIM inside the brain of each pair of images.

    Args:
        references: originals, [N, H, W] or [N, H, W, 1], values in [0, 1].
        reconstructions: the same shape.
        masks: optional bool [N, H, W] (or [N, H, W, 1]) brain masks; when None, `brain_mask`
            of each reference is used.
        progress: optional object whose `step()` is called after each image.

    Returns:
        dict of float64 arrays [N]: "ssim", "psnr" (inf for identical pairs), "ms_ssim" (NaN
        where the image is too small for 2 scales), "brain_ssim" and "sharpness" (the
        `gradient_magnitude_ratio` inside the brain).
    """
    references, reconstructions = as_batch(references), as_batch(reconstructions)
    check_same_shape(references, reconstructions)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim == 4 and masks.shape[-1] == 1:
            masks = masks[..., 0]
        check_same_shape(references, masks)
    count = len(references)
    results = {name: np.empty(count, dtype=np.float64)
               for name in ("ssim", "psnr", "ms_ssim", "brain_ssim", "sharpness")}
    multi_scale = ms_ssim_scales(references.shape[1:]) >= 2
    for index, (reference, reconstruction) in enumerate(zip(references, reconstructions)):
        results["ssim"][index] = ssim(reference, reconstruction)
        results["psnr"][index] = psnr(reference, reconstruction)
        results["ms_ssim"][index] = (ms_ssim(reference, reconstruction) if multi_scale
                                     else np.nan)
        mask = brain_mask(reference) if masks is None else masks[index].astype(bool)
        results["brain_ssim"][index] = masked_ssim(reference, reconstruction, mask)
        results["sharpness"][index] = gradient_magnitude_ratio(reference, reconstruction, mask)
        if progress is not None:
            progress.add(1)
    return results


def summary_table(metrics: Mapping[str, ArrayLike]) -> str:
    """An aligned text table of each metric: n, mean, std, min, max over the finite values.

    Infinite values (PSNR of identical images) and NaNs are left out of the statistics and
    counted in the last column, e.g. "2 inf".

    Args:
        metrics: dict name -> array of per-image values (as from `per_image_metrics`).

    Returns:
        str: the table, one line per metric, no trailing newline.
    """
    header = ("metric", "n", "mean", "std", "min", "max", "not counted")
    rows = []
    for name, values in metrics.items():
        values = np.asarray(values, dtype=np.float64).ravel()
        finite = values[np.isfinite(values)]
        if finite.size:
            stats = [f"{finite.mean():.4f}", f"{finite.std():.4f}", f"{finite.min():.4f}",
                     f"{finite.max():.4f}"]
        else:
            stats = ["-"] * 4
        notes = []
        for label, count in (("inf", int(np.isposinf(values).sum())),
                             ("-inf", int(np.isneginf(values).sum())),
                             ("nan", int(np.isnan(values).sum()))):
            if count:
                notes.append(f"{count} {label}")
        rows.append((str(name), str(finite.size), *stats, ", ".join(notes) or "-"))
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1])]
        cells.append(row[-1].ljust(widths[-1]))
        return " | ".join(cells).rstrip()

    separator = "-+-".join("-" * width for width in widths)
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def write_metrics_csv(path: PathLike, metrics: Mapping[str, ArrayLike], names: Sequence[str],
                      extra_columns: Mapping[str, Sequence] | None = None) -> pathlib.Path:
    """Writes one CSV row per image: name, the extra columns, then each metric.

    Args:
        path: the CSV file to write (parent folders are created).
        metrics: dict name -> array [N] of per-image values (inf / nan written as "inf" / "nan").
        names: N image names (e.g. file paths), the first column "name".
        extra_columns: optional dict column -> array [N] (e.g. {"slice_index": ...}).

    Returns:
        The `path` written.

    Raises:
        ValueError: if a column's length differs from len(names).
    """
    columns = {**(extra_columns or {}), **metrics}
    count = len(names)
    for column, values in columns.items():
        if len(np.asarray(values).ravel()) != count:
            raise ValueError(f"column {column!r} has {len(np.asarray(values).ravel())} values "
                             f"for {count} names")

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return repr(float(value))
        if isinstance(value, np.generic):
            return str(value.item())
        return str(value)

    arrays = {column: np.asarray(values).ravel() for column, values in columns.items()}
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", *arrays])
        for index, name in enumerate(names):
            writer.writerow([name, *(cell(values[index]) for values in arrays.values())])
    return path
