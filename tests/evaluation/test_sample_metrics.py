"""Tests of the sample metrics (sample_metrics.py) against hand-computed cases."""
import numpy as np
import pytest

from brainvq.evaluation import sample_metrics
from helpers import smooth_image


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(6).normal(0.0, 3.0, (500, 8))
    assert abs(sample_metrics.frechet_distance(features, features)) < 1e-6 * np.var(features) * 8


def test_frechet_distance_grows_with_a_mean_shift():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(2000, 4))
    b = rng.normal(size=(2000, 4))
    distances = [sample_metrics.frechet_distance(a, b + shift) for shift in (0.5, 1.0, 2.0)]
    assert distances[0] < distances[1] < distances[2]


def test_frechet_distance_equals_squared_mean_difference_for_equal_covariances():
    rng = np.random.default_rng(8)
    mixing = rng.normal(size=(4, 4))
    a = rng.normal(size=(20000, 4)) @ mixing
    shift = np.array([1.0, -2.0, 0.5, 1.5])
    b = rng.normal(size=(20000, 4)) @ mixing + shift
    expected = float(shift @ shift)
    assert sample_metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)


def test_frechet_distance_with_singular_covariances_is_finite():
    rng = np.random.default_rng(9)
    a = np.repeat(rng.normal(size=(50, 1)), 3, axis=1)  # rank-1 covariance
    b = np.repeat(rng.normal(size=(50, 1)), 3, axis=1) + 1.0
    distance = sample_metrics.frechet_distance(a, b)
    assert np.isfinite(distance) and distance > 0


# ------------------------------------------------------------------------------------------------
# memorisation and diversity


def test_nearest_neighbour_finds_an_exact_copy():
    training = np.stack([smooth_image(seed, size=64) for seed in range(40)])[..., None]
    noise = np.random.default_rng(10).random((64, 64, 1)).astype(np.float32)
    samples = np.stack([training[17], noise, training[3]])
    nearest, index = sample_metrics.nearest_neighbour_ssim(samples, training)
    assert nearest[0] == pytest.approx(1.0) and index[0] == 17
    assert nearest[2] == pytest.approx(1.0) and index[2] == 3
    assert nearest[1] < 0.5
    flags = sample_metrics.memorisation_flags(nearest)
    assert flags.tolist() == [True, False, True]
    # a subset of the training set still reports indices into the full set
    nearest, index = sample_metrics.nearest_neighbour_ssim(samples[:1], training, max_training=40)
    assert index[0] == 17


def test_memorisation_flags_threshold_and_nan():
    flags = sample_metrics.memorisation_flags([0.2, 0.89, 0.91, 0.99, np.nan])
    assert flags.tolist() == [False, False, True, True, False]


def test_pairwise_ms_ssim_measures_diversity():
    copies = np.stack([smooth_image(11)] * 5)
    mean, std = sample_metrics.pairwise_ms_ssim(copies)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-9)
    different = np.stack([smooth_image(seed) for seed in range(20, 28)])
    mean_different, _ = sample_metrics.pairwise_ms_ssim(different)
    assert mean_different < 0.9
    subset_mean, _ = sample_metrics.pairwise_ms_ssim(different, max_pairs=10, seed=1)
    assert 0.0 <= subset_mean < 0.9
    # images too small for MS-SSIM fall back to SSIM
    tiny = np.stack([smooth_image(12, size=16)] * 3)
    assert sample_metrics.pairwise_ms_ssim(tiny)[0] == pytest.approx(1.0)


def test_pair_subset_is_distinct_and_ordered():
    first, second = sample_metrics._pair_indices(10, 30, seed=0)
    pairs = set(zip(first.tolist(), second.tolist()))
    assert len(pairs) == 30 and all(0 <= i < j < 10 for i, j in pairs)
    first, second = sample_metrics._pair_indices(10, None, seed=0)
    assert len(first) == 45


# ------------------------------------------------------------------------------------------------
# code histograms


def test_code_histogram_sums_to_one():
    codes = np.random.default_rng(13).integers(0, 8, size=(5, 4, 4))
    histogram = sample_metrics.code_histogram(codes, 10)
    assert histogram.shape == (10,)
    assert histogram.sum() == pytest.approx(1.0)
    assert histogram[8:].sum() == 0
    assert histogram[3] == pytest.approx(np.mean(codes == 3))
    with pytest.raises(ValueError):
        sample_metrics.code_histogram(codes, 5)


def test_histogram_distance():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    same = sample_metrics.histogram_distance(p, p)
    assert same["total_variation"] == pytest.approx(0.0)
    assert same["js_divergence_bits"] == pytest.approx(0.0, abs=1e-12)
    disjoint = sample_metrics.histogram_distance([0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.3, 0.7])
    assert disjoint["total_variation"] == pytest.approx(1.0)
    assert disjoint["js_divergence_bits"] == pytest.approx(1.0)
    partial = sample_metrics.histogram_distance([0.5, 0.5], [0.25, 0.75])
    assert 0 < partial["js_divergence_bits"] < 1
    assert partial["total_variation"] == pytest.approx(0.25)
