"""Tests of the whole-volume checks: neighbouring-slice SSIM, the reslices' orientation and
aspect, and the real slice sets the stacks' per-slice figure is read against."""
import numpy as np

from brainvq.evaluation import volume_checks


def test_neighbour_ssim_tells_copies_from_unrelated_slices():
    rng = np.random.default_rng(0)
    repeated = np.repeat(rng.random((1, 16, 16)), 5, axis=0)
    unrelated = rng.random((5, 16, 16))
    np.testing.assert_allclose(volume_checks.neighbour_ssim(repeated), np.ones(4))
    assert volume_checks.neighbour_ssim(unrelated).max() < 0.3
    assert volume_checks.neighbour_ssim(unrelated).shape == (4,)


def test_head_volume_counts_tissue_voxels_in_millilitres():
    stack = np.zeros((4, 10, 10), np.float32)
    stack[1:3, 2:7, 2:6] = 0.8  # 2 x 5 x 4 = 40 tissue voxels
    stack[0, 0, 0] = volume_checks.realism.TISSUE_THRESHOLD / 2  # background noise: not tissue
    # voxels of 2 x 2 mm pixels 5 mm apart: 20 mm^3 each, 800 mm^3 in all
    assert volume_checks.head_volume(stack, pixel=2.0, spacing=5.0) == 0.8
    assert volume_checks.head_volume(np.zeros_like(stack), pixel=2.0, spacing=5.0) == 0.0
    np.testing.assert_array_equal(
        volume_checks.head_volumes([stack, np.zeros_like(stack)], pixel=2.0, spacing=5.0),
        [0.8, 0.0])


def test_reslices_are_upright_and_at_their_physical_aspect():
    stack = np.zeros((10, 20, 20), np.float32)  # bottom first
    stack[5:] = 1.0  # the upper half of the head is bright
    images, order = volume_checks.reslices(stack, "coronal", pixel=1.0, spacing=2.0,
                                           image_size=20, count=3)
    assert images.shape == (3, 20, 20, 1)
    np.testing.assert_array_equal(order, [0, 1, 2])
    column = images[0, :, 10, 0]
    # 10 slices 2 mm apart span 20 mm, as tall as the 20 mm wide plane: no padding rows, and
    # the bright upper half is at the top of the image
    assert column[:8].min() > 0.9 and column[-8:].max() < 0.1
    flat, _ = volume_checks.reslices(stack, "sagittal", pixel=1.0, spacing=1.0, image_size=20,
                                     count=2)
    rows = np.flatnonzero(flat[0, :, 10, 0] > 0.5)
    # at 1 mm the 10 slices span half the 20 mm plane: centred, padded above and below
    assert 4 <= rows.min() <= 6 and rows.max() <= 10


def test_real_slice_sets_group_whole_volumes_against_slices_spread_over_subjects():
    # subject v's slice k is filled with 10 * v + k: each pixel names its subject and position
    held_out = {case: np.full((6, 4, 4), 10.0 * case, np.float32) + np.arange(6)[:, None, None]
                for case in range(5)}
    held_out.update({case: held_out[case % 5] + 50.0 for case in range(5, 8)})  # 8 subjects
    grouped, spread = volume_checks.real_slice_sets(held_out, count=3, seed=1)
    assert grouped.shape == spread.shape == (18, 4, 4, 1)
    grouped_ids, spread_ids = grouped[:, 0, 0, 0], spread[:, 0, 0, 0]
    # both sets hold every position three times
    np.testing.assert_array_equal(np.sort(grouped_ids % 10), np.repeat(np.arange(6), 3))
    np.testing.assert_array_equal(np.sort(spread_ids % 10), np.repeat(np.arange(6), 3))
    # the grouped set is three whole volumes; the spread one draws on more subjects
    assert len(np.unique(grouped_ids // 10)) == 3
    assert len(np.unique(spread_ids // 10)) > 3
    # asked for as many volumes as are held out: half of them, so the two sets still differ
    grouped, spread = volume_checks.real_slice_sets(held_out, count=8)
    assert grouped.shape == spread.shape == (24, 4, 4, 1)
    assert len(np.unique(grouped[:, 0, 0, 0] // 10)) == 4
    assert len(np.unique(spread[:, 0, 0, 0] // 10)) > 4
