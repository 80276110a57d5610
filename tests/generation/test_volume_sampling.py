"""Tests of whole-volume sampling: the volume prior sees the slice below, and a stack is drawn
slice by slice, seeded and repeatable."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainvq.generation import sampling, stacks  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from helpers import CODES, GRID, SLICES, make_prior  # noqa: E402


def volume_prior(seed=1):
    return make_prior(condition_codes=CODES, condition_grid_size=GRID, seed=seed)


def test_the_slice_below_changes_the_volume_priors_logits():
    prior = volume_prior()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, CODES, (2, GRID, GRID))
    below = rng.integers(0, CODES, (2, GRID, GRID))
    other = below.copy()
    other[:, GRID - 1, GRID - 1] = (other[:, GRID - 1, GRID - 1] + 1) % CODES

    def logits(condition):
        return keras.ops.convert_to_numpy(prior(
            {"code_indices": codes, "slice_index": np.array([1, 2]),
             "condition_codes": condition}, training=False))

    change = np.abs(logits(below) - logits(other)).max(axis=-1)
    # the whole slice below is seen by every position, the first one included (no causal order)
    assert change[:, 0, 0].min() > 1e-5
    assert change.min() > 1e-5
    np.testing.assert_allclose(logits(below), logits(below.copy()))


def test_condition_noise_corrupts_the_slice_below_in_training_only():
    prior = make_prior(condition_codes=CODES, condition_grid_size=GRID, seed=1,
                       condition_noise=0.5, condition_dropout=0.0)
    rng = np.random.default_rng(0)
    below = rng.integers(0, CODES, (64, GRID, GRID)).astype("int32")
    corrupted = keras.ops.convert_to_numpy(prior.corrupt_condition(below))
    changed = np.mean(corrupted != below)
    # half the codes are redrawn, and a redrawn code equals the old one 1 time in CODES
    expected = 0.5 * (1 - 1 / CODES)
    assert abs(changed - expected) < 0.03
    assert corrupted.min() >= 0 and corrupted.max() < CODES
    inputs = {"code_indices": below[:2], "slice_index": np.array([1, 2]),
              "condition_codes": below[:2]}
    clean = [keras.ops.convert_to_numpy(prior(inputs, training=False)) for _ in range(2)]
    np.testing.assert_allclose(clean[0], clean[1])
    noisy = keras.ops.convert_to_numpy(prior(inputs, training=True))
    assert np.abs(noisy - clean[0]).max() > 1e-4
    restored = type(prior).from_config(prior.get_config())
    assert restored.condition_noise == 0.5
    with pytest.raises(ValueError, match="condition_noise"):
        make_prior(condition_codes=CODES, condition_grid_size=GRID, condition_noise=1.5)


def test_a_stack_is_seeded_and_repeatable_and_starts_with_the_slice_prior():
    prior, follower = make_prior(seed=0), volume_prior()
    first = stacks.sample_stack_codes(prior, follower, 2, GRID, SLICES, top_k=4, seed=5)
    again = stacks.sample_stack_codes(prior, follower, 2, GRID, SLICES, top_k=4, seed=5)
    other = stacks.sample_stack_codes(prior, follower, 2, GRID, SLICES, top_k=4, seed=6)
    assert first.shape == (2, SLICES, GRID, GRID)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    bottom = sampling.sample_codes(prior, 2, GRID, slice_index=np.zeros(2, np.int32), top_k=4,
                                   seed=5)
    np.testing.assert_array_equal(first[:, 0], bottom)
    # slice 1 is the volume prior's draw given slice 0
    second = sampling.sample_codes(follower, 2, GRID, slice_index=np.ones(2, np.int32), top_k=4,
                                   seed=5 + stacks.SLICE_SEED_STRIDE, condition_codes=first[:, 0])
    np.testing.assert_array_equal(first[:, 1], second)


def test_a_volume_prior_trained_without_covariates_refuses_them_by_name():
    request = np.array([70.0, np.nan], np.float32)
    with pytest.raises(run_folder.RunError, match="runs/plain.*trained without covariates"):
        stacks.generate_stacks({"seed": 0}, None, "runs/plain", 1, prior=make_prior(seed=0),
                               volume_prior=volume_prior(), covariates=request)
