"""Augmented copies of slices: mirrored, shifted, rotated and scaled (the prior's extra code
grids, and the demo's training set)."""
from __future__ import annotations

import numpy as np

from brainvq.data.slice_sets import affine_warp

# The augmentation parameters of a copy, in this order, each scaled to [-1, 1] by its largest
# value (0: the slice as it is): what a prior conditioned on them is told (non-leaking
# augmentation, Karras et al. 2020), so that it can be sampled at zero, unaugmented.
AUGMENTATION_PARAMETERS = ("flip", "shift_y", "shift_x", "rotation", "scale")


def flip_and_shift(images: np.ndarray, copies: int, max_shift: int, seed: int = 0,
                   max_rotation: float = 0.0, max_scale: float = 0.0,
                   return_parameters: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Augmented copies of slices for the prior's code grids: left-right flips and small shifts
    (and, optionally, small rotations and scalings).

    Copy 1 of every slice is its mirror image; each further copy is shifted by a random whole
    number of pixels in [-max_shift, max_shift] along each axis (zero fill, no wrap-around) and
    mirrored with probability 1/2. A brain is close to left-right symmetric and its position in
    the frame varies between scans, so both give plausible slices with the same slice position.
    With `max_rotation` or `max_scale` > 0, each further copy is also rotated by up to
    `max_rotation` degrees and scaled by a factor in [1 - max_scale, 1 + max_scale] about the
    centre (bilinear), as heads are tilted and sized differently between subjects.

    Args:
        images: [N, S, S, 1] float images.
        copies: number of augmented copies of each image.
        max_shift: largest shift in pixels.
        seed: seed of the shifts, flips, rotations and scalings.
        max_rotation: largest rotation in degrees (0: none).
        max_scale: largest relative change of size (0: none).

        return_parameters: also return each copy's parameters.

    Returns:
        [copies * N, S, S, 1] images, copy by copy (all of copy 1, then copy 2, ...); with
        `return_parameters`, also [copies * N, 5] float32 parameters in the order of
        `AUGMENTATION_PARAMETERS`: the flip (0 or 1), the shifts over `max_shift`, the rotation
        over `max_rotation` and the change of size over `max_scale` (0 where that maximum is 0).
    """
    rng = np.random.default_rng(seed)
    images = np.asarray(images)
    size_y, size_x = images.shape[1], images.shape[2]
    augmented, parameters = [], []
    for copy in range(copies):
        for image in images:
            flip = copy == 0 or (copy > 0 and rng.random() < 0.5)
            shift_y, shift_x = (0, 0) if copy == 0 else rng.integers(-max_shift, max_shift + 1, 2)
            source = image[:, ::-1] if flip else image
            rotation, scale = 0.0, 1.0
            if copy > 0 and (max_rotation > 0 or max_scale > 0):
                rotation = rng.uniform(-max_rotation, max_rotation)
                scale = rng.uniform(1.0 - max_scale, 1.0 + max_scale)
                source = affine_warp(source, rotation, scale)
            parameters.append([float(flip), _scaled(shift_y, max_shift),
                               _scaled(shift_x, max_shift), _scaled(rotation, max_rotation),
                               _scaled(scale - 1.0, max_scale)])
            out = np.zeros_like(image)
            out[max(shift_y, 0):size_y + min(shift_y, 0),
                max(shift_x, 0):size_x + min(shift_x, 0)] = \
                source[max(-shift_y, 0):size_y + min(-shift_y, 0),
                       max(-shift_x, 0):size_x + min(-shift_x, 0)]
            augmented.append(out)
    stacked = np.stack(augmented) if augmented else images[:0]
    if not return_parameters:
        return stacked
    return stacked, np.asarray(parameters, np.float32).reshape(-1, len(AUGMENTATION_PARAMETERS))


def _scaled(value: float, largest: float) -> float:
    return float(value) / largest if largest > 0 else 0.0
