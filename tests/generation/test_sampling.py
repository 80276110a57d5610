"""Tests of the samplers (sampling.py): shapes, seeds, conditioning, top-k, the row-cached
sampler against the whole grid and the keras-io style loop, save/reload, and JAX."""
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import modules  # noqa: E402
from brainvq.generation import sampling  # noqa: E402
from helpers import CODES, GRID, SLICES, logits_of, make_prior, run_on_jax  # noqa: E402

SAMPLE_GRID = 6


@pytest.fixture(scope="module")
def prior():
    return make_prior(grid=SAMPLE_GRID)


def test_samples_have_the_right_type_shape_and_range(prior):
    codes = sampling.sample_codes(prior, 5, SAMPLE_GRID, seed=0, batch_size=2)
    assert codes.dtype == np.int32
    assert codes.shape == (5, SAMPLE_GRID, SAMPLE_GRID)
    assert codes.min() >= 0 and codes.max() < CODES


def test_sampling_is_reproducible_and_depends_on_the_seed(prior):
    first = sampling.sample_codes(prior, 4, SAMPLE_GRID, seed=3)
    again = sampling.sample_codes(prior, 4, SAMPLE_GRID, seed=3)
    other = sampling.sample_codes(prior, 4, SAMPLE_GRID, seed=4)
    np.testing.assert_array_equal(first, again)
    assert (first != other).mean() > 0.3
    # Samples within a batch differ too (each row draws its own numbers).
    assert (first[0] != first[1]).any()


def test_conditioning_changes_the_samples(prior):
    slice_0 = sampling.sample_codes(prior, 4, SAMPLE_GRID, slice_index=0, seed=5)
    slice_2 = sampling.sample_codes(prior, 4, SAMPLE_GRID, slice_index=2, seed=5)
    unconditional = sampling.sample_codes(prior, 4, SAMPLE_GRID, seed=5)
    assert (slice_0 != slice_2).any()
    assert (slice_0 != unconditional).any()
    per_sample = sampling.sample_codes(prior, 4, SAMPLE_GRID, slice_index=[0, 0, 2, 2], seed=5)
    assert per_sample.shape == (4, SAMPLE_GRID, SAMPLE_GRID)


@pytest.mark.parametrize("crop", [True, False])
def test_greedy_samples_are_the_argmax_of_their_own_logits(prior, crop):
    # top_k=1 is greedy decoding; by causality the logits of the finished grid at p are the
    # ones the sampler saw at step p, so every position must hold their argmax.
    slices = np.array([0, 1, 3, SLICES], "int32")
    codes = sampling.sample_codes(prior, 4, SAMPLE_GRID, slice_index=slices, top_k=1,
                                  seed=0, crop=crop)
    np.testing.assert_array_equal(codes, logits_of(prior, codes, slices).argmax(-1))
    other_seed = sampling.sample_codes(prior, 4, SAMPLE_GRID, slice_index=slices, top_k=1,
                                       seed=9, crop=crop)
    np.testing.assert_array_equal(codes, other_seed)


def test_top_k_restricts_samples_to_the_k_most_likely_codes(prior):
    slices = np.full(6, 1, "int32")
    codes = sampling.sample_codes(prior, 6, SAMPLE_GRID, slice_index=slices, top_k=2, seed=1,
                                  temperature=5.0)
    ranks = (logits_of(prior, codes, slices)
             > np.take_along_axis(logits_of(prior, codes, slices), codes[..., None], -1)).sum(-1)
    assert ranks.max() <= 1  # every sampled code is the best or the second best


def test_cropped_window_samples_equal_whole_grid_samples():
    prior = make_prior(grid=8, num_layers=1)  # reach 2: the window is smaller than the grid
    cropped = sampling.sample_codes(prior, 3, 8, slice_index=2, seed=11, crop=True)
    whole = sampling.sample_codes(prior, 3, 8, slice_index=2, seed=11, crop=False)
    np.testing.assert_array_equal(cropped, whole)


def test_saved_and_loaded_prior_samples_the_same_grids(prior, tmp_path):
    path = tmp_path / "prior.keras"
    prior.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, modules.GatedPixelCNN)
    assert loaded.get_config()["num_slice_positions"] == SLICES
    np.testing.assert_array_equal(
        sampling.sample_codes(prior, 3, SAMPLE_GRID, slice_index=1, seed=7),
        sampling.sample_codes(loaded, 3, SAMPLE_GRID, slice_index=1, seed=7))


def test_naive_sampler_agrees_with_the_compiled_one_when_greedy():
    prior = make_prior(grid=4)
    greedy = sampling.sample_codes(prior, 2, 4, slice_index=3, top_k=1)
    naive = sampling.sample_codes_naive(prior, 2, 4, slice_index=3, temperature=1e-6)
    assert naive.dtype == np.int32
    np.testing.assert_array_equal(naive, greedy)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="XLA is TensorFlow's")
def test_xla_sampler_draws_what_the_graph_sampler_draws(prior):
    # The suite samples without XLA (conftest.graph_samplers); users get XLA where it works.
    slices = np.array([0, 1, 3, SLICES], "int32")
    graph = sampling.sample_codes(prior, 4, SAMPLE_GRID, slice_index=slices, top_k=1,
                                  jit_compile=False, guidance=2.0)
    xla = sampling.sample_codes(prior, 4, SAMPLE_GRID, slice_index=slices, top_k=1,
                                jit_compile=True, guidance=2.0)
    np.testing.assert_array_equal(xla, graph)
    drawn = sampling.sample_codes(prior, 4, SAMPLE_GRID, seed=3, jit_compile=True)
    np.testing.assert_array_equal(
        drawn, sampling.sample_codes(prior, 4, SAMPLE_GRID, seed=3, jit_compile=True))
    assert drawn.min() >= 0 and drawn.max() < CODES and (drawn[0] != drawn[1]).any()


@pytest.mark.parametrize("kwargs,message", [
    ({"slice_index": SLICES + 1}, r"from 0 to 3"),
    ({"slice_index": -1}, r"from 0 to 3"),
    ({"slice_index": [0, 1]}, r"one index per sample"),
    ({"top_k": CODES + 1}, r"K=8"),
    ({"top_k": -1}, r"top_k"),
    ({"temperature": 0.0}, r"temperature"),
    ({"batch_size": 0}, r"batch_size"),
])
def test_bad_sampling_arguments_are_refused(prior, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampling.sample_codes(prior, 3, SAMPLE_GRID, **kwargs)


def test_grid_size_must_match_the_prior(prior):
    with pytest.raises(ValueError, match="grid_size"):
        sampling.sample_codes(prior, 2, SAMPLE_GRID + 1)


JAX_SCRIPT = textwrap.dedent("""
    import numpy as np, keras, modules
    from brainvq.generation import sampling
    keras.utils.set_random_seed(0)
    prior = modules.GatedPixelCNN(num_codes=8, grid_size=6, filters=16, num_layers=2,
                                  dropout=0.1, num_slice_positions=4)
    prior.build()
    codes = np.random.default_rng(0).integers(0, 8, (8, 6, 6)).astype("int32")
    prior.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    prior.fit((codes, np.arange(8, dtype="int32") % 4), codes, epochs=2, verbose=0)
    first = sampling.sample_codes(prior, 3, 6, slice_index=1, seed=2)
    assert (first == sampling.sample_codes(prior, 3, 6, slice_index=1, seed=2)).all()
    greedy = sampling.sample_codes(prior, 3, 6, slice_index=1, top_k=1)
    logits = np.asarray(prior({"code_indices": greedy, "slice_index": np.ones(3, "int32")}))
    assert (logits.argmax(-1) == greedy).all()
    print("jax ok")
""")


def test_prior_and_sampler_run_on_jax():
    pytest.importorskip("jax")
    run_on_jax(JAX_SCRIPT)


def test_guidance_zero_is_the_unconditional_draw_and_guidance_follows_both_loops():
    prior = make_prior(seed=3)
    slices = np.array([1, 2, 3], np.int32)
    unconditional = sampling.sample_codes(prior, 3, GRID, slice_index=SLICES, seed=4, top_k=0)
    guided_zero = sampling.sample_codes(prior, 3, GRID, slice_index=slices, seed=4, top_k=0,
                                        guidance=0.0)
    # u + 0 * (c - u) = u: the same logits and the same seed give the same codes
    np.testing.assert_array_equal(guided_zero, unconditional)
    cached = sampling.sample_codes(prior, 3, GRID, slice_index=slices, seed=4, guidance=3.0)
    whole = sampling.sample_codes(prior, 3, GRID, slice_index=slices, seed=4, guidance=3.0,
                                  crop=False)
    np.testing.assert_array_equal(cached, whole)
    plain = sampling.sample_codes(prior, 3, GRID, slice_index=slices, seed=4)
    assert not np.array_equal(cached, plain)
    with pytest.raises(ValueError, match="guidance"):
        sampling.sample_codes(prior, 1, GRID, guidance=-1.0)
