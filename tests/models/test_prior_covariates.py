"""The prior's covariates (age, sex, ... beside the slice position): the logits change with
them, each is dropped independently in training, "not given" is the dropped condition, they
survive save/load, and the sampler takes them."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from brainvq.generation import sampling, sampling_loops  # noqa: E402
from brainvq.models.pixelcnn import GatedPixelCNN  # noqa: E402

COVARIATES = ({"name": "age", "kind": "continuous", "low": 20.0, "high": 80.0},
              {"name": "sex", "kind": "categorical", "classes": ["F", "M"]})
GRID, CODES = 6, 8


def make_prior(condition_dropout=0.1, covariates=COVARIATES):
    keras.utils.set_random_seed(0)
    prior = GatedPixelCNN(num_codes=CODES, grid_size=GRID, filters=16, num_layers=2,
                          dropout=0.0, num_slice_positions=4,
                          condition_dropout=condition_dropout, covariates=covariates)
    prior.build()
    return prior


def logits(prior, covariates, training=False, batch=2, slice_index=2):
    codes = np.random.default_rng(1).integers(0, CODES, (batch, GRID, GRID)).astype("int32")
    inputs = {"code_indices": codes, "slice_index": np.full((batch,), slice_index, "int32"),
              "covariates": np.asarray(covariates, "float32")}
    return ops.convert_to_numpy(prior(inputs, training=training))


def test_logits_change_with_the_age_input():
    prior = make_prior()
    young = logits(prior, [[0.1, 0.0]] * 2)
    old = logits(prior, [[0.9, 0.0]] * 2)
    assert np.abs(young - old).max() > 1e-3
    assert np.abs(logits(prior, [[0.9, 1.0]] * 2) - old).max() > 1e-3  # and with sex


def test_not_given_is_the_dropped_condition():
    always_dropped = make_prior(condition_dropout=1.0)  # drops the slice position too
    dropped = logits(always_dropped, [[0.7, 1.0]] * 2, training=True)
    not_given = logits(always_dropped, [[np.nan, np.nan]] * 2,
                       slice_index=always_dropped.unconditional_index)
    np.testing.assert_allclose(dropped, not_given, atol=1e-5)


def test_each_covariate_is_dropped_independently():
    prior = make_prior(condition_dropout=0.5)
    batch = 2000
    given = np.tile([[0.7, 1.0]], (batch, 1)).astype("float32")
    drawn = ops.convert_to_numpy(prior.covariate_condition(given, batch, training=True))
    patterns = {}
    for age in (0.7, np.nan):
        for sex in (1.0, np.nan):
            row = np.array([[age, sex]], "float32")
            patterns[(age == age, sex == sex)] = ops.convert_to_numpy(
                prior.covariate_condition(row, 1))[0]
    keys = list(patterns)
    distances = np.stack([np.abs(drawn - patterns[key]).max(axis=1) for key in keys], axis=1)
    assert (distances.min(axis=1) < 1e-5).all()  # every row is one of the four patterns
    shares = np.bincount(distances.argmin(axis=1), minlength=4) / batch
    assert np.all(np.abs(shares - 0.25) < 0.05), dict(zip(keys, shares))


def test_covariates_survive_save_and_load(tmp_path):
    prior = make_prior()
    before = logits(prior, [[0.3, 1.0], [0.6, 0.0]])
    prior.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert loaded.covariates == list(COVARIATES)
    np.testing.assert_allclose(logits(loaded, [[0.3, 1.0], [0.6, 0.0]]), before, atol=1e-5)


def test_the_sampler_takes_covariates_seeded():
    prior = make_prior()
    first = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4, covariates=[0.2, 1.0])
    again = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4, covariates=[0.2, 1.0])
    np.testing.assert_array_equal(first, again)
    whole = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4, covariates=[0.2, 1.0],
                                  crop=False)
    np.testing.assert_array_equal(first, whole)  # the row-cached loop sees them too
    with pytest.raises(ValueError, match="shape"):
        sampling.sample_codes(prior, 3, GRID, covariates=[[0.2, 1.0, 3.0]] * 3)
    with pytest.raises(ValueError, match="without covariates"):
        sampling.sample_codes(make_prior(covariates=()), 3, GRID, covariates=[0.2, 1.0])


def test_guidance_sharpens_the_slice_position_and_keeps_the_covariates():
    prior = make_prior()
    position_dropped = sampling.sample_codes(prior, 3, GRID, seed=4, covariates=[0.2, 1.0],
                                             slice_index=prior.unconditional_index)
    guided_zero = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4,
                                        covariates=[0.2, 1.0], guidance=0.0)
    np.testing.assert_array_equal(guided_zero, position_dropped)  # u + 0 * (c - u) = u


def test_covariate_guidance_has_its_own_scale():
    prior = make_prior()
    covariates_dropped = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4,
                                               covariates=[np.nan, np.nan])
    guided_zero = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4,
                                        covariates=[0.2, 1.0], covariate_guidance=0.0)
    np.testing.assert_array_equal(guided_zero, covariates_dropped)  # the slice kept
    plain = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4, guidance=3.0)
    nothing_to_guide = sampling.sample_codes(prior, 3, GRID, slice_index=1, seed=4,
                                             guidance=3.0, covariate_guidance=5.0)
    np.testing.assert_array_equal(nothing_to_guide, plain)  # no covariate given: no pass
    with pytest.raises(ValueError, match="covariate_guidance"):
        sampling.sample_codes(prior, 1, GRID, covariates=[0.2, 1.0], covariate_guidance=-1.0)


def guide(rows, scales):
    return (ops.convert_to_tensor(np.asarray(rows, "int32")),
            ops.convert_to_tensor(np.asarray(scales, "float32")))


def test_two_guidance_scales_add_their_differences():
    conditioned, without_slice, without_covariates = 1.0, 0.5, 0.75
    logits = np.array([[conditioned], [without_slice], [without_covariates]], "float32")
    guided = ops.convert_to_numpy(sampling_loops.guided(ops.convert_to_tensor(logits),
                                                   (guide([0], [3.0]), guide([0], [2.0]))))
    np.testing.assert_allclose(guided, [[1.0 + 2.0 * 0.5 + 1.0 * 0.25]])
    np.testing.assert_allclose(  # one scale: u + g (c - u)
        ops.convert_to_numpy(sampling_loops.guided(ops.convert_to_tensor(logits[:2]),
                                              (guide([0], [3.0]),))),
        [[0.5 + 3.0 * 0.5]])


def test_guidance_acts_only_on_the_rows_it_guides_at_their_own_scale():
    # three conditioned rows; rows 2 and 0 have a copy with the condition dropped
    logits = np.array([[1.0], [4.0], [2.0], [0.0], [1.0]], "float32")
    guided = ops.convert_to_numpy(sampling_loops.guided(ops.convert_to_tensor(logits),
                                                   (guide([2, 0], [3.0, 1.0]),)))
    np.testing.assert_allclose(guided, [[1.0], [4.0], [2.0 + 2.0 * 2.0]])
    codes = ops.convert_to_numpy(sampling_loops.all_copies(ops.convert_to_tensor(
        np.array([7, 8, 9], "int32")), (guide([2, 0], [3.0, 1.0]),)))
    np.testing.assert_array_equal(codes, [7, 8, 9, 9, 7])


def test_samples_with_their_own_guidance_match_those_drawn_alone():
    prior = make_prior()
    together = sampling.sample_codes(prior, 4, GRID, slice_index=[1, 1, 2, 2], seed=4,
                                     top_k=1, guidance=[1.0, 3.0, 1.0, 3.0])
    plain = sampling.sample_codes(prior, 4, GRID, slice_index=[1, 1, 2, 2], seed=4, top_k=1)
    guided = sampling.sample_codes(prior, 4, GRID, slice_index=[1, 1, 2, 2], seed=4, top_k=1,
                                   guidance=3.0)
    # greedy draws depend only on each row's own logits
    np.testing.assert_array_equal(together[[0, 2]], plain[[0, 2]])
    np.testing.assert_array_equal(together[[1, 3]], guided[[1, 3]])
    assert not np.array_equal(plain, guided)
    with pytest.raises(ValueError, match="one per sample"):
        sampling.sample_codes(prior, 4, GRID, guidance=[1.0, 3.0])


def test_the_age_figure_asks_for_its_ages_inside_the_training_range():
    from brainvq.generation.generate import covariate_levels

    age = dict(COVARIATES[0], low=20.21, high=79.41)  # IXI's training subjects
    assert covariate_levels(age) == ["25", "45", "65", "79"]
    assert covariate_levels(dict(age, low=18.0, high=96.0)) == ["25", "45", "65", "85"]
    assert covariate_levels(COVARIATES[1]) == ["F", "M"]
    assert len(covariate_levels(dict(age, name="weight"))) == 4


def test_the_samples_figure_names_what_was_asked(tmp_path, monkeypatch):
    from brainvq.generation import generate

    titles = []
    monkeypatch.setattr(generate.figures, "plot_image_grid",
                        lambda images, path, **options: titles.append(options["title"]))
    generate.write_samples(np.zeros((2, 8, 8, 1)), tmp_path, 3, {"age": "70", "sex": "F"})
    generate.write_samples(np.zeros((2, 8, 8, 1)), tmp_path)
    assert titles == ["2 new synthetic slices (slice index 3, age 70, sex F)",
                      "2 new synthetic slices (unconditional)"]
    assert len(list((tmp_path / "samples").glob("sample_*.png"))) == 2
