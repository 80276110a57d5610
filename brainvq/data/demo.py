"""The embedded demo dataset: the MNI152 template shipped in data/mni152, cut into axial slices,
split by slice ranges and augmented, for a first run on a fresh machine."""
from __future__ import annotations

import math
import pathlib

import numpy as np

from brainvq.config import DEFAULTS
from brainvq.data import volumes
from brainvq.data.slice_sets import (
    SliceSet,
    affine_warp,
    concatenate_parts,
    position_to_index,
    square_resize,
)
from brainvq.errors import DatasetError

DEMO_VOLUME = (pathlib.Path(__file__).resolve().parents[2] / "data" / "mni152"
               / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
DEMO_SLICE_RANGE = (0.20, 0.80)
DEMO_VALIDATE_BAND = (0.45, 0.52)  # fractions of the demo slice range
DEMO_TEST_BAND = (0.60, 0.67)
DEMO_GAP_SLICES = 2  # slices left out between a held-out band and the training slices


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A randomly jittered copy: small rotation/scale/shift, then gain and gamma."""
    size = image.shape[0]
    warped = affine_warp(image, rng.uniform(-6.0, 6.0), rng.uniform(0.93, 1.07),
                         rng.uniform(-0.04, 0.04, size=2) * size)
    gain = rng.uniform(0.9, 1.1)
    gamma = rng.uniform(0.85, 1.15)
    return np.clip(gain * np.clip(warped, 0.0, 1.0) ** gamma, 0.0, 1.0).astype(np.float32)


def load_demo(image_size: int, copies: int = DEFAULTS["demo_copies"], seed: int = DEFAULTS["seed"],
              num_slice_positions: int = DEFAULTS["num_slice_positions"]) -> dict[str, SliceSet]:
    """The embedded MNI152 template cut into an augmented demo dataset.

    Axial slices over 20%..80% of the template's non-empty axial extent, split by slice ranges:
    validate is the band at 45%..52% of that range, test the band at 60%..67%, train the rest
    minus DEMO_GAP_SLICES slices on each side of each band. Each training slice comes with
    `copies` jittered versions (affine and intensity); validate and test are not augmented.

    Args:
        image_size: side of the square output images.
        copies: augmented copies per training slice (the original is always included).
        seed: seed of the augmentation.
        num_slice_positions: size of the slice-index vocabulary.

    Returns:
        {"train", "validate", "test"} -> SliceSet (case_id 0, paths "...nii.gz:axial=N").

    Raises:
        DatasetError: the embedded volume is missing or unreadable.
    """
    if not DEMO_VOLUME.is_file():
        raise DatasetError(f"the embedded demo volume {DEMO_VOLUME} is missing: restore it from "
                           f"the repository (git checkout -- data/mni152), or pass --data-dir.")
    voxels = volumes.read_volume(DEMO_VOLUME).voxels  # already RAS at 1 mm
    low, high = volumes.extent(voxels, volumes.SLICE_AXES["axial"])
    first = int(math.ceil(low + DEMO_SLICE_RANGE[0] * (high - low)))
    last = int(math.floor(low + DEMO_SLICE_RANGE[1] * (high - low)))
    zs = np.arange(first, last + 1)
    fraction = (zs - first) / max(last - first, 1)
    in_validate = (fraction >= DEMO_VALIDATE_BAND[0]) & (fraction <= DEMO_VALIDATE_BAND[1])
    in_test = (fraction >= DEMO_TEST_BAND[0]) & (fraction <= DEMO_TEST_BAND[1])
    held_out = zs[in_validate | in_test]
    near_held_out = np.abs(zs[:, None] - held_out[None, :]).min(axis=1) <= DEMO_GAP_SLICES
    in_train = ~near_held_out

    scale = volumes.intensity_scale(voxels)
    rng = np.random.default_rng(seed)
    splits = {}
    for name, mask, augmented in (("train", in_train, True), ("validate", in_validate, False),
                                  ("test", in_test, False)):
        parts = []
        for z in zs[mask]:
            upright = volumes.upright(voxels, volumes.SLICE_AXES["axial"], z)
            image = square_resize(np.clip(upright / scale, 0.0, 1.0), image_size)
            index = position_to_index(z - first, len(zs), num_slice_positions)
            path = f"{DEMO_VOLUME}:axial={z}"
            parts.append((image, index, 0, path))
            if augmented:
                parts += [(_augment(image, rng), index, 0, path) for _ in range(copies)]
        splits[name] = concatenate_parts(parts, image_size)
    return splits


def is_demo(slices: SliceSet) -> bool:
    """Whether every slice of a SliceSet was cut from the embedded demo volume."""
    return len(slices.paths) > 0 and all(str(path).rsplit(":", 1)[0] == str(DEMO_VOLUME)
                                         for path in slices.paths)
