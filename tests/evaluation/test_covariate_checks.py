"""The rulers of covariate_checks.py on a toy case where brightness tells the age: the ruler
learns it from real slices, agrees with images made at requested values, and the shuffled
control falls to chance."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from brainvq.evaluation import covariate_checks  # noqa: E402

AGE = {"name": "age", "kind": "continuous", "low": 20.0, "high": 80.0}


def toy_slices(encoded_ages, seed):
    """Discs whose brightness is the encoded age (0 .. 1), with noise."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1, 1, 32)
    disc = (grid[:, None] ** 2 + grid[None, :] ** 2) < 0.6
    images = [np.clip(disc * (0.3 + 0.6 * age) + rng.normal(0, 0.02, disc.shape), 0, 1)
              for age in encoded_ages]
    return np.asarray(images, np.float32)[..., None]


def toy_ruler_reading(train_count, requested_count, epochs, copies):
    """A ruler trained on `train_count` toy slices of random ages, read on toy slices requested
    at `requested_count` ages spread over the range: (requested, reading)."""
    train_ages = np.random.default_rng(0).random(train_count).astype(np.float32)
    ruler = covariate_checks.train_ruler(toy_slices(train_ages, 1),
                                         np.zeros(train_count, np.int32), train_ages, AGE,
                                         num_slice_positions=4, epochs=epochs, copies=copies)
    requested = covariate_checks.requested_values(AGE, requested_count, seed=3)
    reading = covariate_checks.measure(ruler, AGE, toy_slices(requested, 2),
                                       np.zeros(requested_count))
    return requested, reading


def test_the_ruler_reads_requests_and_the_shuffled_control_falls_to_chance():
    requested, reading = toy_ruler_reading(240, 64, epochs=12, copies=1)
    assert requested.min() == 0.0 and requested.max() == 1.0
    faithful = covariate_checks.agreement(AGE, requested, reading)
    control = covariate_checks.agreement(AGE, np.random.default_rng(4).permutation(requested),
                                         reading)
    assert faithful["r"] > 0.9 and faithful["mae"] < 8.0  # years
    assert abs(control["r"]) < 0.35 and control["mae"] > 2 * faithful["mae"]


def test_agreement_of_classes_is_accuracy():
    sex = {"name": "sex", "kind": "categorical", "classes": ["F", "M"]}
    assert covariate_checks.agreement(sex, [0, 1, 1, np.nan], [0, 1, 0, 1]) == {
        "accuracy": pytest.approx(2 / 3)}


def test_plausibility_of_requested_samples_is_told_at_the_edges_of_the_range():
    from brainvq.evaluation import realism

    ranges = realism.plausibility_ranges(toy_slices(np.linspace(0, 1, 40), 5))
    requested = np.linspace(0.0, 1.0, 20).astype(np.float32)  # 2 in each tenth
    samples = toy_slices(requested, 6)
    samples[requested >= 0.9] = 0.0  # blank slices where the oldest ages were asked for
    shares = covariate_checks.plausible_shares(AGE, requested, samples, ranges)
    assert shares == {"of all": pytest.approx(18 / 20), "lowest tenth": 1.0,
                      "highest tenth": 0.0}
    sex = {"name": "sex", "kind": "categorical", "classes": ["F", "M"]}
    assert set(covariate_checks.plausible_shares(sex, requested % 2, samples, ranges)) == {
        "of all"}


def test_a_ruler_trained_on_more_augmented_copies_still_reads_the_toy_age():
    requested, reading = toy_ruler_reading(120, 32, epochs=8, copies=3)
    assert covariate_checks.agreement(AGE, requested, reading)["r"] > 0.9
