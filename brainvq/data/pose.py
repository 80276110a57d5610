"""Where a head sits in its frame: the brain mask of a slice, its centroid's offset from the
image's centre column and its tilt. The realism checks judge samples by them, and a prior can be
told them (`prior_pose_condition`), to be sampled at a centred, upright pose."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from brainvq.data.augmentation import AUGMENTATION_PARAMETERS

# Intensity above which a pixel is tissue: the images are scaled so that the brain's bright end
# is 1, and background (air) stays near 0.
TISSUE_THRESHOLD = 0.1
# A measured pose is told to the prior as (centroid offset / 4 pixels, tilt / 8 degrees), each
# clipped to [-2, 2]: the scale of the augmentation parameters whose places they take.
POSE_SCALES = (4.0, 8.0)
POSE_SLOTS = (AUGMENTATION_PARAMETERS.index("shift_x"), AUGMENTATION_PARAMETERS.index("rotation"))


def largest_filled_component(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask, labels, sizes) of a boolean image: its largest connected component with its holes
    filled, the component labels and every label's size (0 for the background's; the mask is
    all False, and sizes the count 0, when there is no foreground)."""
    labels, count = ndimage.label(foreground)
    if count == 0:
        return np.zeros_like(foreground, dtype=bool), labels, count
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes))), labels, sizes


def tilt(rows: np.ndarray, cols: np.ndarray) -> float:
    """Signed degrees (-90 .. 90] between the long axis of the points (row, col offsets from
    their centroid) and the image's vertical: 0 for an upright head, longer front to back."""
    var_rows, var_cols = float((rows ** 2).mean()), float((cols ** 2).mean())
    covariance = float((rows * cols).mean())
    # The long axis (d_row, d_col) = (cos t, sin t) maximises the variance along it.
    return float(np.degrees(0.5 * np.arctan2(-2.0 * covariance, var_rows - var_cols)))


def mask_pose(mask: np.ndarray) -> tuple[float, float]:
    """(offset, tilt) of a non-empty [H, W] boolean mask: its centroid's column minus the image's
    centre column (pixels), and the tilt (degrees, `tilt`) of its long axis."""
    rows, cols = np.nonzero(mask)
    return (float(cols.mean() - (mask.shape[1] - 1) / 2.0),
            tilt(rows - rows.mean(), cols - cols.mean()))


def head_pose(images: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> np.ndarray:
    """[N, 2] float32: per image, its brain mask's `mask_pose`; (0, 0) for an image with no
    tissue.

    Args:
        images: [N, H, W] or [N, H, W, 1] images in [0, 1].
    """
    images = np.asarray(images, np.float32)
    images = images[..., 0] if images.ndim == 4 else images
    poses = np.zeros((len(images), 2), np.float32)
    for index, image in enumerate(images):
        mask = largest_filled_component(image > threshold)[0]
        if mask.any():
            poses[index] = mask_pose(mask)
    return poses


def with_poses(parameters: np.ndarray | None, poses: np.ndarray) -> np.ndarray:
    """Augmentation parameters [N, 5] (None: all 0, slices as they are) with the applied shift
    across and rotation replaced by the measured poses [N, 2] (scaled by `POSE_SCALES`): what
    a prior trained with `prior_pose_condition` is told, so that 0 asks for a centred, upright
    head."""
    if parameters is None:
        parameters = np.zeros((len(poses), len(AUGMENTATION_PARAMETERS)))
    told = np.array(parameters, np.float32, copy=True)
    told[:, POSE_SLOTS] = np.clip(np.asarray(poses, np.float32) / POSE_SCALES, -2.0, 2.0)
    return told


def draw_poses(slice_poses: np.ndarray, positions: ArrayLike, spread: float, seed: int
               ) -> np.ndarray:
    """[N, 2] poses (offset, tilt) to sample N slices at: for each of `positions` [N], the pose
    of one training slice at that position (any training slice for a position none had, e.g.
    the no-position row), times `spread` (0: centred and upright; 1: as the training slices
    lean and sit).

    Args:
        slice_poses: [M, 3] the training slices' (slice position, offset, tilt).
        positions: [N] int slice positions.
        spread: >= 0, the factor on the drawn poses.
        seed: the draw's seed (its own stream: the same seed draws the same poses).
    """
    slice_poses = np.asarray(slice_poses, np.float64).reshape(-1, 3)
    positions = np.asarray(positions).reshape(-1)
    drawn = np.zeros((len(positions), 2), np.float32)
    if spread == 0 or not len(positions):
        return drawn
    if not len(slice_poses):
        raise ValueError("drawing poses needs the training slices' poses (none given)")
    rng = np.random.default_rng([seed, 2])
    at = slice_poses[:, 0].astype(int)
    for position in np.unique(positions):
        rows = np.flatnonzero(positions == position)
        pool = slice_poses[at == position, 1:]
        pool = pool if len(pool) else slice_poses[:, 1:]
        drawn[rows] = pool[rng.integers(len(pool), size=len(rows))] * spread
    return drawn


def recorded_poses(positions: ArrayLike, poses: np.ndarray) -> list[list[float]]:
    """The training slices' poses as a run records them (what `draw_poses` draws from): one
    [slice position, offset, tilt] list per slice, to 0.01 pixel and degree."""
    rows = np.column_stack([np.asarray(positions, np.float64),
                            np.round(np.asarray(poses, np.float64), 2)])
    return [[int(position), float(offset), float(tilt)] for position, offset, tilt in rows]
