"""Tests of volumes.py: orientation by the affine, spacing, slice axes, head crop, small inputs."""

import numpy as np
import pytest

import dataset
from brainvq.data import nifti, volumes
from brainvq.errors import DatasetError
from helpers import SHARED_DATA, phantom, write_volume

SIZE = 32
IXI = SHARED_DATA / "ixi"


def orientations(ras):
    """The same anatomy as (voxels, affine) in RAS, LPS, PSR (as IXI writes it) and 1 x 1 x 3 mm."""
    size_x, size_y, _ = ras.shape
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_affine[:3, 3] = [size_x - 1, size_y - 1, 0]
    psr = ras.transpose(1, 2, 0)[::-1]  # array axes: posterior, superior, right
    psr_affine = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, size_y - 1],
                           [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    thick_affine = np.diag([1.0, 1.0, 3.0, 1.0])
    return {"RAS": (ras, np.eye(4)), "LPS": (ras[::-1, ::-1], lps_affine),
            "PSR": (psr, psr_affine), "1x1x3mm": (ras[:, :, ::3], thick_affine)}


def axial_images(path, count=5, crop=True):
    return volumes.cut_slices(volumes.read_volume(path), count, axis="axial", crop=crop).images


def test_same_axial_slices_whatever_the_affine(tmp_path):
    ras = phantom()
    written = {name: write_volume(tmp_path / f"{name}.nii.gz", voxels, affine)
               for name, (voxels, affine) in orientations(ras).items()}
    reference = axial_images(written["RAS"])
    assert len(reference) == 5
    for name in ("LPS", "PSR"):
        np.testing.assert_allclose(axial_images(written[name]), reference, atol=1e-5,
                                   err_msg=name)
    thick = axial_images(written["1x1x3mm"])
    assert thick.shape == reference.shape
    difference = np.abs(thick - reference).mean()
    assert difference < 0.03, difference  # the same up to interpolation
    mirrored = np.abs(reference[:, :, ::-1] - reference).mean()
    assert mirrored > 3 * difference  # a left-right flip would have shown


def test_anatomical_directions_in_the_upright_slices(tmp_path):
    """Axial: anterior at the top, the subject's right on the right; coronal: superior at the
    top; sagittal: anterior on the left."""
    path = write_volume(tmp_path / "psr.nii.gz", *orientations(phantom())["PSR"])
    volume = volumes.read_volume(path)
    assert volume.voxels.shape == (40, 48, 45)

    def brightest(axis, index):
        image = volumes.upright(volume.voxels, volumes.SLICE_AXES[axis], index)
        return np.unravel_index(np.argmax(image), image.shape), image.shape

    (row, col), (height, width) = brightest("axial", 27)  # through the ball (z = +0.2)
    assert row < height / 2 and col > width / 2  # anterior up, right to the right
    (row, col), (height, width) = brightest("coronal", 33)  # y = +0.4
    assert row < height / 2 and col > width / 2  # superior up, right to the right
    (row, col), (height, width) = brightest("sagittal", 26)  # x = +0.35
    assert row < height / 2 and col < width / 2  # superior up, anterior on the left


def test_volume_without_orientation_is_refused_by_name(tmp_path):
    path = write_volume(tmp_path / "vols" / "no_affine.nii.gz", phantom(), np.eye(4),
                        header_codes=False)
    with pytest.raises(DatasetError, match="no_affine.nii.gz.*no usable orientation"):
        volumes.read_volume(path)


def test_coarse_axis_gives_distinct_slices_and_a_warning(tmp_path, capsys):
    for number in range(3):
        write_volume(tmp_path / "vols" / f"thin_{number}.nii.gz", phantom((40, 48, 12)),
                     np.diag([4.0, 4.0, 4.0, 1.0]))
    splits = dataset.load_nifti_folder(tmp_path / "vols", SIZE, slices_per_volume=16)
    paths = splits["train"].paths
    assert len(paths) == len(set(paths)) < 16  # no slice returned twice
    assert "fewer distinct axial slices" in capsys.readouterr().err
    indices = splits["train"].slice_index[splits["train"].case_id == splits["train"].case_id[0]]
    assert (np.diff(indices) > 0).all()  # in order along the axis
    assert indices.min() <= 4 and indices.max() >= 27  # still spread over the positions


def test_head_crop_fills_the_frame(tmp_path):
    small_head = np.zeros((120, 120, 45), np.float32)
    small_head[40:80, 36:84, :] = phantom()
    path = write_volume(tmp_path / "wide_fov.nii.gz", small_head, np.eye(4))
    cropped = axial_images(path, count=3)
    uncropped = axial_images(path, count=3, crop=False)
    for images, low, high in ((cropped, 0.8, 1.0), (uncropped, 0.0, 0.5)):
        middle = images[1] > 0.1
        rows, cols = np.nonzero(middle)
        fill = max(np.ptp(rows) + 1, np.ptp(cols) + 1) / max(middle.shape)
        assert low <= fill <= high, fill


def test_fewer_volumes_than_splits_say_how_many_are_needed(tmp_path):
    for number in range(2):
        write_volume(tmp_path / "vols" / f"subject_{number}.nii.gz", phantom(), np.eye(4))
    with pytest.raises(DatasetError, match="2 readable volumes.*needs at least 3"):
        dataset.load_splits(tmp_path / "vols", SIZE, slices_per_volume=2)
    write_volume(tmp_path / "vols" / "subject_2.nii.gz", phantom(), np.eye(4))
    (tmp_path / "vols" / "subject_3.nii.gz").write_bytes(b"\x00junk" * 10)
    with pytest.raises(DatasetError, match="subject_3.nii.gz"):
        dataset.load_splits(tmp_path / "vols", SIZE, slices_per_volume=2)
    splits, _ = dataset.load_splits(tmp_path / "vols", SIZE, slices_per_volume=2, skip_bad=True)
    assert [len(splits[name]) for name in dataset.SPLITS] == [2, 2, 2]


def test_split_shares_as_subject_counts():
    assert nifti.split_counts(165, dataset.parse_split("125,20,20")) == (125, 20, 20)
    assert nifti.split_counts(10, dataset.parse_split("0.8,0.1,0.1")) == (8, 1, 1)
    for bad in ("1,2", "1,0,1", "a,b,c", "-1,1,1"):
        with pytest.raises(DatasetError, match="three positive shares"):
            dataset.parse_split(bad)


def test_subject_counts_are_counts_and_the_remainder_is_said(tmp_path, capsys):
    """Whole numbers are subject counts: 4,1,1 on 8 subjects takes 4, 1 and 1 and says the 2
    left over are not used (they were silently taken as shares: 5, 1, 2)."""
    assert nifti.split_counts(8, dataset.parse_split("4,1,1")) == (4, 1, 1)
    assert nifti.split_counts(8, dataset.parse_split("0.5,0.25,0.25")) == (4, 2, 2)
    for case in range(8):
        write_volume(tmp_path / "vols" / f"subject_{case}.nii.gz", phantom(), np.eye(4))
    splits, _ = dataset.load_splits(tmp_path / "vols", SIZE, slices_per_volume=2,
                                    split=dataset.parse_split("4,1,1"))
    assert [len(set(splits[name].case_id)) for name in dataset.SPLITS] == [4, 1, 1]
    assert "2 of the 8 subjects" in capsys.readouterr().out


@pytest.mark.skipif(not IXI.is_dir(), reason=f"no IXI volumes at {IXI}")
def test_real_ixi_volume_and_its_ras_copy_give_the_same_slices(tmp_path):
    import nibabel

    source = sorted(IXI.glob("*.nii.gz"))[0]
    original = nibabel.load(str(source))
    assert nibabel.aff2axcodes(original.affine) == ("P", "S", "R")
    copy = tmp_path / "ras.nii.gz"
    nibabel.save(nibabel.as_closest_canonical(original), str(copy))
    assert nibabel.aff2axcodes(nibabel.load(str(copy)).affine) == ("R", "A", "S")
    for axis in ("axial", "coronal"):
        scanner = volumes.cut_slices(volumes.read_volume(source), 4, axis=axis)
        canonical = volumes.cut_slices(volumes.read_volume(copy), 4, axis=axis)
        np.testing.assert_array_equal(scanner.images, canonical.images)
    axial = volumes.cut_slices(volumes.read_volume(source), 4, axis="axial").images
    raw_third_axis = np.asarray(original.dataobj, np.float32)[:, :, 45]  # what z-slicing gave
    assert axial.shape[1:] != raw_third_axis.shape  # a sagittal slice would have this shape
