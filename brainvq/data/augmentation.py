"""Augmented copies of slices: mirrored, shifted, rotated and scaled (the prior's extra code
grids, and the demo's training set)."""
import numpy as np

from brainvq.data.slice_sets import affine_warp


def flip_and_shift(images, copies, max_shift, seed=0, max_rotation=0.0, max_scale=0.0):
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

    Returns:
        [copies * N, S, S, 1] images, copy by copy (all of copy 1, then copy 2, ...).
    """
    rng = np.random.default_rng(seed)
    images = np.asarray(images)
    size_y, size_x = images.shape[1], images.shape[2]
    augmented = []
    for copy in range(copies):
        for image in images:
            flip = copy == 0 or (copy > 0 and rng.random() < 0.5)
            shift_y, shift_x = (0, 0) if copy == 0 else rng.integers(-max_shift, max_shift + 1, 2)
            source = image[:, ::-1] if flip else image
            if copy > 0 and (max_rotation > 0 or max_scale > 0):
                source = affine_warp(source, rng.uniform(-max_rotation, max_rotation),
                                     rng.uniform(1.0 - max_scale, 1.0 + max_scale))
            out = np.zeros_like(image)
            out[max(shift_y, 0):size_y + min(shift_y, 0),
                max(shift_x, 0):size_x + min(shift_x, 0)] = \
                source[max(-shift_y, 0):size_y + min(-shift_y, 0),
                       max(-shift_x, 0):size_x + min(-shift_x, 0)]
            augmented.append(out)
    return np.stack(augmented) if augmented else images[:0]
