"""Tests of the data loaders (tiny images written into tmp_path; real-data tests skip cleanly)."""
import pathlib

import numpy as np
import pytest
from PIL import Image

import dataset
from dataset import DatasetError
from helpers import SHARED_DATA

SIZE = 32
OASIS1 = SHARED_DATA / "oasis1"


def write_png(path, pixels, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels, mode=mode)
    image.save(path)
    return path


def pattern(height=40, width=40, seed=0):
    """A smooth 8-bit image, different for every seed."""
    rows, columns = np.mgrid[0:height, 0:width]
    waves = np.sin(columns / 7 + seed) * np.cos(rows / 9 + seed / 3)
    return (127.5 + 100 * waves).round().astype(np.uint8)


def write_oasis_layout(root, cases_per_split=None, slices=3):
    cases_per_split = cases_per_split or {"train": [1, 2], "validate": [3], "test": [4]}
    for split, cases in cases_per_split.items():
        for case in cases:
            for position in range(slices):
                name = f"case_{case:03d}_slice_{position}.nii.png"
                write_png(root / f"keras_png_slices_{split}" / name,
                          pattern(seed=case * 10 + position))
    return root


def write_nifti(path, voxels):
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.asarray(voxels, dtype=np.float32), np.eye(4)), str(path))
    return path


def blob_volume(shape=(24, 28, 20), seed=0):
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return np.where(x ** 2 + y ** 2 + z ** 2 < 0.6, 100.0 + rng.uniform(0, 50, shape), 0.0)


def assert_images_ok(slices, count=None):
    assert slices.images.dtype == np.float32
    assert slices.images.shape[1:] == (SIZE, SIZE, 1)
    assert slices.images.min() >= 0.0 and slices.images.max() <= 1.0
    assert slices.slice_index.dtype == np.int32 and slices.case_id.dtype == np.int32
    assert len(slices) == len(slices.slice_index) == len(slices.case_id) == len(slices.paths)
    if count is not None:
        assert len(slices) == count


# --- names ----------------------------------------------------------------------------------------

def test_parse_case_slice_from_names_and_paths():
    assert dataset.parse_case_slice("case_012_slice_7.nii.png") == (12, 7)
    path = "/data/keras_png_slices_train/case_401_slice_31.nii.png"
    assert dataset.parse_case_slice(path) == (401, 31)
    assert dataset.parse_case_slice(pathlib.Path("a/case_002_slice_0.nii.gz")) == (2, 0)
    with pytest.raises(DatasetError, match="notes.png"):
        dataset.parse_case_slice("notes.png")


# --- OASIS PNG layout -----------------------------------------------------------------------------

def test_oasis_layout_loads_splits_cases_and_slices(tmp_path):
    root = write_oasis_layout(tmp_path / "oasis")
    write_png(root / "keras_png_slices_seg_train" / "case_001_slice_0.nii.png", pattern())
    (root / "keras_png_slices_train" / "notes.txt").write_text("not an image")
    (root / "keras_png_slices_train" / ".DS_Store").write_bytes(b"\0\1")

    splits, description = dataset.load_splits(root, SIZE)

    assert set(splits) == {"train", "validate", "test"}
    assert_images_ok(splits["train"], count=6)
    assert_images_ok(splits["validate"], count=3)
    assert_images_ok(splits["test"], count=3)
    assert splits["train"].case_id.tolist() == [1, 1, 1, 2, 2, 2]
    assert splits["train"].slice_index.tolist() == [0, 1, 2, 0, 1, 2]
    assert set(splits["validate"].case_id) == {3} and set(splits["test"].case_id) == {4}
    assert all("keras_png_slices_seg" not in path for s in splits.values() for path in s.paths)
    assert "OASIS PNG slices" in description and "6 train / 3 validate / 3 test" in description
    # The pixels are the written ones, scaled to [0, 1] and resized.
    resized = Image.fromarray(pattern(seed=10)).resize((SIZE, SIZE), Image.BICUBIC)
    expected = np.asarray(resized) / 255
    np.testing.assert_allclose(splits["train"].images[0, ..., 0], expected, atol=0.02)


def test_png_files_sort_numerically_and_slices_clip(tmp_path):
    folder = tmp_path / "pngs"
    for case, position in [(10, 2), (2, 10), (2, 9), (10, 40)]:
        write_png(folder / f"case_{case:03d}_slice_{position}.nii.png", pattern())
    slices = dataset.load_png_folder(folder, SIZE, num_slice_positions=32)
    assert slices.case_id.tolist() == [2, 2, 10, 10]
    assert slices.slice_index.tolist() == [9, 10, 2, 31]  # 40 clipped to 31


def test_take_subsets_every_field(tmp_path):
    slices = dataset.load_oasis_png(write_oasis_layout(tmp_path / "oasis"), SIZE)["train"]
    subset = slices.take([5, 0])
    assert len(subset) == 2
    assert subset.paths == [slices.paths[5], slices.paths[0]]
    np.testing.assert_array_equal(subset.images[0], slices.images[5])
    assert subset.case_id.tolist() == [2, 1]


def test_join_keeps_every_slice_in_order(tmp_path):
    splits = dataset.load_oasis_png(write_oasis_layout(tmp_path / "oasis"), SIZE)
    joined = dataset.SliceSet.join([splits["train"], splits["validate"]])
    assert_images_ok(joined, len(splits["train"]) + len(splits["validate"]))
    assert joined.case_id.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert joined.paths[-1] == splits["validate"].paths[-1]
    np.testing.assert_array_equal(joined.images[6], splits["validate"].images[0])


# --- pixel formats --------------------------------------------------------------------------------

def test_16_bit_png_scaled_by_full_range(tmp_path):
    pixels = np.full((SIZE, SIZE), 65535, dtype=np.uint16)
    pixels[:, SIZE // 2:] = 32768
    write_png(tmp_path / "png16" / "case_001_slice_0.nii.png", pixels)
    image = dataset.load_png_folder(tmp_path / "png16", SIZE).images[0, ..., 0]
    np.testing.assert_allclose(image[:, :4], 1.0, atol=1e-3)
    np.testing.assert_allclose(image[:, -4:], 0.5, atol=1e-3)


def test_16_bit_png_with_12_bit_data_scaled_by_the_bits_used(tmp_path, capsys):
    for number, peak in enumerate((4095, 3000)):  # the folder's peak decides, not each image's
        pixels = np.full((SIZE, SIZE), peak, dtype=np.uint16)
        pixels[:, SIZE // 2:] = 2048
        write_png(tmp_path / "png12" / f"case_001_slice_{number}.nii.png", pixels)
    images = dataset.load_png_folder(tmp_path / "png12", SIZE).images[..., 0]
    np.testing.assert_allclose(images[0, :, :4], 1.0, atol=1e-3)
    np.testing.assert_allclose(images[1, :, :4], 3000 / 4095, atol=1e-3)
    np.testing.assert_allclose(images[:, :, -4:], 2048 / 4095, atol=1e-3)
    assert "read as 12-bit data (divided by 4095, not 65535)" in capsys.readouterr().err


def test_rgb_rgba_and_mixed_sizes_load_as_one_channel(tmp_path):
    folder = tmp_path / "mixed"
    rgb = np.zeros((50, 30, 3), np.uint8)
    rgb[..., 1] = 200
    write_png(folder / "case_001_slice_0.nii.png", rgb)
    write_png(folder / "case_001_slice_1.nii.png", np.full((64, 64, 4), 255, np.uint8))
    write_png(folder / "case_001_slice_2.nii.png", pattern(20, 20))
    slices = dataset.load_png_folder(folder, SIZE)
    assert_images_ok(slices, count=3)
    np.testing.assert_allclose(slices.images[1], 1.0, atol=1e-3)
    luminance = np.asarray(Image.fromarray(rgb).convert("L"))[0, 0] / 255
    np.testing.assert_allclose(slices.images[0, SIZE // 2, SIZE // 2, 0], luminance, atol=0.02)


# --- bad input ------------------------------------------------------------------------------------

def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere.*does not exist"):
        dataset.load_png_folder(missing, SIZE)
    with pytest.raises(DatasetError, match="nowhere"):
        dataset.load_nifti_folder(missing, SIZE)


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DatasetError, match="data.zip.*is a file"):
        dataset.load_splits(path, SIZE)
    with pytest.raises(DatasetError, match="data.zip.*is a file"):
        dataset.load_png_folder(path, SIZE)


def test_empty_folder_and_unknown_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match="no PNG images in .*empty"):
        dataset.load_png_folder(tmp_path / "empty", SIZE)
    with pytest.raises(DatasetError, match="empty.*keras_png_slices_train"):
        dataset.load_splits(tmp_path / "empty", SIZE)


def test_missing_split_folder(tmp_path):
    root = write_oasis_layout(tmp_path / "oasis", {"train": [1], "validate": [2]})
    with pytest.raises(DatasetError, match="keras_png_slices_test"):
        dataset.load_splits(root, SIZE)


def write_folder_with_bad_png(folder, bad_bytes):
    write_png(folder / "case_001_slice_0.nii.png", pattern())
    write_png(folder / "case_001_slice_2.nii.png", pattern())
    bad = folder / "case_001_slice_1.nii.png"
    bad.write_bytes(bad_bytes)
    return bad


def truncated_png_bytes(tmp_path):
    whole = write_png(tmp_path / "whole.png", pattern(64, 64)).read_bytes()
    return whole[:len(whole) // 2]


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_bad_png_stops_naming_the_file(tmp_path, kind):
    bad_bytes = b"this is not a png" if kind == "text" else truncated_png_bytes(tmp_path)
    bad = write_folder_with_bad_png(tmp_path / "pngs", bad_bytes)
    with pytest.raises(DatasetError) as error:
        dataset.load_png_folder(tmp_path / "pngs", SIZE)
    assert str(bad) in str(error.value) and "skip-bad" in str(error.value)


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_skip_bad_png_keeps_the_good_ones(tmp_path, capsys, kind):
    bad_bytes = b"this is not a png" if kind == "text" else truncated_png_bytes(tmp_path)
    bad = write_folder_with_bad_png(tmp_path / "pngs", bad_bytes)
    slices = dataset.load_png_folder(tmp_path / "pngs", SIZE, skip_bad=True)
    assert_images_ok(slices, count=2)
    assert slices.slice_index.tolist() == [0, 2]
    assert slices.skipped == [str(bad)]
    assert f"skipped 1 unreadable file(s) in {tmp_path / 'pngs'} (first: {bad.name})" \
        in capsys.readouterr().err


def test_all_bad_still_raises(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "case_001_slice_0.nii.png").write_text("junk")
    with pytest.raises(DatasetError, match="no readable files in .*pngs"):
        dataset.load_png_folder(folder, SIZE, skip_bad=True)


def test_unreadable_nifti(tmp_path):
    for number in range(3):
        write_nifti(tmp_path / "vols" / f"good_{number}.nii.gz", blob_volume(seed=number))
    bad = tmp_path / "vols" / "broken.nii.gz"
    bad.write_bytes(b"\x00garbage" * 20)
    with pytest.raises(DatasetError, match="broken.nii.gz.*not a readable NIfTI"):
        dataset.load_nifti_folder(tmp_path / "vols", SIZE, slices_per_volume=2)
    splits = dataset.load_nifti_folder(tmp_path / "vols", SIZE, slices_per_volume=2, skip_bad=True)
    assert len(splits["train"]) == 2
    assert splits["train"].skipped == [str(bad)]


def test_4d_nifti_rejected_but_singleton_dims_squeezed(tmp_path):
    bad = write_nifti(tmp_path / "vols" / "series.nii.gz", np.ones((8, 8, 8, 3)))
    with pytest.raises(DatasetError, match="series.nii.gz.*4 non-singleton dimensions"):
        dataset.load_nifti_folder(tmp_path / "vols", SIZE)
    bad.unlink()
    for number in range(3):
        write_nifti(tmp_path / "vols" / f"single_{number}.nii.gz", blob_volume()[..., None])
    splits = dataset.load_nifti_folder(tmp_path / "vols", SIZE, slices_per_volume=3)
    assert_images_ok(splits["train"], count=3)


# --- NIfTI ----------------------------------------------------------------------------------------

def assert_case_wise(splits):
    cases = {name: set(s.case_id.tolist()) for name, s in splits.items()}
    assert not cases["train"] & cases["validate"]
    assert not cases["train"] & cases["test"]
    assert not cases["validate"] & cases["test"]
    return cases


def test_nifti_volumes_split_by_case(tmp_path):
    for number in range(5):
        write_nifti(tmp_path / "vols" / f"subject_{number}.nii.gz", blob_volume(seed=number))
    splits, description = dataset.load_splits(tmp_path / "vols", SIZE, slices_per_volume=4,
                                              num_slice_positions=8)
    cases = assert_case_wise(splits)
    assert [len(cases[name]) for name in ("train", "validate", "test")] == [3, 1, 1]
    for split in splits.values():
        assert_images_ok(split)
        for case in set(split.case_id.tolist()):
            members = split.case_id == case
            assert members.sum() == 4
            assert split.slice_index[members].tolist() == [0, 2, 5, 7]
        assert all(":axial=" in path for path in split.paths)
        assert split.images.max() > 0.5
    assert "NIfTI volumes" in description and "12 train / 4 validate / 4 test" in description
    again = dataset.load_nifti_folder(tmp_path / "vols", SIZE, slices_per_volume=4)
    assert again["test"].paths[0].split(":")[0] == splits["test"].paths[0].split(":")[0]


def test_nifti_2d_slice_layout(tmp_path):
    for split, cases in {"train": [1, 2], "validate": [3], "test": [4]}.items():
        for case in cases:
            for position in range(2):
                slice2d = np.random.default_rng(case).uniform(-5, 300, size=(20, 12))
                write_nifti(tmp_path / "hip" / f"keras_slices_{split}"
                            / f"case_{case:03d}_week_0_slice_{position}.nii.gz", slice2d)
    splits, description = dataset.load_splits(tmp_path / "hip", SIZE)
    assert "NIfTI slices" in description
    assert_images_ok(splits["train"], count=4)
    assert splits["train"].case_id.tolist() == [1, 1, 2, 2]
    assert splits["train"].slice_index.tolist() == [0, 1, 0, 1]
    assert splits["test"].images.max() > 0.9  # min-max scaled per slice


@pytest.mark.skipif(not OASIS1.is_dir(), reason=f"no real OASIS-1 volumes at {OASIS1}")
def test_real_oasis1_volumes():
    splits, description = dataset.load_splits(OASIS1, SIZE, slices_per_volume=4)
    cases = assert_case_wise(splits)
    volumes = len(list(OASIS1.glob("*.nii*")))
    assert sum(len(c) for c in cases.values()) == volumes
    for split in splits.values():
        assert_images_ok(split, count=4 * len(set(split.case_id.tolist())))
        assert len(split) > 0
        assert split.images.mean() > 0.05  # brain tissue, not empty slices
    assert f"{volumes} cases" in description


# --- demo -----------------------------------------------------------------------------------------

def z_of(paths):
    return {int(path.rsplit(":axial=", 1)[1]) for path in paths}


def test_demo_split_by_slice_ranges_with_gaps():
    splits = dataset.load_demo(SIZE, copies=1, num_slice_positions=32)
    train, validate, test = (z_of(splits[name].paths) for name in ("train", "validate", "test"))
    assert train and validate and test
    assert not train & validate and not train & test and not validate & test
    assert min(abs(t - z) for t in test for z in train) > 2
    assert min(abs(v - z) for v in validate for z in train) > 2
    assert len(splits["train"]) == 2 * len(train)  # original + one augmented copy
    assert len(splits["validate"]) == len(validate) and len(splits["test"]) == len(test)
    for split in splits.values():
        assert_images_ok(split)
        assert split.slice_index.min() >= 0 and split.slice_index.max() <= 31
        assert set(split.case_id.tolist()) == {0}
    assert splits["train"].slice_index.min() == 0 and splits["train"].slice_index.max() == 31
    # The copy differs from its original (augmented) but shows the same slice.
    original, copy = splits["train"].images[0], splits["train"].images[1]
    assert not np.allclose(original, copy)
    assert np.corrcoef(original.ravel(), copy.ravel())[0, 1] > 0.8


def test_load_splits_falls_back_to_demo_only_when_no_folder_was_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default data folder is not here
    default = dataset.DEFAULTS["data_dir"]
    splits, description = dataset.load_splits(default, SIZE, demo_copies=0)
    assert description.startswith(f"no OASIS data at {default}: using the embedded MNI152 demo")
    assert f"{len(splits['train'])} train / " in description and f"{SIZE}x{SIZE}" in description
    missing = tmp_path / "keras_png_slices_dta"  # a mistyped folder is not the demo
    with pytest.raises(dataset.MissingData, match="keras_png_slices_dta does not exist"):
        dataset.load_splits(missing, SIZE, demo_copies=0)


# --- tf.data --------------------------------------------------------------------------------------

def test_make_dataset_batches(tmp_path):
    pytest.importorskip("tensorflow")
    slices = dataset.load_oasis_png(write_oasis_layout(tmp_path / "oasis"), SIZE)["train"]

    batches = list(dataset.make_dataset(slices, batch_size=4, shuffle=False))
    assert [tuple(batch.shape) for batch in batches] == [(4, SIZE, SIZE, 1), (2, SIZE, SIZE, 1)]
    assert batches[0].dtype.name == "float32"
    np.testing.assert_allclose(batches[0].numpy(), slices.images[:4])

    paired = dataset.make_dataset(slices, batch_size=4, shuffle=True, with_slice_index=True,
                                     drop_remainder=True)
    images, slice_index = next(iter(paired))
    assert tuple(images.shape) == (4, SIZE, SIZE, 1) and tuple(slice_index.shape) == (4,)
    assert slice_index.dtype.name == "int32"
    for image, index in zip(images.numpy(), slice_index.numpy()):  # pairs stay together
        row = int(np.argmin(np.abs(slices.images - image).sum(axis=(1, 2, 3))))
        assert slices.slice_index[row] == index
    assert len(list(paired)) == 1

    repeated = dataset.make_dataset(slices, batch_size=4, repeat=True)
    assert len(list(repeated.take(5))) == 5
