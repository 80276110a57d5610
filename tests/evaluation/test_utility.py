"""The utility model (evaluation/utility.py) learns what its labels say and nothing else: on
toy slices whose brightness carries the age, whose bright edges the sex and whose stripe the
slice position, it reads all three from new slices; trained on the same slices with their
labels shuffled, it reads nothing."""
import numpy as np
import pytest

pytest.importorskip("keras")

from brainvq.evaluation import utility  # noqa: E402

SPECS = [{"name": "age", "kind": "continuous", "low": 20.0, "high": 80.0},
         {"name": "sex", "kind": "categorical", "classes": ["F", "M"]}]
POSITIONS = 8


def toy_slices(count, seed, size=32):
    rng = np.random.default_rng(seed)
    age = rng.random(count).astype(np.float32)
    sex = rng.integers(0, 2, count)
    position = rng.integers(0, POSITIONS, count).astype(np.int32)
    images = rng.normal(0.0, 0.03, (count, size, size, 1)).astype(np.float32)
    images += 0.2 + 0.6 * age[:, None, None, None]  # brighter: older
    rows = size // POSITIONS
    for index in range(count):
        images[index, position[index] * rows:(position[index] + 1) * rows] += 0.5  # stripe
        images[index, :, :4] += 0.5 * sex[index]  # bright edge columns (mirror-symmetric): sex
        images[index, :, -4:] += 0.5 * sex[index]
    covariates = np.stack([age, sex.astype(np.float32)], axis=1)
    return utility.LabelledSlices(np.clip(images, 0, 1.5), covariates, position)


def test_labelled_slices_shuffle_label_rows_together_and_keep_the_images():
    slices = toy_slices(50, seed=0)
    shuffled = slices.shuffled(seed=1)
    np.testing.assert_array_equal(shuffled.images, slices.images)
    assert not np.array_equal(shuffled.slice_index, slices.slice_index)
    # each row moves whole: age, sex and position stay together
    before = {tuple(row) for row in np.column_stack([slices.covariates, slices.slice_index])}
    after = {tuple(row) for row in np.column_stack([shuffled.covariates,
                                                    shuffled.slice_index])}
    assert before == after


def test_unknown_covariates_are_left_out_and_sets_concatenate_in_order():
    slices = toy_slices(6, seed=0)
    slices.covariates[2, 0] = np.nan
    known = slices.known()
    assert len(known) == 5 and not np.isnan(known.covariates).any()
    both = utility.concatenate(known, slices.take(np.array([0])))
    assert len(both) == 6
    np.testing.assert_array_equal(both.images[-1], slices.images[0])


def test_area_average_halves_a_128_slice_twice_and_keeps_small_ones():
    images = np.arange(2 * 128 * 128, dtype=np.float32).reshape(2, 128, 128, 1)
    averaged = utility.area_average(images)
    assert averaged.shape == (2, 64, 64, 1)
    np.testing.assert_allclose(averaged[0, 0, 0, 0], images[0, :2, :2, 0].mean())
    assert utility.area_average(images[:, :32, :32]).shape == (2, 32, 32, 1)


def test_the_model_reads_age_sex_and_position_and_nothing_from_shuffled_labels():
    train, held_out = toy_slices(400, seed=0), toy_slices(100, seed=1)
    model = utility.train_utility_model(train, SPECS, POSITIONS, seed=0, images_seen=4000)
    figures = utility.judge(model, held_out, SPECS)
    assert set(figures) == {"age r", "age MAE", "sex accuracy", "position within 2"}
    assert figures["age r"] > 0.8 and figures["age MAE"] < 10.0  # years over a 60-year range
    assert figures["sex accuracy"] > 0.9
    # within 2 of 8 positions by chance: at most 5/8
    assert figures["position within 2"] > 0.9
    control = utility.train_utility_model(train.shuffled(seed=3), SPECS, POSITIONS, seed=0,
                                          images_seen=4000)
    chance = utility.judge(control, held_out, SPECS)
    assert abs(chance["age r"]) < 0.4 and chance["sex accuracy"] < 0.75
