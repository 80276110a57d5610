"""NIfTI data: folders of 3D volumes (cut into slices by volumes.py, split by subject) and the
`keras_slices_{train,validate,test}` layout of 2D slices."""
from __future__ import annotations

import math
import pathlib
import sys
from typing import Sequence

import numpy as np

from brainvq.config import DEFAULTS, split_shares
from brainvq.data import volumes
from brainvq.data.slice_sets import (
    SPLITS,
    SliceSet,
    check_folder,
    concatenate_parts,
    list_files,
    order_by_case_slice,
    report_skipped,
    square_resize,
)
from brainvq.errors import DatasetError
from brainvq.hints import PathLike
from brainvq.progress import progress_bar

NIFTI_SLICE_FOLDERS = {split: f"keras_slices_{split}" for split in SPLITS}
NIFTI_EXTENSIONS = (".nii", ".nii.gz")


def _read_nifti(path: PathLike) -> np.ndarray:
    """Voxels as float32 with singleton dimensions squeezed: [X, Y, Z] or [X, Y]."""
    import nibabel

    try:
        voxels = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
    except Exception as error:  # nibabel, gzip and zlib raise many types for a broken file
        raise DatasetError(f"{path}: not a readable NIfTI file ({error}); replace or delete it, "
                           f"or pass --skip-bad true to skip unreadable files.") from error
    voxels = np.squeeze(voxels)
    if voxels.ndim not in (2, 3):
        raise DatasetError(f"{path}: has {voxels.ndim} non-singleton dimensions "
                           f"{voxels.shape}; expected one 3D volume or one 2D slice per file. "
                           f"Split 4D series into 3D volumes (e.g. fslsplit) first.")
    if not np.isfinite(voxels).all():
        voxels = np.nan_to_num(voxels, nan=0.0, posinf=0.0, neginf=0.0)
    return voxels


def _volume_slices(path: pathlib.Path, image_size: int, slices_per_volume: int,
                   num_slice_positions: int, case_id: int, slice_axis: str = "axial",
                   crop: bool = True, slice_spacing: float = 0.0,
                   field_of_view: float = DEFAULTS["field_of_view"]
                   ) -> tuple[list[tuple], str | None]:
    """Slices of one 3D volume (volumes.py) as (image, slice_index, case_id, path) tuples:
    `volumes.cut_stack` with a `slice_spacing` (mm) > 0, else `volumes.cut_slices`.

    Returns:
        (parts, note): note is None, or a phrase saying the volume gave fewer slices than asked.
    """
    volume = volumes.read_volume(path)
    if slice_spacing > 0:
        cut = volumes.cut_stack(volume, slices_per_volume, slice_spacing, field_of_view)
    else:
        cut = volumes.cut_slices(volume, slices_per_volume, axis=slice_axis, crop=crop)
    parts = [(square_resize(image, image_size),
              int(round(fraction * (num_slice_positions - 1))), case_id,
              f"{path}:{slice_axis}={index}")
             for image, fraction, index in zip(cut.images, cut.fractions, cut.indices)]
    note = None
    if len(cut.images) < cut.requested:
        note = f"{len(cut.images)} distinct {slice_axis} slices instead of {cut.requested}"
    return parts, note


def _slice_image(path: PathLike, voxels: np.ndarray, image_size: int) -> np.ndarray:
    """One 2D NIfTI slice, upright, min-max scaled to [0, 1], square and resized."""
    low, high = float(voxels.min()), float(voxels.max())
    scaled = (voxels - low) / (high - low) if high > low else np.zeros_like(voxels)
    return square_resize(np.flipud(scaled.T), image_size)  # upright, as volumes.upright


def _nifti_files(folder: pathlib.Path) -> list[pathlib.Path]:
    files = list_files(folder, NIFTI_EXTENSIONS)
    if not files:
        raise DatasetError(f"no .nii or .nii.gz files in {folder}: put the NIfTI files there, "
                           f"or point --data-dir at the right folder.")
    return files


def _load_nifti_slice_folder(folder: pathlib.Path, image_size: int, skip_bad: bool,
                             num_slice_positions: int) -> SliceSet:
    """A folder of 2D NIfTI slices (one slice per file) as one SliceSet."""
    files = _nifti_files(folder)
    parts, skipped = [], []
    for path, slice_index, case_id in order_by_case_slice(files, num_slice_positions):
        try:
            voxels = _read_nifti(path)
            if voxels.ndim != 2:
                raise DatasetError(f"{path}: a 3D volume {voxels.shape} among 2D slices; "
                                   f"keras_slices_* folders need one 2D slice per file.")
        except DatasetError as error:
            if not skip_bad:
                raise
            skipped.append((path, str(error)))
            continue
        parts.append((_slice_image(path, voxels, image_size), slice_index, case_id, str(path)))
    report_skipped(skipped, len(files), folder)
    return concatenate_parts(parts, image_size, [str(path) for path, _ in skipped])


def is_counts(split: Sequence[float]) -> bool:
    """Whether a split gives subject counts (three whole numbers, each >= 1: 125,20,20) rather
    than shares (0.8,0.1,0.1)."""
    return len(split) == 3 and all(float(part).is_integer() and part >= 1 for part in split)


def split_counts(count: int, split: Sequence[float]) -> tuple[int, int, int]:
    """Cases per split. Counts (`is_counts`) are taken as they are when `count` cases hold them
    (the cases left over are not used); otherwise, and for shares, the shares of `count`
    rounded, >= 1 train, >= 1 validate and test from 3 cases. (train.py refuses counts that
    exceed the cases; a scoring script rescales them, then scores only the subjects the run
    never saw.)"""
    fractions = np.asarray(split, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions.sum() <= 0:
        raise DatasetError(f"split={split!r}: give three non-negative fractions for "
                           f"(train, validate, test), e.g. (0.8, 0.1, 0.1).")
    if is_counts(split) and fractions.sum() <= count:
        return tuple(int(part) for part in split)
    fractions = fractions / fractions.sum()
    validate = int(math.floor(count * fractions[1] + 0.5))
    test = int(math.floor(count * fractions[2] + 0.5))
    if count >= 3:
        validate, test = max(validate, 1), max(test, 1)
    while validate + test > count - 1 and (validate or test):  # keep one case for training
        if test >= validate and test > 0:
            test -= 1
        else:
            validate -= 1
    return count - validate - test, validate, test


def _split_by_case(parts: Sequence[tuple], image_size: int, split: Sequence[float], seed: int,
                   skipped: Sequence[str], folder: PathLike, what: str = "volumes"
                   ) -> dict[str, SliceSet]:
    """Assigns whole cases to train/validate/test: sorted case ids, shuffled with `seed`.

    Raises:
        DatasetError: fewer than three cases.
    """
    cases = sorted({part[2] for part in parts})
    if len(cases) < len(SPLITS):
        raise DatasetError(
            f"{folder}: {len(cases)} readable {what}, but splitting by subject needs at least "
            f"{len(SPLITS)}, one each for train, validate and test (each split takes whole "
            f"subjects, so no subject is both trained on and tested). Add {what}, or cut them "
            f"into the OASIS PNG layout with a split of your own.")
    order = np.random.default_rng(seed).permutation(len(cases))
    shuffled = [cases[i] for i in order]
    train_count, validate_count, test_count = split_counts(len(cases), split)  # each >= 1
    held = train_count + validate_count
    assigned = {"train": set(shuffled[:train_count]),
                "validate": set(shuffled[train_count:held]),
                "test": set(shuffled[held:held + test_count])}
    unused = len(cases) - held - test_count
    if unused:
        print(f"--split {','.join(str(int(part)) for part in split)}: {unused} of the "
              f"{len(cases)} subjects in {folder} are left over and not used (raise a count "
              f"to use them)")
    return {name: concatenate_parts([part for part in parts if part[2] in members],
                                    image_size, skipped)
            for name, members in assigned.items()}


def parse_split(text: str) -> tuple[float, float, float]:
    """`config.split_shares`, with a DatasetError for malformed text."""
    shares = split_shares(text)
    if shares is None:
        raise DatasetError(f"--split {text!r}: give three positive shares for train, validate "
                           f"and test, e.g. 0.8,0.1,0.1 or 125,20,20 (subject counts).")
    return shares


def _nifti_dimensions(path: PathLike) -> int:
    """Number of non-singleton dimensions of a NIfTI file, from its header alone."""
    import nibabel

    try:
        shape = nibabel.load(str(path)).shape
    except Exception as error:  # nibabel, gzip and zlib raise many types for a broken file
        raise DatasetError(f"{path}: not a readable NIfTI file ({error}); replace or delete it, "
                           f"or pass --skip-bad true to skip unreadable files.") from error
    dimensions = sum(1 for size in shape if size > 1)
    if dimensions not in (2, 3):
        raise DatasetError(f"{path}: has {dimensions} non-singleton dimensions {tuple(shape)}; "
                           f"expected one 3D volume or one 2D slice per file. "
                           f"Split 4D series into 3D volumes (e.g. fslsplit) first.")
    return dimensions


def _warn_fewer_slices(fewer: Sequence[tuple[str, str]], total: int, folder: PathLike,
                       slices_per_volume: int, slice_axis: str, slice_spacing: float) -> None:
    """Warns, once for all of them, of the volumes that gave fewer slices than asked for
    (`fewer`: (path, note) pairs)."""
    (first, note) = fewer[0]
    if slice_spacing > 0:
        print(f"warning: {len(fewer)} of {total} volume(s) in {folder} end less than "
              f"{slices_per_volume} x {slice_spacing:g} mm below the top of the head (first: "
              f"{first.name}, {note}); their stacks lack the lowest slices.", file=sys.stderr)
    else:
        print(f"warning: {len(fewer)} of {total} volume(s) in {folder} have fewer "
              f"distinct {slice_axis} slices in the slice range than --slices-per-volume "
              f"{slices_per_volume} (first: {first.name}, {note}); each slice "
              f"is used once, none is repeated.", file=sys.stderr)


def _ordered_2d_slices(parts_2d: Sequence[tuple[pathlib.Path, np.ndarray]], image_size: int,
                       num_slice_positions: int) -> list[tuple]:
    """(image, slice index, case id, path) of 2D NIfTI slices ((path, voxels) pairs), ordered
    by case and slice (`order_by_case_slice`)."""
    voxels_by_path = dict(parts_2d)
    return [(_slice_image(path, voxels_by_path[path], image_size), slice_index, case_id,
             str(path))
            for path, slice_index, case_id in order_by_case_slice(list(voxels_by_path),
                                                                   num_slice_positions)]


def _load_nifti_slice_layout(folder: pathlib.Path, image_size: int, skip_bad: bool,
                             num_slice_positions: int) -> dict[str, SliceSet]:
    """The keras_slices_{train,validate,test} layout: each folder one split, as it is."""
    missing = [name for name in NIFTI_SLICE_FOLDERS.values() if not (folder / name).is_dir()]
    if missing:
        raise DatasetError(f"{folder} lacks {', '.join(missing)}: the NIfTI slice layout "
                           f"needs {', '.join(NIFTI_SLICE_FOLDERS.values())} side by side.")
    return {split_name: _load_nifti_slice_folder(folder / name, image_size, skip_bad,
                                                 num_slice_positions)
            for split_name, name in NIFTI_SLICE_FOLDERS.items()}


def load_nifti_folder(folder: PathLike, image_size: int,
                      slices_per_volume: int = DEFAULTS["slices_per_volume"],
                      split: Sequence[float] | None = None, seed: int = DEFAULTS["seed"],
                      skip_bad: bool = False,
                      num_slice_positions: int = DEFAULTS["num_slice_positions"],
                      slice_axis: str = DEFAULTS["slice_axis"],
                      crop: bool = DEFAULTS["crop_to_head"],
                      slice_spacing: float = DEFAULTS["slice_spacing"],
                      field_of_view: float = DEFAULTS["field_of_view"]) -> dict[str, SliceSet]:
    """Loads NIfTI data: 3D volumes (split by case) or the keras_slices_* 2D slice layout.

    A flat folder of 3D volumes is read as `volumes.py` describes: reoriented to RAS by its
    affine, resampled to isotropic voxels, `slices_per_volume` slices along `slice_axis` (axial
    ones placed by the head's anatomy, `volumes.axial_head_range`; fewer, each once, where the
    axis is coarser, and a warning says so), cropped to the head, scaled by the 99.5th
    percentile of positive voxels. Each volume is one case, and cases are assigned to splits by
    `split`. A flat folder of 2D slices is split the same way by the case numbers in the names.
    With `keras_slices_{train,validate,test}` folders, those splits are used as they are and
    each slice is min-max scaled.

    Args:
        folder: the NIfTI folder.
        image_size: side of the square output images.
        slices_per_volume: slices cut from each 3D volume (at most).
        split: (train, validate, test) shares of the cases, e.g. (0.8, 0.1, 0.1) or (125, 20, 20);
            None: the --split default.
        seed: seed of the case shuffle.
        skip_bad: skip unreadable files (recorded in `skipped` of every split) instead of raising.
        num_slice_positions: size of the slice-index vocabulary.
        slice_axis: "axial", "coronal" or "sagittal".
        crop: crop the slices of each volume to its head box (with a margin).
        slice_spacing: > 0: cut each volume as a stack of axial slices this many mm apart,
            each a square `field_of_view` mm wide (`volumes.cut_stack`), for whole-volume
            models; `slice_axis` and `crop` do not apply.
        field_of_view: mm, the side of a stack's slices.

    Returns:
        {"train", "validate", "test"} -> SliceSet.

    Raises:
        DatasetError: missing or empty folder, an unreadable or 4D file, a volume without a usable
            affine, mixed 2D and 3D files, fewer than three subjects.
    """
    folder = check_folder(folder)
    if any((folder / name).is_dir() for name in NIFTI_SLICE_FOLDERS.values()):
        return _load_nifti_slice_layout(folder, image_size, skip_bad, num_slice_positions)
    if slices_per_volume < 1:
        raise DatasetError(f"slices_per_volume={slices_per_volume}: need at least 1.")
    split = parse_split(DEFAULTS["split"]) if split is None else split
    files = _nifti_files(folder)
    parts_3d, parts_2d, skipped, fewer = [], [], [], []
    progress = progress_bar(len(files), f"reading {len(files)} NIfTI files in {folder}")
    for case_id, path in enumerate(files, start=1):
        try:
            if _nifti_dimensions(path) == 3:
                parts, note = _volume_slices(path, image_size, slices_per_volume,
                                             num_slice_positions, case_id, slice_axis, crop,
                                             slice_spacing, field_of_view)
                parts_3d += parts
                if note:
                    fewer.append((path, note))
            else:
                parts_2d.append((path, _read_nifti(path)))
        except DatasetError as error:
            if not skip_bad:
                raise
            skipped.append((path, str(error)))
        progress.add(1)
    report_skipped(skipped, len(files), folder)
    if fewer:
        _warn_fewer_slices(fewer, len(files), folder, slices_per_volume, slice_axis,
                           slice_spacing)
    skipped_paths = [str(path) for path, _ in skipped]
    if parts_3d and parts_2d:
        raise DatasetError(f"{folder} mixes 3D volumes and 2D slices (e.g. {parts_2d[0][0].name}); "
                           f"keep one kind per folder.")
    if parts_2d:
        return _split_by_case(_ordered_2d_slices(parts_2d, image_size, num_slice_positions),
                              image_size, split, seed, skipped_paths, folder, what="subjects")
    return _split_by_case(parts_3d, image_size, split, seed, skipped_paths, folder)
