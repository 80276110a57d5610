"""Head pose (data/pose.py) and the pose condition built from it (issue 49): the offset and
tilt measured as the realism checks measure them, and told to the prior in place of the applied
shift and rotation."""
import numpy as np
import pytest

from brainvq.data import augmentation, pose
from brainvq.data.slice_sets import affine_warp
from brainvq.evaluation import realism


def ellipse(centre_col=31.5, size=64):
    rows, cols = np.mgrid[:size, :size]
    image = np.zeros((size, size, 1), np.float32)
    image[((rows - 31.5) / 24) ** 2 + ((cols - centre_col) / 16) ** 2 < 1] = 0.6
    return image


@pytest.mark.parametrize("shift", [-5, 0, 3])
def test_the_offset_is_the_head_centroid_from_the_centre_column(shift):
    (offset, tilt), = pose.head_pose(ellipse(31.5 + shift)[None])
    assert offset == pytest.approx(shift, abs=0.05)
    assert abs(tilt) < 0.5


@pytest.mark.parametrize("degrees", [-8.0, 5.0])
def test_the_tilt_follows_a_rotation_and_agrees_with_the_realism_statistics(degrees):
    rotated = affine_warp(ellipse(), degrees, 1.0)
    (offset, tilt), = pose.head_pose(rotated[None])
    assert tilt == pytest.approx(degrees, abs=0.5)
    statistics = realism.shape_statistics(rotated)
    assert (offset, tilt) == pytest.approx((statistics["centroid_offset"], statistics["tilt"]),
                                           abs=1e-4)


def test_an_empty_slice_has_no_pose():
    np.testing.assert_array_equal(pose.head_pose(np.zeros((2, 8, 8))), np.zeros((2, 2)))


def test_with_poses_replaces_the_shift_across_and_rotation_and_keeps_the_rest():
    keras = pytest.importorskip("keras")  # noqa: F841  (code_cache imports the models)

    _, parameters = augmentation.flip_and_shift(np.stack([ellipse()] * 3), 2, 2, seed=0,
                                                max_rotation=8.0, max_scale=0.1,
                                                return_parameters=True)
    poses = np.array([[2.0, 4.0], [-40.0, 0.0], [0.0, -8.0]] * 2, np.float32)
    told = pose.with_poses(parameters, poses)
    names = augmentation.AUGMENTATION_PARAMETERS
    kept = [names.index(name) for name in ("flip", "shift_y", "scale")]
    np.testing.assert_array_equal(told[:, kept], parameters[:, kept])
    np.testing.assert_allclose(told[:3, [names.index("shift_x"), names.index("rotation")]],
                               [[0.5, 0.5], [-2.0, 0.0], [0.0, -1.0]])  # clipped at 2
    assert not np.shares_memory(told, parameters)
    np.testing.assert_allclose(pose.with_poses(None, poses[:1]), [[0, 0, 0.5, 0.5, 0]])


def test_poses_are_measured_on_the_originals_each_copy_and_held_out_slices_once(tmp_path,
                                                                              monkeypatch):
    pytest.importorskip("keras")
    from types import SimpleNamespace

    from brainvq.training import code_cache

    images = np.stack([ellipse(31.5 + shift) for shift in (-4, 0, 3)])
    split = SimpleNamespace(images=images, slice_index=np.arange(3))
    splits = {"train": split, "validate": split, "test": split}
    values = {"prior_augment_copies": 2, "prior_augment_shift": 0, "seed": 0,
              "prior_augment_rotation": 8.0, "prior_augment_scale": 0.0}
    measured = code_cache.measured_poses(splits, tmp_path, values)
    poses = measured["train_augmented"]
    assert poses.shape == (9, 2)
    np.testing.assert_array_equal(measured["validate"], poses[:3])  # the same slices here
    np.testing.assert_allclose(poses[:3, 0], [-4, 0, 3], atol=0.05)
    np.testing.assert_allclose(poses[3:6, 0], [4, 0, -3], atol=0.05)  # copy 1: the mirror
    assert np.abs(poses[6:, 1]).max() > 0.5  # copy 2 rotated
    monkeypatch.setattr(pose, "head_pose", lambda *args: pytest.fail("measured again"))
    np.testing.assert_array_equal(
        code_cache.measured_poses(splits, tmp_path, values)["train_augmented"], poses)
    values["seed"] = 1  # other copies: measured anew
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        code_cache.measured_poses(splits, tmp_path, values)


SLICE_POSES = np.array([[0, 1.0, 2.0], [0, 3.0, 4.0], [1, -5.0, -6.0], [2, 7.0, 8.0]])


def test_drawn_poses_come_from_training_slices_at_the_same_position_times_the_spread():
    positions = np.array([0, 1, 2, 0, 1, 2] * 20)
    drawn = pose.draw_poses(SLICE_POSES, positions, 0.5, seed=3)
    assert drawn.shape == (120, 2) and drawn.dtype == np.float32
    at_zero = {tuple(row) for row in drawn[positions == 0]}
    assert at_zero == {(0.5, 1.0), (1.5, 2.0)}  # both slices at position 0, no other
    np.testing.assert_array_equal(drawn[positions == 1], [[-2.5, -3.0]] * 40)
    np.testing.assert_array_equal(drawn[positions == 2], [[3.5, 4.0]] * 40)
    np.testing.assert_array_equal(pose.draw_poses(SLICE_POSES, positions, 0.5, seed=3), drawn)
    assert not np.array_equal(pose.draw_poses(SLICE_POSES, positions, 0.5, seed=4), drawn)


def test_a_position_no_slice_had_draws_from_all_and_spread_0_is_upright():
    drawn = pose.draw_poses(SLICE_POSES, np.full(200, 9), 1.0, seed=0)
    assert {tuple(row) for row in drawn} == {(1, 2), (3, 4), (-5, -6), (7, 8)}
    np.testing.assert_array_equal(pose.draw_poses(SLICE_POSES, [0, 1], 0.0, seed=0),
                                  np.zeros((2, 2)))
    with pytest.raises(ValueError, match="training slices' poses"):
        pose.draw_poses(np.zeros((0, 3)), [0], 1.0, seed=0)
