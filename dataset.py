"""Brain MRI slices for the VQ-VAE and its prior: loading, checking, splitting, tf.data pipelines.

Layouts that `load_splits` recognises in `data_dir`:

* OASIS PNG slices: `keras_png_slices_{train,validate,test}/case_NNN_slice_S.nii.png`
  (the `keras_png_slices_seg_*` label folders are ignored).
* NIfTI volumes: a folder of 3D `.nii` / `.nii.gz` files, one subject each; central axial slices
  are cut from every volume and subjects (never slices) are split into train/validate/test.
* NIfTI slices: `keras_slices_{train,validate,test}/` folders of 2D `.nii` / `.nii.gz` files,
  one slice each (the hip MRI layout).
* No folder at all: the embedded MNI152 template (`DEMO_VOLUME`) cut into an augmented demo set.

Every image is float32 [H, W, 1] in [0, 1]. Bad input raises `DatasetError`, whose message names
the file or folder and says how to fix it; `skip_bad=True` skips unreadable files instead.
"""
import concurrent.futures
import dataclasses
import math
import os
import pathlib
import re
import sys

import numpy as np
from PIL import Image

import volumes
from errors import DatasetError  # noqa: F401  (part of this module's interface)
from hyperparameters import DEFAULTS
from progress import Progress

DEMO_VOLUME = (pathlib.Path(__file__).resolve().parent / "data" / "mni152"
               / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")

SPLITS = ("train", "validate", "test")
OASIS_PNG_FOLDERS = {split: f"keras_png_slices_{split}" for split in SPLITS}
NIFTI_SLICE_FOLDERS = {split: f"keras_slices_{split}" for split in SPLITS}
PNG_EXTENSIONS = (".png",)
NIFTI_EXTENSIONS = (".nii", ".nii.gz")

# "case_012_slice_7.nii.png", also "case_004_week_0_slice_3.nii.gz" (hip MRI names).
CASE_SLICE_PATTERN = re.compile(r"case_(\d+)(?:_[A-Za-z]+_\d+)*_slice_(\d+)", re.IGNORECASE)

DEMO_SLICE_RANGE = (0.20, 0.80)
DEMO_VALIDATE_BAND = (0.45, 0.52)  # fractions of the demo slice range
DEMO_TEST_BAND = (0.60, 0.67)
DEMO_GAP_SLICES = 2  # slices left out between a held-out band and the training slices
PROGRESS_MIN_FILES = 2000  # folders at least this large show progress on stderr




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

    def __len__(self):
        return len(self.images)

    def take(self, indices) -> "SliceSet":
        """Returns the subset at `indices` (integer indices or a boolean mask)."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = indices.astype(np.int64).reshape(-1)
        return SliceSet(images=self.images[indices], slice_index=self.slice_index[indices],
                        case_id=self.case_id[indices],
                        paths=[self.paths[i] for i in indices], skipped=list(self.skipped))

    @staticmethod
    def join(sets) -> "SliceSet":
        """One SliceSet holding the slices of every set in `sets` (a non-empty list), in order."""
        return SliceSet(images=np.concatenate([s.images for s in sets]),
                        slice_index=np.concatenate([s.slice_index for s in sets]),
                        case_id=np.concatenate([s.case_id for s in sets]),
                        paths=[path for s in sets for path in s.paths],
                        skipped=[path for s in sets for path in s.skipped])


def _empty_slice_set(image_size, skipped=()):
    return SliceSet(images=np.zeros((0, image_size, image_size, 1), np.float32),
                    slice_index=np.zeros(0, np.int32), case_id=np.zeros(0, np.int32),
                    paths=[], skipped=list(skipped))


def _concatenate(parts, image_size, skipped=()):
    """One SliceSet from a list of (image [S, S], slice_index, case_id, path) tuples."""
    if not parts:
        return _empty_slice_set(image_size, skipped)
    return SliceSet(images=np.stack([part[0] for part in parts])[..., None].astype(np.float32),
                    slice_index=np.array([part[1] for part in parts], np.int32),
                    case_id=np.array([part[2] for part in parts], np.int32),
                    paths=[part[3] for part in parts], skipped=list(skipped))


# --- names and folders ---------------------------------------------------------------------------

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


def _check_folder(folder, what="data folder"):
    folder = pathlib.Path(folder)
    if not folder.exists():
        raise DatasetError(f"{what} {folder} does not exist: check the path (--data-dir), "
                           f"or download/extract the data there.")
    if not folder.is_dir():
        raise DatasetError(f"{folder} is a file, not a folder: pass the folder that holds the "
                           f"data (--data-dir), not a single file.")
    return folder


def _has_extension(path, extensions):
    return path.name.lower().endswith(extensions)


def _list_files(folder, extensions):
    """Visible files in `folder` with one of `extensions`; other files are ignored."""
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and not path.name.startswith(".")
                  and _has_extension(path, extensions))


def _order_by_case_slice(paths, num_slice_positions):
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


def _report_skipped(skipped, total, folder):
    """Prints the skip summary, or raises when nothing in the folder could be read."""
    if not skipped:
        return
    first_path, first_reason = skipped[0]
    if len(skipped) == total:
        raise DatasetError(f"no readable files in {folder}: all {total} failed "
                           f"(first: {first_reason}); replace or re-extract the data.")
    print(f"skipped {len(skipped)} unreadable file(s) in {folder} (first: {first_path.name})",
          file=sys.stderr)


# --- images --------------------------------------------------------------------------------------

def _square_resize(image, image_size):
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


def _read_png(path, image_size):
    """One PNG as float32 [S, S] in [0, 1]; DatasetError if it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.load()  # decode everything now, so truncated files fail here
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG: full 0..65535 range
                pixels = np.asarray(image, dtype=np.float32) / 65535.0
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: not a readable image ({error}); replace or delete the file, "
                           f"or pass --skip-bad true to skip unreadable files.") from error
    if pixels.ndim != 2:
        raise DatasetError(f"{path}: unexpected image shape {pixels.shape}; save it as a "
                           f"grayscale or RGB PNG.")
    return _square_resize(np.clip(pixels, 0.0, 1.0), image_size)


def _read_png_or_error(path, image_size):
    try:
        return _read_png(path, image_size), None
    except DatasetError as error:
        return None, str(error)


def load_png_folder(folder, image_size, skip_bad=False,
                    num_slice_positions=DEFAULTS["num_slice_positions"]) -> SliceSet:
    """Loads every `.png` in one folder (other files are ignored).

    Args:
        folder: folder of `case_NNN_slice_S.nii.png` files.
        image_size: side of the square output images.
        skip_bad: skip unreadable PNGs (recorded in `skipped`) instead of raising.
        num_slice_positions: slice numbers are clipped to num_slice_positions - 1.

    Returns:
        A SliceSet sorted by case then slice.

    Raises:
        DatasetError: missing folder, no PNGs, an unreadable PNG (unless skip_bad), or all bad.
    """
    folder = _check_folder(folder)
    files = _list_files(folder, PNG_EXTENSIONS)
    if not files:
        raise DatasetError(f"no PNG images in {folder}: put the case_NNN_slice_S.nii.png "
                           f"slices there, or point --data-dir at the right folder.")
    ordered = _order_by_case_slice(files, num_slice_positions)
    images = np.empty((len(ordered), image_size, image_size, 1), np.float32)
    kept, skipped = [], []
    show_progress = len(ordered) >= PROGRESS_MIN_FILES
    if show_progress:
        print(f"loading {len(ordered)} images from {folder} ...", file=sys.stderr, flush=True)
    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda item: _read_png_or_error(item[0], image_size), ordered)
        try:
            for number, (item, (pixels, error)) in enumerate(zip(ordered, results), start=1):
                if error is not None:
                    if not skip_bad:
                        raise DatasetError(error)
                    skipped.append((item[0], error))
                else:
                    images[len(kept), ..., 0] = pixels
                    kept.append(item)
                if show_progress and number % max(1, len(ordered) // 10) == 0:
                    print(f"  {number}/{len(ordered)}", file=sys.stderr, flush=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    _report_skipped(skipped, len(ordered), folder)
    return SliceSet(images=images[:len(kept)],
                    slice_index=np.array([item[1] for item in kept], np.int32),
                    case_id=np.array([item[2] for item in kept], np.int32),
                    paths=[str(item[0]) for item in kept],
                    skipped=[str(path) for path, _ in skipped])


def load_oasis_png(root, image_size, skip_bad=False,
                   num_slice_positions=DEFAULTS["num_slice_positions"]) -> dict:
    """Loads the OASIS PNG layout (`keras_png_slices_{train,validate,test}` under `root`).

    Args:
        root: folder holding the three split folders (`keras_png_slices_seg_*` are ignored).
        image_size: side of the square output images.
        skip_bad: skip unreadable PNGs instead of raising.
        num_slice_positions: slice numbers are clipped to num_slice_positions - 1.

    Returns:
        {"train", "validate", "test"} -> SliceSet.

    Raises:
        DatasetError: a split folder is missing, empty, or holds an unreadable PNG.
    """
    root = _check_folder(root)
    missing = [name for name in OASIS_PNG_FOLDERS.values() if not (root / name).is_dir()]
    if missing:
        raise DatasetError(f"{root} lacks {', '.join(missing)}: the OASIS layout needs "
                           f"{', '.join(OASIS_PNG_FOLDERS.values())} side by side; "
                           f"extract the full download there.")
    return {split: load_png_folder(root / name, image_size, skip_bad=skip_bad,
                                   num_slice_positions=num_slice_positions)
            for split, name in OASIS_PNG_FOLDERS.items()}


# --- NIfTI ---------------------------------------------------------------------------------------

def _read_nifti(path):
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


def _volume_slices(path, image_size, slices_per_volume, num_slice_positions, case_id,
                   slice_axis="axial", crop=True):
    """Slices of one 3D volume (volumes.py) as (image, slice_index, case_id, path) tuples.

    Returns:
        (parts, note): note is None, or a phrase saying the volume gave fewer slices than asked.
    """
    cut = volumes.cut_slices(volumes.read_volume(path), slices_per_volume, axis=slice_axis,
                             crop=crop)
    parts = [(_square_resize(image, image_size),
              int(round(fraction * (num_slice_positions - 1))), case_id,
              f"{path}:{slice_axis}={index}")
             for image, fraction, index in zip(cut.images, cut.fractions, cut.indices)]
    note = None
    if len(cut.images) < cut.requested:
        note = f"{len(cut.images)} distinct {slice_axis} slices instead of {cut.requested}"
    return parts, note


def _position_to_index(position, count, num_slice_positions):
    """Ordinal position 0..count-1 -> slice index 0..num_slice_positions-1."""
    if count <= 1:
        return (num_slice_positions - 1) // 2
    return int(round(position * (num_slice_positions - 1) / (count - 1)))


def _slice_image(path, voxels, image_size):
    """One 2D NIfTI slice, upright, min-max scaled to [0, 1], square and resized."""
    low, high = float(voxels.min()), float(voxels.max())
    scaled = (voxels - low) / (high - low) if high > low else np.zeros_like(voxels)
    return _square_resize(np.flipud(scaled.T), image_size)  # upright, as volumes.upright


def _nifti_files(folder):
    files = _list_files(folder, NIFTI_EXTENSIONS)
    if not files:
        raise DatasetError(f"no .nii or .nii.gz files in {folder}: put the NIfTI files there, "
                           f"or point --data-dir at the right folder.")
    return files


def _load_nifti_slice_folder(folder, image_size, skip_bad, num_slice_positions):
    """A folder of 2D NIfTI slices (one slice per file) as one SliceSet."""
    files = _nifti_files(folder)
    parts, skipped = [], []
    for path, slice_index, case_id in _order_by_case_slice(files, num_slice_positions):
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
    _report_skipped(skipped, len(files), folder)
    return _concatenate(parts, image_size, [str(path) for path, _ in skipped])


def _split_counts(count, split):
    """Cases per split: fractions rounded, >= 1 train, >= 1 validate and test from 3 cases."""
    fractions = np.asarray(split, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions.sum() <= 0:
        raise DatasetError(f"split={split!r}: give three non-negative fractions for "
                           f"(train, validate, test), e.g. (0.8, 0.1, 0.1).")
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


def _split_by_case(parts, image_size, split, seed, skipped, folder, what="volumes"):
    """Assigns whole cases to train/validate/test: sorted case ids, shuffled with `seed`.

    Raises:
        DatasetError: fewer than three cases, or a split that would be left without one.
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
    counts = _split_counts(len(cases), split)
    if min(counts) == 0:
        raise DatasetError(f"{folder}: --split {format_split(split)} leaves a split without "
                           f"subjects ({len(cases)} subjects -> {counts[0]} train / {counts[1]} "
                           f"validate / {counts[2]} test); give every split a positive share.")
    train_count, validate_count, _ = counts
    assigned = {"train": set(shuffled[:train_count]),
                "validate": set(shuffled[train_count:train_count + validate_count]),
                "test": set(shuffled[train_count + validate_count:])}
    return {name: _concatenate([part for part in parts if part[2] in members], image_size,
                               skipped)
            for name, members in assigned.items()}


def parse_split(text):
    """"125,20,20" or "0.8,0.1,0.1" -> (train, validate, test) shares; DatasetError if malformed."""
    try:
        shares = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or not all(math.isfinite(share) and share > 0 for share in shares):
        raise DatasetError(f"--split {text!r}: give three positive shares for train, validate "
                           f"and test, e.g. 0.8,0.1,0.1 or 125,20,20 (subject counts).")
    return shares


def format_split(split):
    return ",".join(f"{share:g}" for share in split)


def _nifti_dimensions(path):
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


def load_nifti_folder(folder, image_size, slices_per_volume=DEFAULTS["slices_per_volume"],
                      split=None, seed=DEFAULTS["seed"], skip_bad=False,
                      num_slice_positions=DEFAULTS["num_slice_positions"],
                      slice_axis=DEFAULTS["slice_axis"], crop=DEFAULTS["crop_to_head"]) -> dict:
    """Loads NIfTI data: 3D volumes (split by case) or the keras_slices_* 2D slice layout.

    A flat folder of 3D volumes is read as `volumes.py` describes: reoriented to RAS by its
    affine, resampled to isotropic voxels, `slices_per_volume` slices along `slice_axis` spread
    over 30%..75% of the non-empty extent (fewer, each once, where the axis is coarser; a warning
    says so), cropped to the head, scaled by the 99.5th percentile of positive voxels. Each volume
    is one case, and cases are assigned to splits by `split`. A flat folder of 2D slices is split
    the same way by the case numbers in the names. With `keras_slices_{train,validate,test}`
    folders, those splits are used as they are and each slice is min-max scaled.

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

    Returns:
        {"train", "validate", "test"} -> SliceSet.

    Raises:
        DatasetError: missing or empty folder, an unreadable or 4D file, a volume without a usable
            affine, mixed 2D and 3D files, fewer than three subjects.
    """
    folder = _check_folder(folder)
    if any((folder / name).is_dir() for name in NIFTI_SLICE_FOLDERS.values()):
        missing = [name for name in NIFTI_SLICE_FOLDERS.values() if not (folder / name).is_dir()]
        if missing:
            raise DatasetError(f"{folder} lacks {', '.join(missing)}: the NIfTI slice layout "
                               f"needs {', '.join(NIFTI_SLICE_FOLDERS.values())} side by side.")
        return {split_name: _load_nifti_slice_folder(folder / name, image_size, skip_bad,
                                                     num_slice_positions)
                for split_name, name in NIFTI_SLICE_FOLDERS.items()}
    if slices_per_volume < 1:
        raise DatasetError(f"slices_per_volume={slices_per_volume}: need at least 1.")
    split = parse_split(DEFAULTS["split"]) if split is None else split
    files = _nifti_files(folder)
    parts_3d, parts_2d, skipped, fewer = [], [], [], []
    progress = Progress(len(files), f"reading {len(files)} NIfTI files in {folder}")
    for case_id, path in enumerate(files, start=1):
        try:
            if _nifti_dimensions(path) == 3:
                parts, note = _volume_slices(path, image_size, slices_per_volume,
                                             num_slice_positions, case_id, slice_axis, crop)
                parts_3d += parts
                if note:
                    fewer.append((path, note))
            else:
                parts_2d.append((path, _read_nifti(path)))
        except DatasetError as error:
            if not skip_bad:
                raise
            skipped.append((path, str(error)))
        progress.step()
    progress.close()
    _report_skipped(skipped, len(files), folder)
    if fewer:
        print(f"warning: {len(fewer)} of {len(files)} volume(s) in {folder} have fewer distinct "
              f"{slice_axis} slices in the central range than --slices-per-volume "
              f"{slices_per_volume} (first: {fewer[0][0].name}, {fewer[0][1]}); each slice is "
              f"used once, none is repeated.", file=sys.stderr)
    skipped_paths = [str(path) for path, _ in skipped]
    if parts_3d and parts_2d:
        raise DatasetError(f"{folder} mixes 3D volumes and 2D slices (e.g. {parts_2d[0][0].name}); "
                           f"keep one kind per folder.")
    if parts_2d:
        voxels_by_path = dict(parts_2d)
        parts = [(_slice_image(path, voxels_by_path[path], image_size), slice_index, case_id,
                  str(path))
                 for path, slice_index, case_id in _order_by_case_slice(list(voxels_by_path),
                                                                        num_slice_positions)]
        return _split_by_case(parts, image_size, split, seed, skipped_paths, folder,
                              what="subjects")
    return _split_by_case(parts_3d, image_size, split, seed, skipped_paths, folder)


def flip_and_shift(images, copies, max_shift, seed=0):
    """Augmented copies of slices for the prior's code grids: left-right flips and small shifts.

    Copy 1 of every slice is its mirror image; each further copy is shifted by a random whole
    number of pixels in [-max_shift, max_shift] along each axis (zero fill, no wrap-around) and
    mirrored with probability 1/2. A brain is close to left-right symmetric and its position in
    the frame varies between scans, so both give plausible slices with the same slice position.

    Args:
        images: [N, S, S, 1] float images.
        copies: number of augmented copies of each image.
        max_shift: largest shift in pixels.
        seed: seed of the shifts and flips.

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
            out = np.zeros_like(image)
            source = image[:, ::-1] if flip else image
            out[max(shift_y, 0):size_y + min(shift_y, 0),
                max(shift_x, 0):size_x + min(shift_x, 0)] = \
                source[max(-shift_y, 0):size_y + min(-shift_y, 0),
                       max(-shift_x, 0):size_x + min(-shift_x, 0)]
            augmented.append(out)
    return np.stack(augmented) if augmented else images[:0]


# --- embedded demo -------------------------------------------------------------------------------

def _augment(image, rng):
    """A randomly jittered copy: small rotation/scale/shift, then gain and gamma."""
    from scipy import ndimage

    size = image.shape[0]
    angle = np.deg2rad(rng.uniform(-6.0, 6.0))
    scale = rng.uniform(0.93, 1.07)
    shift = rng.uniform(-0.04, 0.04, size=2) * size
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotation / scale  # output pixel -> input pixel
    centre = np.array([(size - 1) / 2.0, (size - 1) / 2.0])
    offset = centre - matrix @ centre - shift
    warped = ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="constant",
                                      cval=0.0)
    gain = rng.uniform(0.9, 1.1)
    gamma = rng.uniform(0.85, 1.15)
    return np.clip(gain * np.clip(warped, 0.0, 1.0) ** gamma, 0.0, 1.0).astype(np.float32)


def load_demo(image_size, copies=DEFAULTS["demo_copies"], seed=DEFAULTS["seed"],
              num_slice_positions=DEFAULTS["num_slice_positions"]) -> dict:
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
            image = _square_resize(np.clip(upright / scale, 0.0, 1.0), image_size)
            index = _position_to_index(z - first, len(zs), num_slice_positions)
            path = f"{DEMO_VOLUME}:axial={z}"
            parts.append((image, index, 0, path))
            if augmented:
                parts += [(_augment(image, rng), index, 0, path) for _ in range(copies)]
        splits[name] = _concatenate(parts, image_size)
    return splits


# --- layout detection ----------------------------------------------------------------------------

def _counts(splits):
    return " / ".join(f"{len(splits[name])} {name}" for name in SPLITS)


def load_splits(data_dir, image_size, *, slices_per_volume=DEFAULTS["slices_per_volume"],
                num_slice_positions=DEFAULTS["num_slice_positions"],
                demo_copies=DEFAULTS["demo_copies"], seed=DEFAULTS["seed"],
                skip_bad=DEFAULTS["skip_bad"], slice_axis=DEFAULTS["slice_axis"], split=None,
                crop=DEFAULTS["crop_to_head"]) -> tuple[dict, str]:
    """Detects the layout of `data_dir` and loads train/validate/test.

    Args:
        data_dir: OASIS PNG root, NIfTI folder or NIfTI slice layout; when it does not exist,
            the embedded MNI152 demo dataset is used.
        image_size: side of the square output images.
        slices_per_volume: slices per 3D NIfTI volume (at most).
        num_slice_positions: size of the slice-index vocabulary.
        demo_copies: augmented copies per demo training slice.
        seed: seed of the case split and of the demo augmentation.
        skip_bad: skip unreadable files instead of raising.
        slice_axis: axis NIfTI volumes are cut along: "axial", "coronal" or "sagittal".
        split: (train, validate, test) shares of the subjects of a NIfTI folder (None: the
            --split default).
        crop: crop the slices of each NIfTI volume to its head box.

    Returns:
        (splits, description): {"train", "validate", "test"} -> SliceSet, and one line saying
        what was loaded.

    Raises:
        DatasetError: data_dir is a file, holds no known layout, or holds bad files.
    """
    root = pathlib.Path(data_dir)
    size = f"{image_size}x{image_size}"
    if not root.exists():
        splits = load_demo(image_size, copies=demo_copies, seed=seed,
                           num_slice_positions=num_slice_positions)
        return splits, (f"no OASIS data at {data_dir}: using the embedded MNI152 demo dataset "
                        f"({_counts(splits)} slices, {size})")
    _check_folder(root)
    if any((root / name).is_dir() for name in OASIS_PNG_FOLDERS.values()):
        splits = load_oasis_png(root, image_size, skip_bad=skip_bad,
                                num_slice_positions=num_slice_positions)
        return splits, f"OASIS PNG slices from {root}: {_counts(splits)}, {size}"
    nifti_slices = any((root / name).is_dir() for name in NIFTI_SLICE_FOLDERS.values())
    if nifti_slices or any(_list_files(root, NIFTI_EXTENSIONS)):
        splits = load_nifti_folder(root, image_size, slices_per_volume=slices_per_volume,
                                   split=split, seed=seed, skip_bad=skip_bad,
                                   num_slice_positions=num_slice_positions,
                                   slice_axis=slice_axis, crop=crop)
        kind = "NIfTI slices" if nifti_slices else "NIfTI volumes"
        cases = len({int(case) for split in splits.values() for case in split.case_id})
        return splits, f"{kind} from {root} ({cases} cases): {_counts(splits)}, {size}"
    hint = ""
    if any(_list_files(root, PNG_EXTENSIONS)):
        hint = (" It holds PNG files directly: point --data-dir at the folder above the "
                "keras_png_slices_* split folders.")
    else:
        nested = [child for child in sorted(root.iterdir()) if child.is_dir()
                  and (child / OASIS_PNG_FOLDERS["train"]).is_dir()]
        if nested:
            hint = f" The OASIS layout is one level down: use --data-dir {nested[0]}."
    raise DatasetError(
        f"{root} holds no known data layout. Expected one of: the OASIS PNG layout "
        f"({', '.join(OASIS_PNG_FOLDERS.values())}); a folder of 3D .nii/.nii.gz volumes; "
        f"or 2D NIfTI slices in {', '.join(NIFTI_SLICE_FOLDERS.values())}. Or remove the folder "
        f"to use the embedded demo dataset.{hint}")


def load_splits_for(values):
    """`load_splits` with the data settings of a hyperparameters dict (hyperparameters.py)."""
    return load_splits(values["data_dir"], values["image_size"],
                       slices_per_volume=values["slices_per_volume"],
                       num_slice_positions=values["num_slice_positions"],
                       demo_copies=values["demo_copies"], seed=values["seed"],
                       skip_bad=values["skip_bad"], slice_axis=values["slice_axis"],
                       split=parse_split(values["split"]), crop=values["crop_to_head"])


# --- tf.data -------------------------------------------------------------------------------------

def make_tf_dataset(slices: SliceSet, batch_size, shuffle=True, seed=DEFAULTS["seed"],
                    with_slice_index=False, drop_remainder=False, repeat=False):
    """A tf.data pipeline over a SliceSet: shuffle -> repeat -> batch -> prefetch.

    Args:
        slices: the SliceSet to iterate.
        batch_size: images per batch.
        shuffle: shuffle over the whole set, reshuffled every epoch (seeded).
        seed: shuffle seed.
        with_slice_index: yield (images, slice_index) pairs instead of images.
        drop_remainder: drop the last partial batch (needed for fixed-shape distribution).
        repeat: repeat forever.

    Returns:
        tf.data.Dataset of float32 [B, H, W, 1] images, or (images, int32 [B] slice_index).
    """
    import tensorflow as tf

    images = np.asarray(slices.images, dtype=np.float32)
    if with_slice_index:
        data = tf.data.Dataset.from_tensor_slices(
            (images, np.asarray(slices.slice_index, dtype=np.int32)))
    else:
        data = tf.data.Dataset.from_tensor_slices(images)
    # No .cache(): the source already is an in-memory tensor, a cache would only copy it again.
    if shuffle:
        data = data.shuffle(max(1, len(images)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        data = data.repeat()
    return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
