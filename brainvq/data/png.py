"""Slices stored as PNG files: one folder, or the OASIS layout of three split folders
(`keras_png_slices_{train,validate,test}/case_NNN_slice_S.nii.png`). 8-bit, RGB and 16-bit
images load as float32 in [0, 1]; 16-bit ones are scaled by the bit depth their data use."""
from __future__ import annotations

import concurrent.futures
import os
import pathlib
import sys

import numpy as np
from PIL import Image

from brainvq.config import DEFAULTS
from brainvq.data.slice_sets import (
    SPLITS,
    SliceSet,
    check_folder,
    list_files,
    order_by_case_slice,
    report_skipped,
    square_resize,
)
from brainvq.errors import DatasetError
from brainvq.hints import PathLike

OASIS_PNG_FOLDERS = {split: f"keras_png_slices_{split}" for split in SPLITS}


PNG_EXTENSIONS = (".png",)


PROGRESS_MIN_FILES = 2000  # folders at least this large show progress on stderr


def _read_png(path: pathlib.Path, image_size: int) -> tuple[np.ndarray, float | None]:
    """One PNG, square and resized, in [0, 1]: (pixels [S, S] float32, peak). 8-bit and RGB
    images come with peak None; a 16-bit image comes divided by 65535, with its largest stored
    value as peak, so that its folder can be rescaled by the bit depth its data use
    (`_scale_16_bit`). DatasetError if it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.load()  # decode everything now, so truncated files fail here
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG
                pixels = np.asarray(image, dtype=np.float32)
                peak = float(pixels.max()) if pixels.size else 0.0
                pixels = pixels / 65535.0
            else:
                pixels, peak = np.asarray(image.convert("L"), dtype=np.float32) / 255.0, None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: not a readable image ({error}); replace or delete the file, "
                           f"or pass --skip-bad true to skip unreadable files.") from error
    if pixels.ndim != 2:
        raise DatasetError(f"{path}: unexpected image shape {pixels.shape}; save it as a "
                           f"grayscale or RGB PNG.")
    return square_resize(np.clip(pixels, 0.0, 1.0), image_size), peak


def _read_png_or_error(path: pathlib.Path, image_size: int
                       ) -> tuple[tuple[np.ndarray, float | None] | None, str | None]:
    try:
        return _read_png(path, image_size), None
    except DatasetError as error:
        return (None, None), str(error)


def _scale_16_bit(images: np.ndarray, peaks: np.ndarray, folder: PathLike) -> None:
    """Scales the 16-bit images of a folder (in place) by the bit depth their data use: 12-bit
    scanner data stored in 16-bit PNGs (values up to 4095) are divided by 4095, not 65535,
    which would leave them near black. Says what it assumed when that is not 16 bits."""
    if not peaks:
        return
    peak = max(peaks.values())
    bits = min(16, max(8, int(np.ceil(np.log2(peak + 1.0)))))
    full_scale = float(2 ** bits - 1)
    for index in peaks:
        images[index] = np.clip(images[index] * (65535.0 / full_scale), 0.0, 1.0)
    if bits < 16:
        print(f"note: the 16-bit PNGs in {folder} hold values up to {peak:.0f}: read as "
              f"{bits}-bit data (divided by {full_scale:.0f}, not 65535)", file=sys.stderr)


def load_png_folder(folder: PathLike, image_size: int, skip_bad: bool = False,
                    num_slice_positions: int = DEFAULTS["num_slice_positions"]) -> SliceSet:
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
    folder = check_folder(folder)
    files = list_files(folder, PNG_EXTENSIONS)
    if not files:
        raise DatasetError(f"no PNG images in {folder}: put the case_NNN_slice_S.nii.png "
                           f"slices there, or point --data-dir at the right folder.")
    ordered = order_by_case_slice(files, num_slice_positions)
    images = np.empty((len(ordered), image_size, image_size, 1), np.float32)
    kept, skipped, peaks = [], [], {}  # peaks: {index: largest value} of 16-bit images
    show_progress = len(ordered) >= PROGRESS_MIN_FILES
    if show_progress:
        print(f"loading {len(ordered)} images from {folder} ...", file=sys.stderr, flush=True)
    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda item: _read_png_or_error(item[0], image_size), ordered)
        try:
            for number, (item, ((pixels, peak), error)) in enumerate(zip(ordered, results),
                                                                      start=1):
                if error is not None:
                    if not skip_bad:
                        raise DatasetError(error)
                    skipped.append((item[0], error))
                else:
                    if peak is not None:
                        peaks[len(kept)] = peak
                    images[len(kept), ..., 0] = pixels
                    kept.append(item)
                if show_progress and number % max(1, len(ordered) // 10) == 0:
                    print(f"  {number}/{len(ordered)}", file=sys.stderr, flush=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    report_skipped(skipped, len(ordered), folder)
    _scale_16_bit(images, peaks, folder)
    return SliceSet(images=images[:len(kept)],
                    slice_index=np.array([item[1] for item in kept], np.int32),
                    case_id=np.array([item[2] for item in kept], np.int32),
                    paths=[str(item[0]) for item in kept],
                    skipped=[str(path) for path, _ in skipped])


def load_oasis_png(root: PathLike, image_size: int, skip_bad: bool = False,
                   num_slice_positions: int = DEFAULTS["num_slice_positions"]
                   ) -> dict[str, SliceSet]:
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
    root = check_folder(root)
    missing = [name for name in OASIS_PNG_FOLDERS.values() if not (root / name).is_dir()]
    if missing:
        raise DatasetError(f"{root} lacks {', '.join(missing)}: the OASIS layout needs "
                           f"{', '.join(OASIS_PNG_FOLDERS.values())} side by side; "
                           f"extract the full download there.")
    return {split: load_png_folder(root / name, image_size, skip_bad=skip_bad,
                                   num_slice_positions=num_slice_positions)
            for split, name in OASIS_PNG_FOLDERS.items()}
