"""Tests of the pure sampler (`brainvq.generation.inferer`) and the `Run` it is built from:
models and conditions in, images out, no file touched; the stratified draws of unconditional
samples' positions and covariates."""
import builtins
import pathlib

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainvq.generation.inferer import (  # noqa: E402
    Request,
    SamplingSettings,
    SliceInferer,
    stratified_positions,
    stratified_rows,
)
from helpers import GRID, SLICES, make_prior, tiny_vqvae  # noqa: E402


@pytest.fixture(scope="module")
def models():
    vqvae = tiny_vqvae(image_size=32, num_downsamples=2)  # an 8x8 grid of 16 codes
    assert vqvae.grid_size == GRID
    return vqvae, make_prior()


@pytest.mark.parametrize("count", [7, 40, 401])
def test_stratified_positions_follow_the_counts_to_within_one(count):
    counts = np.array([1.0, 0.0, 3.0, 6.0])
    drawn = stratified_positions(counts, count, seed=3)
    assert drawn.dtype == np.int32 and drawn.shape == (count,)
    expected = count * counts / counts.sum()
    assert np.all(np.abs(np.bincount(drawn, minlength=4) - expected) <= 1)
    assert 1 not in drawn  # a position no training slice had is never drawn
    np.testing.assert_array_equal(drawn, stratified_positions(counts, count, seed=3))
    if count > 10:
        assert not np.array_equal(drawn, stratified_positions(counts, count, seed=4))


def test_stratified_rows_take_every_subject_as_often_as_the_others():
    rows = np.array([[0.1, 0.0], [0.5, 1.0], [0.9, 1.0]], np.float32)
    drawn = stratified_rows(rows, 10, seed=0)
    assert drawn.shape == (10, 2) and drawn.dtype == np.float32
    times = [np.sum(np.all(drawn == row, axis=1)) for row in rows]
    assert sorted(times) == [3, 3, 4]


def test_the_settings_are_the_sampling_keys_a_shipped_model_may_change():
    import dataclasses

    from brainvq import config

    names = [field.name for field in dataclasses.fields(SamplingSettings)]
    assert names == list(config.SAMPLING_KEYS)


def test_settings_come_from_a_runs_values_and_overrides_that_are_given():
    values = {"temperature": 0.9, "top_k": 32, "guidance": 1.5, "seed": 42}
    settings = SamplingSettings.from_values(values, temperature=None, top_k=64)
    assert (settings.temperature, settings.top_k, settings.guidance) == (0.9, 64, 1.5)
    assert settings.covariate_guidance == 1.0 and settings.unconditional == "positions"


def test_the_inferer_reads_and_writes_no_file(models, monkeypatch, tmp_path):
    vqvae, prior = models
    sampler = SliceInferer(vqvae, prior, SamplingSettings(top_k=4),
                           slice_position_counts=np.ones(SLICES))
    monkeypatch.chdir(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError(f"the inferer touched a file: {args}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(pathlib.Path, "open", refuse)
    (unconditional, codes), (conditioned, _) = sampler([Request(3), Request(2, 1)], seed=0)
    assert unconditional.shape == (3, 32, 32, 1) and conditioned.shape == (2, 32, 32, 1)
    assert 0.0 <= unconditional.min() and unconditional.max() <= 1.0
    assert codes.shape == (3, GRID, GRID) and codes.dtype == np.int32
    assert list(tmp_path.iterdir()) == []


def test_unconditional_samples_are_drawn_at_the_recorded_positions(models):
    vqvae, prior = models
    settings = SamplingSettings(temperature=1.0, top_k=0, guidance=1.0)
    only_two = SliceInferer(vqvae, prior, settings, slice_position_counts=[0, 0, 5, 0])
    (_, unconditional), = only_two([Request(4)], seed=1)
    (_, at_two), = only_two([Request(4, 2)], seed=1)
    np.testing.assert_array_equal(unconditional, at_two)  # every one drew position 2
    null = SliceInferer(vqvae, prior, SamplingSettings(unconditional="null"))
    (_, under_null), = null([Request(4)], seed=1)
    (_, at_null), = only_two([Request(4, SLICES)], seed=1)  # the no-condition row
    np.testing.assert_array_equal(under_null, at_null)


def test_covariates_are_refused_by_a_prior_without_them(models):
    vqvae, prior = models
    sampler = SliceInferer(vqvae, prior, SamplingSettings())
    with pytest.raises(ValueError, match="trained without covariates"):
        sampler([Request(1, covariates=np.array([0.5], np.float32))], seed=0)


def test_a_pose_spread_draws_each_sample_at_a_training_slices_pose(models):
    vqvae, _ = models
    posed = make_prior(augmentation_inputs=5)
    last = posed.augmentation_encoder.layers[-1].kernel
    last.assign(np.full(tuple(last.shape), 0.5, np.float32))  # trained: the pose shows
    slice_poses = np.array([[position, 4.0 * (position - 1.5), 3.0] for position in
                            range(SLICES)], np.float32)
    settings = SamplingSettings(top_k=0)
    upright = SliceInferer(vqvae, posed, settings)
    spread = SliceInferer(vqvae, posed, SamplingSettings(top_k=0, pose_spread=1.0),
                          slice_poses=slice_poses)
    requests = [Request(4), Request(4, 1)]
    drawn = [codes for _, codes in spread(requests, seed=2)]
    assert all(not np.array_equal(codes, straight)
               for codes, (_, straight) in zip(drawn, upright(requests, seed=2)))
    again = [codes for _, codes in spread(requests, seed=2)]
    assert all(np.array_equal(first, second) for first, second in zip(drawn, again))
    with pytest.raises(ValueError, match="slice_poses"):
        SliceInferer(vqvae, posed, SamplingSettings(pose_spread=1.0))
    with pytest.raises(ValueError, match="prior_pose_condition"):
        SliceInferer(vqvae, models[1], SamplingSettings(pose_spread=1.0),
                     slice_poses=slice_poses)
