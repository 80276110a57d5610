"""SSIM as a differentiable training loss (keras.ops), agreeing with scikit-image's SSIM."""
from __future__ import annotations

import math

from keras import ops

from brainvq.hints import Tensor

SSIM_WINDOWS = ("gaussian", "uniform")


def _ssim_window(kind: str, image_height: int, image_width: int
                 ) -> tuple[list[list[float]], float]:
    """The SSIM averaging window [k, k] and the factor applied to (co)variances.

    "gaussian": 11x11, sigma 1.5, population (co)variances (Wang et al. 2004);
    "uniform": 7x7 box with sample (co)variances, scikit-image's `structural_similarity` default
    and so exactly what similarity.py, predict.py and benchmark.py report.
    """
    if kind == "gaussian":
        size = min(11, image_height, image_width)
        coords = [i - (size - 1) / 2.0 for i in range(size)]
        weights = [math.exp(-(c ** 2) / (2 * 1.5 ** 2)) for c in coords]
        row = [w / sum(weights) for w in weights]
        return [[a * b for b in row] for a in row], 1.0
    if kind == "uniform":
        size = min(7, image_height, image_width)
        count = size * size
        return [[1.0 / count] * size for _ in range(size)], count / max(count - 1, 1)
    raise ValueError(f"unknown SSIM window {kind!r}: use one of {SSIM_WINDOWS}")


def ssim_per_image(images_a: Tensor, images_b: Tensor, max_value: float = 1.0,
                   window: str = "uniform") -> Tensor:
    """Mean SSIM of each image pair [B, H, W, 1] -> [B].

    Filtering is "valid", as in scikit-image (which crops the border it pads), so the values
    agree with `skimage.metrics.structural_similarity` with the same window.

    Args:
        images_a, images_b: [B, H, W, 1] images.
        max_value: the data range.
        window: "uniform" (7x7, scikit-image's default) or "gaussian" (11x11, sigma 1.5).

    Returns:
        [B] float32 mean SSIM per pair.
    """
    weights, covariance_scale = _ssim_window(window, int(images_a.shape[1]),
                                             int(images_a.shape[2]))
    size = len(weights)
    kernel = ops.reshape(ops.convert_to_tensor(weights, "float32"), (size, size, 1, 1))
    images_a = ops.cast(images_a, "float32")
    images_b = ops.cast(images_b, "float32")

    def blur(image: Tensor) -> Tensor:
        return ops.conv(image, kernel, padding="valid")

    c1 = (0.01 * max_value) ** 2
    c2 = (0.03 * max_value) ** 2
    mean_a, mean_b = blur(images_a), blur(images_b)
    var_a = covariance_scale * (blur(images_a * images_a) - mean_a ** 2)
    var_b = covariance_scale * (blur(images_b * images_b) - mean_b ** 2)
    covariance = covariance_scale * (blur(images_a * images_b) - mean_a * mean_b)
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)
                / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2)))
    return ops.mean(ssim_map, axis=(1, 2, 3))
