"""Brain MRI slices for the VQ-VAE and its prior: loading, checking, splitting, input pipelines.

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

This module is the data's public face and holds the PNG loader, the layout detection and the
input pipeline (`tf.data`, or a PyDataset off TensorFlow: `input_pipeline.py`); `slice_sets.py`
holds `SliceSet` and the file-name and folder helpers, `nifti.py` the NIfTI loaders (with
`volumes.py` for one 3D volume), `demo.py` the demo dataset.
"""
import concurrent.futures
import os
import pathlib
import sys

import numpy as np
from PIL import Image

from demo import DEMO_VOLUME, load_demo  # noqa: F401  (part of this module's interface)
from errors import DatasetError, MissingData  # noqa: F401
from hyperparameters import DEFAULTS
from nifti import (NIFTI_EXTENSIONS, NIFTI_SLICE_FOLDERS, load_nifti_folder,  # noqa: F401
                   parse_split)
from slice_sets import (SPLITS, SliceSet, affine_warp, check_folder, list_files,  # noqa: F401
                        order_by_case_slice, parse_case_slice, report_skipped, square_resize)

OASIS_PNG_FOLDERS = {split: f"keras_png_slices_{split}" for split in SPLITS}
PNG_EXTENSIONS = (".png",)
PROGRESS_MIN_FILES = 2000  # folders at least this large show progress on stderr


# --- OASIS PNG slices ----------------------------------------------------------------------------

def _read_png(path, image_size):
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


def _read_png_or_error(path, image_size):
    try:
        return _read_png(path, image_size), None
    except DatasetError as error:
        return (None, None), str(error)


def _scale_16_bit(images, peaks, folder):
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
    root = check_folder(root)
    missing = [name for name in OASIS_PNG_FOLDERS.values() if not (root / name).is_dir()]
    if missing:
        raise DatasetError(f"{root} lacks {', '.join(missing)}: the OASIS layout needs "
                           f"{', '.join(OASIS_PNG_FOLDERS.values())} side by side; "
                           f"extract the full download there.")
    return {split: load_png_folder(root / name, image_size, skip_bad=skip_bad,
                                   num_slice_positions=num_slice_positions)
            for split, name in OASIS_PNG_FOLDERS.items()}


# --- augmentation for the prior ----------------------------------------------------------------

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


# --- layout detection --------------------------------------------------------------------------

def _counts(splits):
    return " / ".join(f"{len(splits[name])} {name}" for name in SPLITS)


def load_splits(data_dir, image_size, *, slices_per_volume=DEFAULTS["slices_per_volume"],
                num_slice_positions=DEFAULTS["num_slice_positions"],
                demo_copies=DEFAULTS["demo_copies"], seed=DEFAULTS["seed"],
                skip_bad=DEFAULTS["skip_bad"], slice_axis=DEFAULTS["slice_axis"], split=None,
                crop=DEFAULTS["crop_to_head"]) -> tuple[dict, str]:
    """Detects the layout of `data_dir` and loads train/validate/test.

    Args:
        data_dir: OASIS PNG root, NIfTI folder or NIfTI slice layout. When it is the default
            (`DEFAULTS["data_dir"]`, no folder named) and does not exist, the embedded MNI152
            demo dataset is used; a named folder that does not exist is an error.
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
        DatasetError: data_dir is a named folder that does not exist, a file, holds no known
            layout, or holds bad files.
    """
    root = pathlib.Path(data_dir)
    size = f"{image_size}x{image_size}"
    layout = data_layout(data_dir)
    if layout == "demo":
        splits = load_demo(image_size, copies=demo_copies, seed=seed,
                           num_slice_positions=num_slice_positions)
        return splits, (f"no OASIS data at {data_dir}: using the embedded MNI152 demo dataset "
                        f"({_counts(splits)} slices, {size})")
    if layout == "png":
        splits = load_oasis_png(root, image_size, skip_bad=skip_bad,
                                num_slice_positions=num_slice_positions)
        return splits, f"OASIS PNG slices from {root}: {_counts(splits)}, {size}"
    splits = load_nifti_folder(root, image_size, slices_per_volume=slices_per_volume,
                               split=split, seed=seed, skip_bad=skip_bad,
                               num_slice_positions=num_slice_positions,
                               slice_axis=slice_axis, crop=crop)
    kind = "NIfTI slices" if layout == "nifti-slices" else "NIfTI volumes"
    cases = len({int(case) for split in splits.values() for case in split.case_id})
    return splits, f"{kind} from {root} ({cases} cases): {_counts(splits)}, {size}"


# Settings that only NIfTI volumes use (cutting, cropping and splitting by subject).
VOLUME_ONLY_KEYS = ("slices_per_volume", "slice_axis", "crop_to_head", "split")


def data_layout(data_dir):
    """Which layout `data_dir` holds: "demo" (the default folder, absent), "png" (the OASIS PNG
    layout), "nifti-slices" (2D NIfTI in keras_slices_*) or "nifti-volumes".

    Raises:
        DatasetError: a named folder that does not exist, a file, or no known layout.
    """
    root = pathlib.Path(data_dir)
    if not root.exists() and str(data_dir) != DEFAULTS["data_dir"]:
        raise MissingData(
            f"data folder {data_dir} does not exist (looked for from {pathlib.Path.cwd()}): "
            f"pass --data-dir with the folder of your data (the embedded demo data is used "
            f"only when no --data-dir is given)")
    if not root.exists():
        return "demo"
    check_folder(root)
    if any((root / name).is_dir() for name in OASIS_PNG_FOLDERS.values()):
        return "png"
    if any((root / name).is_dir() for name in NIFTI_SLICE_FOLDERS.values()):
        return "nifti-slices"
    if any(list_files(root, NIFTI_EXTENSIONS)):
        return "nifti-volumes"
    hint = ""
    if any(list_files(root, PNG_EXTENSIONS)):
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


# --- input pipeline ------------------------------------------------------------------------------

def make_dataset(slices: SliceSet, batch_size, shuffle=True, seed=DEFAULTS["seed"],
                 with_slice_index=False, drop_remainder=False, repeat=False):
    """Batches of a SliceSet for `fit`: shuffle -> repeat -> batch -> prefetch.

    Args:
        slices: the SliceSet to iterate.
        batch_size: images per batch.
        shuffle: shuffle over the whole set, reshuffled every epoch (seeded).
        seed: shuffle seed.
        with_slice_index: yield (images, slice_index) pairs instead of images.
        drop_remainder: drop the last partial batch (needed for fixed-shape distribution).
        repeat: repeat forever.

    Returns:
        float32 [B, H, W, 1] images, or (images, int32 [B] slice_index): a tf.data.Dataset on
        the TensorFlow backend, a keras.utils.PyDataset on JAX or PyTorch (input_pipeline.py).
    """
    import input_pipeline

    images = np.asarray(slices.images, dtype=np.float32)
    structure = (images, np.asarray(slices.slice_index, dtype=np.int32)) if with_slice_index \
        else images
    return input_pipeline.batches(structure, batch_size, shuffle, seed=seed,
                                  drop_remainder=drop_remainder, repeat=repeat)
