"""Slices and where they came from: the `SliceSet` every loader returns, OASIS-style file names,
folder checks, and squaring and resizing of 2D images. Shared by dataset.py, nifti.py and demo.py.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
import sys
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from brainvq.errors import DatasetError
from brainvq.hints import PathLike

SPLITS = ("train", "validate", "test")

# "case_012_slice_7.nii.png", also "case_004_week_0_slice_3.nii.gz" (hip MRI names).
CASE_SLICE_PATTERN = re.compile(r"case_(\d+)(?:_[A-Za-z]+_\d+)*_slice_(\d+)", re.IGNORECASE)


_PNG_CASE = re.compile(r"^(case_\d+)_slice_\d+")


def subject_name(path: PathLike) -> str:
    """The subject a slice came from, by name: the volume's file name for a slice of a NIfTI
    volume ("IXI002-Guys-0828_T1.nii.gz"), `case_NNN` for an OASIS PNG slice, else the file's
    name. Names, unlike the case numbers of one loading, mean the same subject in any folder."""
    name = pathlib.PurePath(str(path).rsplit(":", 1)[0] if ".nii" in str(path) else str(path)).name
    match = _PNG_CASE.match(name)
    return match.group(1) if match else name


def subject_names(slices: SliceSet) -> list[str]:
    """The sorted names (`subject_name`) of the subjects a `SliceSet` holds slices of."""
    return sorted({subject_name(path) for path in slices.paths})


@dataclasses.dataclass
class SliceSet:
    """Slices of one split, with where each came from.

    Attributes:
        images: float32 [N, H, W, 1], values in [0, 1].
        slice_index: int32 [N], position along the brain, 0..num_slice_positions-1.
        case_id: int32 [N], the subject each slice belongs to.
        paths: source of each image, "path/case_001_slice_3.nii.png" or "vol.nii.gz:axial=87"
            (the index along that axis of the RAS, isotropic volume).
        skipped: files skipped with skip_bad=True.
    """
    images: np.ndarray
    slice_index: np.ndarray
    case_id: np.ndarray
    paths: list
    skipped: list = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: ArrayLike) -> SliceSet:
        """Returns the subset at `indices` (integer indices or a boolean mask)."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = indices.astype(np.int64).reshape(-1)
        return SliceSet(images=self.images[indices], slice_index=self.slice_index[indices],
                        case_id=self.case_id[indices],
                        paths=[self.paths[i] for i in indices], skipped=list(self.skipped))

    @staticmethod
    def join(sets: Sequence[SliceSet]) -> SliceSet:
        """One SliceSet holding the slices of every set in `sets` (a non-empty list), in order."""
        return SliceSet(images=np.concatenate([s.images for s in sets]),
                        slice_index=np.concatenate([s.slice_index for s in sets]),
                        case_id=np.concatenate([s.case_id for s in sets]),
                        paths=[path for s in sets for path in s.paths],
                        skipped=[path for s in sets for path in s.skipped])


def empty_slice_set(image_size: int, skipped: Sequence[str] = ()) -> SliceSet:
    return SliceSet(images=np.zeros((0, image_size, image_size, 1), np.float32),
                    slice_index=np.zeros(0, np.int32), case_id=np.zeros(0, np.int32),
                    paths=[], skipped=list(skipped))


def concatenate_parts(parts: Sequence[tuple], image_size: int, skipped: Sequence[str] = ()
                      ) -> SliceSet:
    """One SliceSet from a list of (image [S, S], slice_index, case_id, path) tuples."""
    if not parts:
        return empty_slice_set(image_size, skipped)
    return SliceSet(images=np.stack([part[0] for part in parts])[..., None].astype(np.float32),
                    slice_index=np.array([part[1] for part in parts], np.int32),
                    case_id=np.array([part[2] for part in parts], np.int32),
                    paths=[part[3] for part in parts], skipped=list(skipped))


# --- names and folders -------------------------------------------------------------------------

def parse_case_slice(name: str) -> tuple[int, int]:
    """Case and slice numbers from an OASIS-style file name.

    Args:
        name: a file name or path such as "case_012_slice_7.nii.png".

    Returns:
        (case, slice), e.g. (12, 7).

    Raises:
        DatasetError: the name does not contain case_NNN_slice_S.
    """
    match = CASE_SLICE_PATTERN.search(pathlib.Path(str(name)).name)
    if match is None:
        raise DatasetError(
            f"{name}: file name does not match case_NNN_slice_S (e.g. case_012_slice_7.nii.png); "
            f"rename the file or use the OASIS naming.")
    return int(match.group(1)), int(match.group(2))


def check_folder(folder: PathLike, what: str = "data folder") -> pathlib.Path:
    folder = pathlib.Path(folder)
    if not folder.exists():
        raise DatasetError(f"{what} {folder} does not exist: check the path (--data-dir), "
                           f"or download/extract the data there.")
    if not folder.is_dir():
        raise DatasetError(f"{folder} is a file, not a folder: pass the folder that holds the "
                           f"data (--data-dir), not a single file.")
    return folder


def has_extension(path: pathlib.Path, extensions: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(extensions)


def list_files(folder: pathlib.Path, extensions: tuple[str, ...]) -> list[pathlib.Path]:
    """Visible files in `folder` with one of `extensions`; other files are ignored."""
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and not path.name.startswith(".")
                  and has_extension(path, extensions))


def order_by_case_slice(paths: Sequence[pathlib.Path], num_slice_positions: int
                        ) -> list[tuple[pathlib.Path, int, int]]:
    """Sorts files by (case, slice); returns [(path, slice_index, case_id)].

    Names without case_NNN_slice_S come last in name order, each as its own case at slice 0,
    with a printed warning that says so.
    """
    parsed, unnamed = [], []
    for path in paths:
        try:
            case, position = parse_case_slice(path.name)
        except DatasetError:
            unnamed.append(path)
            continue
        parsed.append((case, position, path.name, path))
    parsed.sort(key=lambda item: item[:3])
    ordered = [(path, min(position, num_slice_positions - 1), case)
               for case, position, _, path in parsed]
    next_case = max((item[0] for item in parsed), default=-1) + 1
    ordered += [(path, 0, next_case + order) for order, path in enumerate(unnamed)]
    if unnamed:
        print(f"warning: {len(unnamed)} of {len(paths)} file(s) in {unnamed[0].parent} are not "
              f"named case_NNN_slice_S (first: {unnamed[0].name}); assumed: each is its own "
              f"subject at slice position 0, so the subject split and slice conditioning do "
              f"not apply to them. Rename them case_NNN_slice_S.<ext> (subject NNN, slice "
              f"position S) to fix this.", file=sys.stderr)
    return ordered


def report_skipped(skipped: Sequence[str], total: int, folder: PathLike) -> None:
    """Prints the skip summary, or raises when nothing in the folder could be read."""
    if not skipped:
        return
    first_path, first_reason = skipped[0]
    if len(skipped) == total:
        raise DatasetError(f"no readable files in {folder}: all {total} failed "
                           f"(first: {first_reason}); replace or re-extract the data.")
    print(f"skipped {len(skipped)} unreadable file(s) in {folder} (first: {first_path.name})",
          file=sys.stderr)


# --- images ------------------------------------------------------------------------------------

def square_resize(image: np.ndarray, image_size: int) -> np.ndarray:
    """Pads a [H, W] float image in [0, 1] to a centred square and resizes it (bicubic)."""
    height, width = image.shape
    side = max(height, width)
    if height != width:
        square = np.zeros((side, side), np.float32)
        top, left = (side - height) // 2, (side - width) // 2
        square[top:top + height, left:left + width] = image
        image = square
    if side != image_size:
        resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
            (image_size, image_size), Image.Resampling.BICUBIC)
        image = np.asarray(resized, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def affine_warp(image: np.ndarray, angle_degrees: float = 0.0, scale: float = 1.0,
                shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """`image` [S, S] (or [S, S, 1]) rotated by `angle_degrees` and scaled by `scale` about its
    centre, then moved by `shift` pixels (rows, columns); bilinear, zero outside the frame."""
    from scipy import ndimage

    squeeze = image.ndim == 3
    plane = image[..., 0] if squeeze else image
    angle = np.deg2rad(angle_degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotation / scale  # output pixel -> input pixel
    centre = (np.array(plane.shape, float) - 1.0) / 2.0
    offset = centre - matrix @ centre - np.asarray(shift, float)
    warped = ndimage.affine_transform(plane, matrix, offset=offset, order=1, mode="constant",
                                      cval=0.0).astype(image.dtype)
    return warped[..., None] if squeeze else warped


def position_to_index(position: int, count: int, num_slice_positions: int) -> int:
    """Ordinal position 0..count-1 -> slice index 0..num_slice_positions-1."""
    if count <= 1:
        return (num_slice_positions - 1) // 2
    return int(round(position * (num_slice_positions - 1) / (count - 1)))
