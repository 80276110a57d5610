"""Which data a folder holds, and loading it as train / validate / test.

Layouts `load_splits` recognises in `data_dir`:

* OASIS PNG slices: `keras_png_slices_{train,validate,test}/case_NNN_slice_S.nii.png`
  (the `keras_png_slices_seg_*` label folders are ignored).
* NIfTI volumes: a folder of 3D `.nii` / `.nii.gz` files, one subject each; axial slices are cut
  from every volume over the head's range and subjects (never slices) are split.
* NIfTI slices: `keras_slices_{train,validate,test}/` folders of 2D `.nii` / `.nii.gz` files.
* The default folder, absent: the embedded MNI152 template cut into an augmented demo set. A
  named folder that does not exist is an error, never the demo.
"""
from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

from brainvq.config import DEFAULTS
from brainvq.data.demo import load_demo
from brainvq.data.nifti import NIFTI_EXTENSIONS, NIFTI_SLICE_FOLDERS, load_nifti_folder, parse_split
from brainvq.data.png import OASIS_PNG_FOLDERS, PNG_EXTENSIONS, load_oasis_png
from brainvq.data.slice_sets import SPLITS, SliceSet, check_folder, list_files
from brainvq.errors import DatasetError, MissingData
from brainvq.hints import PathLike


def _counts(splits: Mapping[str, SliceSet]) -> str:
    return " / ".join(f"{len(splits[name])} {name}" for name in SPLITS)


def load_splits(data_dir: PathLike, image_size: int, *,
                slices_per_volume: int = DEFAULTS["slices_per_volume"],
                num_slice_positions: int = DEFAULTS["num_slice_positions"],
                demo_copies: int = DEFAULTS["demo_copies"], seed: int = DEFAULTS["seed"],
                skip_bad: bool = DEFAULTS["skip_bad"], slice_axis: str = DEFAULTS["slice_axis"],
                split: Sequence[float] | None = None, crop: bool = DEFAULTS["crop_to_head"],
                slice_spacing: float = DEFAULTS["slice_spacing"],
                field_of_view: float = DEFAULTS["field_of_view"]
                ) -> tuple[dict[str, SliceSet], str]:
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
        slice_spacing, field_of_view: > 0: cut NIfTI volumes as stacks of axial slices this
            many mm apart, each field_of_view mm wide (`load_nifti_folder`).

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
                               slice_axis=slice_axis, crop=crop,
                               slice_spacing=slice_spacing, field_of_view=field_of_view)
    kind = "NIfTI slices" if layout == "nifti-slices" else "NIfTI volumes"
    cases = len({int(case) for split in splits.values() for case in split.case_id})
    return splits, f"{kind} from {root} ({cases} cases): {_counts(splits)}, {size}"


# Settings that only NIfTI volumes use (cutting, cropping and splitting by subject).
VOLUME_ONLY_KEYS = ("slices_per_volume", "slice_axis", "crop_to_head", "split", "slice_spacing",
                    "field_of_view")


def data_layout(data_dir: PathLike) -> str:
    """Which layout `data_dir` holds: "demo" (the default folder, absent), "png" (the OASIS PNG
    layout), "nifti-slices" (2D NIfTI in keras_slices_*) or "nifti-volumes".

    Raises:
        DatasetError: a named folder that does not exist, a file, or no known layout.
    """
    if not str(data_dir).strip():  # a shipped model names its data instead of a folder
        raise MissingData("no data folder: this model records its data by name (its "
                          "MODEL_CARD.md and training_state.json say which); pass --data-dir "
                          "with the folder that holds it")
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
    # Only the default folder, when absent, means the demo: removing a folder named with
    # --data-dir would not bring the demo back.
    demo_hint = (" Or remove the folder to use the embedded demo dataset."
                 if str(data_dir) == DEFAULTS["data_dir"] else "")
    raise DatasetError(
        f"{root} holds no known data layout. Expected one of: the OASIS PNG layout "
        f"({', '.join(OASIS_PNG_FOLDERS.values())}); a folder of 3D .nii/.nii.gz volumes; "
        f"or 2D NIfTI slices in {', '.join(NIFTI_SLICE_FOLDERS.values())}.{demo_hint}{hint}")


def load_splits_for(values: Mapping[str, Any]) -> tuple[dict[str, SliceSet], str]:
    """`load_splits` with the data settings of a hyperparameters dict (hyperparameters.py)."""
    return load_splits(values["data_dir"], values["image_size"],
                       slices_per_volume=values["slices_per_volume"],
                       num_slice_positions=values["num_slice_positions"],
                       demo_copies=values["demo_copies"], seed=values["seed"],
                       skip_bad=values["skip_bad"], slice_axis=values["slice_axis"],
                       split=parse_split(values["split"]), crop=values["crop_to_head"],
                       slice_spacing=values["slice_spacing"],
                       field_of_view=values["field_of_view"])
