"""The data's public face: brain MRI slices for the VQ-VAE and its prior, loaded, checked, split
and batched.

    splits, description = dataset.load_splits("../shared/data/ixi", 128, split=(125, 20, 20))
    batches = dataset.make_dataset(splits["train"], batch_size=16)

Layouts that `load_splits` recognises (`brainvq/data/layouts.py`): the OASIS PNG layout
(`keras_png_slices_{train,validate,test}/case_NNN_slice_S.nii.png`), a folder of 3D NIfTI
volumes (axial slices cut over the head's range, subjects split, never slices), 2D NIfTI slices
in `keras_slices_*` folders, and, when no folder is named and the default one is absent, the
embedded MNI152 demo. Every image is float32 [H, W, 1] in [0, 1]. Bad input raises
`DatasetError`, whose message names the file or folder and the fix; `skip_bad=True` skips
unreadable files instead.

Behind it, under `brainvq/data/`: `png.py`, `nifti.py` (with `volumes.py` for one 3D volume),
`demo.py`, `slice_sets.py` (`SliceSet` and the file-name helpers), `augmentation.py`,
`layouts.py` and `input_pipeline.py` (`tf.data`, or a `PyDataset` off TensorFlow).
"""
from brainvq.data.augmentation import flip_and_shift
from brainvq.data.demo import DEMO_VOLUME, load_demo
from brainvq.data.input_pipeline import make_dataset
from brainvq.data.layouts import VOLUME_ONLY_KEYS, data_layout, load_splits, load_splits_for
from brainvq.data.nifti import NIFTI_EXTENSIONS, NIFTI_SLICE_FOLDERS, load_nifti_folder, parse_split
from brainvq.data.png import OASIS_PNG_FOLDERS, PNG_EXTENSIONS, load_oasis_png, load_png_folder
from brainvq.data.slice_sets import SPLITS, SliceSet, parse_case_slice
from brainvq.errors import DatasetError, MissingData
from hyperparameters import DEFAULTS

__all__ = [
    "DEFAULTS", "DEMO_VOLUME", "DatasetError", "MissingData", "NIFTI_EXTENSIONS",
    "NIFTI_SLICE_FOLDERS", "OASIS_PNG_FOLDERS", "PNG_EXTENSIONS", "SPLITS", "SliceSet",
    "VOLUME_ONLY_KEYS", "data_layout", "flip_and_shift", "load_demo", "load_nifti_folder",
    "load_oasis_png", "load_png_folder", "load_splits", "load_splits_for", "make_dataset",
    "parse_case_slice", "parse_split",
]
