"""Tests of whole-volume stacks: cutting at a fixed spacing (volumes.cut_stack), the volume
prior's slice pairs (stacks.py), and writing a stack as NIfTI and reading it back."""
import numpy as np
import pytest

from brainvq.data import stacks, volumes
from brainvq.data.slice_sets import SliceSet
from helpers import phantom, write_volume


def test_consecutive_pairs_link_each_slice_to_the_one_below_of_its_subject():
    slice_index = np.array([0, 1, 2, 0, 2, 1, 3])
    case_id = np.array([1, 1, 1, 2, 2, 2, 3])
    rows, below = stacks.consecutive_pairs(slice_index, case_id)
    pairs = sorted(zip(rows.tolist(), below.tolist()))
    # subject 1: 1 over 0, 2 over 1; subject 2 (rows out of order): 5 over 3, 4 over 5;
    # subject 3 has no slice below its position 3
    assert pairs == [(1, 0), (2, 1), (4, 5), (5, 3)]


def test_subject_stacks_keep_whole_stacks_in_order():
    images = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1) * np.ones((6, 2, 2, 1))
    slices = SliceSet(images=images, slice_index=np.array([1, 0, 2, 0, 2, 3]),
                      case_id=np.array([1, 1, 1, 2, 2, 2]), paths=[""] * 6)
    stacked = stacks.subject_stacks(slices)
    assert list(stacked) == [1]  # subject 2 misses position 1
    np.testing.assert_array_equal(stacked[1][:, 0, 0], [1.0, 0.0, 2.0])
    assert stacks.subject_stacks(slices, length=4) == {}


def test_cut_stack_spacing_top_and_field_of_view(tmp_path):
    ras = phantom()
    volume = volumes.read_volume(write_volume(tmp_path / "head.nii.gz", ras, np.eye(4)))
    top = volumes.head_top(volume)
    cut = volumes.cut_stack(volume, 6, spacing=3.0, field_of_view=50.0)
    assert cut.images.shape == (6, 50, 50)
    np.testing.assert_allclose(cut.fractions, np.arange(6) / 5)
    # the highest slice lies STACK_TOP_OFFSET below the top, each next one 3 mm lower
    expected = top - volumes.STACK_TOP_OFFSET - 3.0 * np.arange(6)[::-1]
    np.testing.assert_array_equal(cut.indices, np.round(expected).astype(int))
    # the head is centred in the box: its mass is balanced left-right and front-back
    rows, columns = np.nonzero(cut.images.max(axis=0) > 0.1)
    assert abs(rows.mean() - 24.5) < 3 and abs(columns.mean() - 24.5) < 3


def test_cut_stack_leaves_out_slices_below_the_volume(tmp_path):
    volume = volumes.read_volume(write_volume(tmp_path / "head.nii.gz", phantom(), np.eye(4)))
    cut = volumes.cut_stack(volume, 40, spacing=2.0, field_of_view=50.0)
    assert len(cut.images) < 40 and cut.requested == 40
    assert cut.fractions[-1] == 1.0  # the top is kept: the bottom is what is missing
    assert cut.indices.min() >= 0


def test_written_stack_reads_back_in_the_same_frame(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.random((5, 12, 12)).astype(np.float32)  # bottom first, upright
    path = volumes.write_stack(tmp_path / "volume.nii.gz", stack, field_of_view=24.0,
                               spacing=2.0)  # 2 mm pixels: isotropic, read back as written
    import nibabel

    image = nibabel.load(str(path))
    assert nibabel.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.shape == (12, 12, 5)
    np.testing.assert_allclose(image.header.get_zooms(), (2.0, 2.0, 2.0))
    read = volumes.read_volume(path)
    for position in range(5):  # the project's own reader gives the same upright slices
        np.testing.assert_allclose(volumes.upright(read.voxels, 2, position), stack[position])


@pytest.mark.parametrize("spacing", [2.0, 3.0])
def test_anisotropic_stack_keeps_its_spacing(tmp_path, spacing):
    stack = np.zeros((4, 8, 8), np.float32)
    path = volumes.write_stack(tmp_path / "volume.nii.gz", stack, field_of_view=12.0,
                               spacing=spacing)
    import nibabel

    np.testing.assert_allclose(nibabel.load(str(path)).header.get_zooms(), (1.5, 1.5, spacing))
