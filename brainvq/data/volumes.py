"""3D brain volumes as scanners write them, cut into upright 2D slices.

A NIfTI volume's array axes can run in any anatomical direction: OASIS-1 stores L, A, S, IXI stores
P, S, R (a sagittal acquisition). Slicing `voxels[:, :, z]` is only axial when the third axis runs
inferior-superior, so every volume is first put in one frame:

1. **Orientation.** `nibabel.as_closest_canonical` reorders and flips the axes by the affine so
   they run R, A, S (RAS). A volume whose header carries no orientation (sform and qform codes
   both 0) cannot be oriented and is refused by name.
2. **Spacing.** Anisotropic voxels (e.g. 1 x 1 x 3 mm) are resampled (linear) to the finest
   spacing on every axis, so slices along any axis have square pixels.
3. **Slices.** Axial slices are placed by the head's anatomy (`axial_head_range`): from the
   top of the head down a multiple HEAD_RANGE of the depth of its dome (how far below the top its
   cross-section grows to DOME_AREA of its largest). The range follows the head, not the field of
   view, so a scan that includes the neck (IXI) and one cut below the cerebellum (OASIS-1) give
   the same level of the brain at the same slice position.
   Coronal and sagittal slices are cut over the central part SLICE_RANGE of the non-empty extent.
   Every slice is turned upright the same way for every
   input: superior (or anterior, for axial slices) at the top, the subject's right on the image's
   right for axial and coronal slices, anterior on the left for sagittal ones. Where the axis has
   fewer distinct slices in that range than asked for (coarse or small volumes), each slice is
   returned once and the caller is told how many there are.
   **Stacks** (`cut_stack`, for whole-volume models): axial slices at one fixed spacing in mm,
   from just below the top of the head down, the same for every subject, so consecutive slices
   are neighbours in the body at one known distance and a stack covers the brain from its top
   to its base. Each slice is a fixed field of view in mm centred on the head, so the pixel size
   is known too and a stack can be written back as a NIfTI volume (`write_stack`).
4. **Head crop.** Every slice of a volume is cropped to one box: the head's bounding box over the
   cut slices (voxels above HEAD_THRESHOLD of the intensity scale), plus a margin, so the anatomy
   fills the frame whatever the field of view. Padding to a square and resizing is the caller's.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from brainvq.errors import DatasetError
from brainvq.hints import PathLike

SLICE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}  # array axis in RAS order
SLICE_RANGE = (0.30, 0.75)  # coronal and sagittal: central part of the non-empty extent
HEAD_RANGE = (0.7, 2.1)  # axial: dome depths below the top of the head (last, first slice)
HEAD_TOP_AREA = 100.0  # mm^2 of head in an axial slice for it to count as the top of the head
HEAD_SPAN = 120.0  # mm below the top within which the head's largest cross-section is taken
DOME_AREA = 0.8  # share of that largest cross-section that ends the dome
EXTENT_THRESHOLD = 0.05  # of the volume maximum: a slice holding more is "non-empty"
INTENSITY_PERCENTILE = 99.5  # of positive voxels: maps to 1.0
HEAD_THRESHOLD = 0.10  # of the intensity scale: head (or brain) voxels for the crop box
CROP_MARGIN = 0.05  # of the box's longer side, added on every side
ISOTROPIC_TOLERANCE = 0.01  # relative spacing difference treated as isotropic
STACK_TOP_OFFSET = 4.0  # mm below the top of the head where a stack's highest slice lies


@dataclasses.dataclass
class Volume:
    """One volume in RAS voxel order with isotropic spacing.

    Attributes:
        voxels: float32 [X, Y, Z], axes running right, anterior, superior.
        spacing: voxel size in mm, the same on every axis.
        path: where it was read from.
    """
    voxels: np.ndarray
    spacing: float
    path: str


@dataclasses.dataclass
class VolumeSlices:
    """Slices cut from one volume, upright, cropped to the head and scaled to [0, 1].

    Attributes:
        images: float32 [N, H, W] images (not yet square).
        fractions: position of each slice in the slice range, 0.0 (first) .. 1.0 (last).
        indices: index of each slice along the slice axis of the RAS, isotropic volume.
        requested: how many slices were asked for (len(images) is smaller on a coarse axis).
    """
    images: np.ndarray
    fractions: np.ndarray
    indices: np.ndarray
    requested: int


def _usable_affine(image: Any) -> bool:
    """Whether the header says how the voxel axes lie in the body."""
    header = image.header
    codes = [int(header.get(key, 0)) for key in ("sform_code", "qform_code")]
    affine = np.asarray(image.affine, dtype=np.float64)
    rotation = affine[:3, :3]
    return (any(codes) and np.isfinite(affine).all()
            and abs(np.linalg.det(rotation)) > 1e-8)


def read_volume(path: PathLike) -> Volume:
    """Reads one 3D NIfTI volume, reoriented to RAS and resampled to isotropic voxels.

    Args:
        path: a `.nii` or `.nii.gz` file holding one 3D volume (a 4D file with one volume is
            accepted).

    Returns:
        The Volume.

    Raises:
        DatasetError: unreadable file, not 3D, or no usable affine; the message names the file.
    """
    import nibabel

    try:
        image = nibabel.load(str(path))
        image = nibabel.funcs.squeeze_image(image)
    except Exception as error:  # nibabel, gzip and zlib raise many types for a broken file
        raise DatasetError(f"{path}: not a readable NIfTI file ({error}); replace or delete it, "
                           f"or pass --skip-bad true to skip unreadable files.") from error
    if len(image.shape) != 3:
        raise DatasetError(f"{path}: has shape {image.shape}; expected one 3D volume per file. "
                           f"Split 4D series into 3D volumes (e.g. fslsplit) first.")
    if not _usable_affine(image):
        raise DatasetError(
            f"{path}: the header has no usable orientation (sform and qform codes are 0, or the "
            f"affine is singular), so its axial direction is unknown. Set the orientation "
            f"(e.g. fslreorient2std, or nibabel's set_sform with the scanner affine) and retry.")
    try:
        canonical = nibabel.as_closest_canonical(image)
        voxels = np.asarray(canonical.dataobj, dtype=np.float32)
    except Exception as error:
        raise DatasetError(f"{path}: the voxels cannot be read ({error}); replace or delete it, "
                           f"or pass --skip-bad true to skip unreadable files.") from error
    if not np.isfinite(voxels).all():
        voxels = np.nan_to_num(voxels, nan=0.0, posinf=0.0, neginf=0.0)
    spacing = np.abs(np.asarray(canonical.header.get_zooms()[:3], dtype=np.float64))
    if not np.isfinite(spacing).all() or (spacing <= 0).any():
        spacing = np.ones(3)
    return Volume(voxels=resample_isotropic(voxels, spacing), spacing=float(spacing.min()),
                  path=str(path))


def resample_isotropic(voxels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Linear resampling of [X, Y, Z] voxels of size `spacing` (mm) to the finest spacing."""
    spacing = np.asarray(spacing, dtype=np.float64)
    factors = spacing / spacing.min()
    if (factors - 1.0).max() <= ISOTROPIC_TOLERANCE:
        return voxels
    from scipy import ndimage

    # n voxels at spacing s span (n - 1) * s mm between the first and last centre: keep that span
    # exactly, so voxel centres land on the finer grid (zoom maps first to first, last to last).
    shape = np.asarray(voxels.shape)
    new_shape = np.round((shape - 1) * factors).astype(int) + 1
    return ndimage.zoom(voxels, new_shape / shape, order=1, mode="nearest",
                        grid_mode=False).astype(np.float32)


def intensity_scale(voxels: np.ndarray) -> float:
    """The 99.5th percentile of the positive voxels (1.0 for an empty volume)."""
    positive = voxels[voxels > 0]
    if positive.size == 0:
        return 1.0
    return float(np.percentile(positive, INTENSITY_PERCENTILE)) or 1.0


def extent(voxels: np.ndarray, axis: int) -> tuple[int, int]:
    """First and last index along `axis` whose slice holds a voxel above 5% of the maximum."""
    maximum = float(voxels.max())
    if maximum <= 0:
        return None
    other_axes = tuple(a for a in range(3) if a != axis)
    filled = np.flatnonzero(voxels.max(axis=other_axes) > EXTENT_THRESHOLD * maximum)
    if filled.size == 0:
        return None
    return int(filled[0]), int(filled[-1])


def head_mask(voxels: np.ndarray, scale: float | None = None) -> np.ndarray:
    """The head in a 2D or 3D array: voxels above HEAD_THRESHOLD of the intensity scale, with
    specks removed by an opening and only the largest connected region kept, so scanner noise and
    labels do not count."""
    from scipy import ndimage

    scale = intensity_scale(voxels) if scale is None else scale
    mask = ndimage.binary_opening(voxels > HEAD_THRESHOLD * scale, iterations=2)
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def _axial_head_area(volume: Volume) -> np.ndarray:
    """mm^2 of head in each axial slice of a Volume."""
    return head_mask(volume.voxels).sum(axis=(0, 1)) * volume.spacing ** 2


def head_top(volume: Volume, area: np.ndarray | None = None) -> int | None:
    """Index of the highest axial slice with at least HEAD_TOP_AREA mm^2 of head, or None."""
    area = _axial_head_area(volume) if area is None else area
    tops = np.flatnonzero(area >= HEAD_TOP_AREA)
    return int(tops[-1]) if tops.size else None


def axial_head_range(volume: Volume, head_range: tuple[float, float] = HEAD_RANGE
                     ) -> tuple[float, float]:
    """(low, high) axial indices of the slice range placed by the head's anatomy.

    The top of the head is the highest axial slice with at least HEAD_TOP_AREA mm^2 of head. The
    head's scale is the depth of its dome: how far below the top its cross-section first reaches
    DOME_AREA of its largest area within HEAD_SPAN mm of the top (about 45 mm on IXI, 57 mm on
    OASIS-1, whose atlas registration stretches heads vertically). The range runs from
    `head_range[1]` dome depths below the top (low, inferior) to `head_range[0]` below it (high),
    clipped to the volume.

    Returns:
        (low, high) as floats, or None when the volume holds no head.
    """
    area = _axial_head_area(volume)
    top = head_top(volume, area)
    if top is None:
        return None
    first = max(top - int(round(HEAD_SPAN / volume.spacing)), 0)
    below_top = area[first:top + 1][::-1]  # from the top down
    dome = int(np.flatnonzero(below_top >= DOME_AREA * below_top.max())[0])
    dome = max(dome, 1)  # in voxels
    low = top - head_range[1] * dome
    high = top - head_range[0] * dome
    return float(max(low, 0.0)), float(max(high, 0.0))


def upright(voxels: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice `index` along RAS `axis`, turned upright (see the module docstring)."""
    # Basic indexing, then a copy: np.take along an axis of nibabel's Fortran-ordered voxels
    # is about a thousand times slower (45 ms a slice of the MNI template).
    plane = np.array(voxels[(slice(None),) * axis + (int(index),)])  # the other axes, RAS order
    image = np.flipud(plane.T)  # second remaining axis (A or S) up, first (R or A) to the right
    if axis == SLICE_AXES["sagittal"]:
        image = np.fliplr(image)  # anterior on the left
    return image


def head_box(images: np.ndarray, scale: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the head in a stack of upright [N, H, W] slices, with margin.

    The head is `head_mask` of the slices' maximum projection.
    """
    height, width = images.shape[1:]
    rows, cols = np.nonzero(head_mask(images.max(axis=0), scale))
    if rows.size == 0:
        return 0, height, 0, width
    margin = int(round(CROP_MARGIN * max(np.ptp(rows) + 1, np.ptp(cols) + 1)))
    return (max(int(rows.min()) - margin, 0), min(int(rows.max()) + 1 + margin, height),
            max(int(cols.min()) - margin, 0), min(int(cols.max()) + 1 + margin, width))


def cut_slices(volume: Volume, count: int, axis: str = "axial", crop: bool = True,
               slice_range: tuple[float, float] = SLICE_RANGE) -> VolumeSlices:
    """Cuts up to `count` distinct slices: axial ones over the head's range (axial_head_range),
    coronal and sagittal ones over `slice_range` of the non-empty extent.

    Args:
        volume: a Volume from `read_volume` (RAS, isotropic).
        count: slices wanted.
        axis: "axial", "coronal" or "sagittal".
        crop: crop every slice to the volume's head box (with margin).
        slice_range: (start, stop) fractions of the non-empty extent along a coronal or
            sagittal axis.

    Returns:
        VolumeSlices, images scaled by the volume's 99.5th percentile and clipped to [0, 1].

    Raises:
        DatasetError: the volume is empty.
    """
    if axis not in SLICE_AXES:
        raise DatasetError(f"slice axis {axis!r}: use one of {', '.join(SLICE_AXES)}.")
    axis_index = SLICE_AXES[axis]
    voxels = volume.voxels
    bounds = extent(voxels, axis_index)
    if bounds is None:
        raise DatasetError(f"{volume.path}: the volume is empty (no voxel above zero); "
                           f"replace or delete it.")
    low, high = bounds
    start, stop = slice_range
    if axis == "axial":
        head = axial_head_range(volume)
        if head is not None:
            (low, high), (start, stop) = head, (0.0, 1.0)
    if count == 1:
        positions = np.array([low + 0.5 * (start + stop) * (high - low)])
    else:
        positions = np.linspace(low + start * (high - low), low + stop * (high - low), count)
    # Each slice once: positions that round to the same slice merge, at their mean ordinal.
    indices, merged = np.unique(positions.round().astype(int), return_inverse=True)
    ordinals = np.arange(count) / max(count - 1, 1) if count > 1 else np.full(1, 0.5)
    fractions = np.bincount(merged, weights=ordinals) / np.bincount(merged)
    scale = intensity_scale(voxels)
    images = np.stack([upright(voxels, axis_index, index) for index in indices])
    if crop:
        top, bottom, left, right = head_box(images, scale)
        images = images[:, top:bottom, left:right]
    images = np.clip(images / scale, 0.0, 1.0).astype(np.float32)
    return VolumeSlices(images=images, fractions=fractions, indices=indices, requested=count)


def _fixed_box(images: np.ndarray, scale: float, side: int) -> np.ndarray:
    """`images` [N, H, W] cut to a `side` x `side` box centred on their head box (zeros where
    the box leaves the frame)."""
    top, bottom, left, right = head_box(images, scale)
    centre_row, centre_column = (top + bottom) // 2, (left + right) // 2
    count, height, width = images.shape
    boxed = np.zeros((count, side, side), np.float32)
    row0, column0 = centre_row - side // 2, centre_column - side // 2
    rows = slice(max(row0, 0), min(row0 + side, height))
    columns = slice(max(column0, 0), min(column0 + side, width))
    boxed[:, rows.start - row0:rows.stop - row0, columns.start - column0:columns.stop - column0] = \
        images[:, rows, columns]
    return boxed


def cut_stack(volume: Volume, count: int, spacing: float, field_of_view: float
              ) -> VolumeSlices:
    """Up to `count` axial slices `spacing` mm apart, the highest STACK_TOP_OFFSET mm below the
    top of the head (`head_top`), each interpolated (linear) between the two nearest voxel
    slices and cut to a square `field_of_view` mm wide centred on the head.

    Slice k of the full stack, counted from its bottom, gets fraction k / (count - 1), so with
    num_slice_positions = count its position is k, the same depth below the top of the head in
    every subject. Slices that would lie below the volume are left out (the stack then starts
    higher; `requested` says how many were asked for).

    Returns:
        VolumeSlices, images [N, F, F] (F = field_of_view / volume.spacing voxels), bottom first,
        scaled by the volume's 99.5th percentile and clipped to [0, 1].

    Raises:
        DatasetError: the volume holds no head.
    """
    voxels = volume.voxels
    top = head_top(volume)
    if top is None:
        raise DatasetError(f"{volume.path}: no head found (no axial slice holds "
                           f"{HEAD_TOP_AREA:.0f} mm^2 above {HEAD_THRESHOLD:.0%} of the intensity "
                           f"scale); replace or delete it.")
    depths = STACK_TOP_OFFSET + spacing * np.arange(count)[::-1]  # mm below the top, bottom first
    positions = top - depths / volume.spacing
    kept = positions >= 0
    if not kept.any():
        raise DatasetError(f"{volume.path}: the head's top lies within {STACK_TOP_OFFSET:g} mm "
                           f"of the volume's lowest slice, so no slice of a stack fits; "
                           f"replace or delete it.")
    positions, ordinals = positions[kept], np.flatnonzero(kept)
    lower = np.floor(positions).astype(int)
    upper = np.minimum(lower + 1, voxels.shape[2] - 1)
    weight = (positions - lower)[:, None, None]
    axis = SLICE_AXES["axial"]
    images = np.stack([upright(voxels, axis, index) for index in lower]) * (1 - weight) \
        + np.stack([upright(voxels, axis, index) for index in upper]) * weight
    scale = intensity_scale(voxels)
    side = max(int(round(field_of_view / volume.spacing)), 1)
    images = np.clip(_fixed_box(images, scale, side) / scale, 0.0, 1.0).astype(np.float32)
    return VolumeSlices(images=images, fractions=ordinals / max(count - 1, 1),
                        indices=np.round(positions).astype(int), requested=count)


def stack_affine(image_size: int, field_of_view: float, spacing: float) -> np.ndarray:
    """The RAS affine of a stack written by `write_stack`: pixels field_of_view / image_size mm
    wide, slices `spacing` mm apart, centred on the origin."""
    pixel = field_of_view / image_size
    affine = np.diag([pixel, pixel, spacing, 1.0])
    affine[:3, 3] = -np.array([pixel * (image_size - 1), pixel * (image_size - 1), 0.0]) / 2
    return affine


def stack_to_voxels(stack: np.ndarray) -> np.ndarray:
    """Upright axial slices [S, H, W] (bottom first) -> voxels [X, Y, Z] in RAS order: the
    inverse of `upright` along the axial axis."""
    stack = np.asarray(stack, np.float32)
    return np.ascontiguousarray(np.flip(stack, axis=1).transpose(2, 1, 0))


def write_stack(path: PathLike, stack: np.ndarray, field_of_view: float, spacing: float
                ) -> PathLike:
    """Writes upright axial slices [S, H, W] (bottom first, values in [0, 1]) as a NIfTI volume
    [W, H, S] in RAS order with `stack_affine` (sform and qform set, code 1: scanner)."""
    import nibabel

    stack = np.asarray(stack, np.float32)
    image = nibabel.Nifti1Image(stack_to_voxels(stack),
                                stack_affine(stack.shape[2], field_of_view, spacing))
    image.set_sform(image.affine, code=1)
    image.set_qform(image.affine, code=1)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, str(path))
    return path
