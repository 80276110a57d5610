"""Batches of grayscale images as arrays: the shape the metrics and figures take."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def as_batch(images: ArrayLike) -> np.ndarray:
    """A batch of grayscale images as an [N, H, W] array (a trailing channel of 1 is dropped).

    Args:
        images: array shaped [N, H, W] or [N, H, W, 1] (or a list of [H, W] images).

    Returns:
        np.ndarray [N, H, W], keeping a floating dtype (float32 stays float32).
    """
    array = np.asarray(images)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"expected a batch of grayscale images [N, H, W] or [N, H, W, 1], got "
                         f"shape {np.shape(images)}")
    return array


def check_same_shape(reference: np.ndarray, test: np.ndarray) -> None:
    """Raises ValueError unless the two arrays have the same shape."""
    if reference.shape != test.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {test.shape}")
