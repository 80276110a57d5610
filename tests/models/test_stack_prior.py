"""Tests of `StackPixelCNN`, the prior of a 3D code grid's layer given every layer below it
(issue 52): it reads the layers below and no layer above, saves and loads, learns, and its
sampler draws whole seeded stacks."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainvq.generation import stacks  # noqa: E402
from brainvq.models.stack_prior import (  # noqa: E402
    StackPixelCNN,
    layers_below,
    stack_examples,
)

CODES, GRID, DEPTH = 6, 4, 3


def make_stack_prior(seed=0, **kwargs):
    prior = StackPixelCNN(context_layers=DEPTH, num_codes=CODES, grid_size=GRID, filters=8,
                          num_layers=1, num_slice_positions=5, condition_dropout=0.0,
                          attention_heads=1, seed=seed, **kwargs)
    prior.build()
    return prior


def logits(prior, below, layer=None):
    count = len(below)
    layer = np.zeros((count, GRID, GRID), np.int32) if layer is None else layer
    return keras.ops.convert_to_numpy(prior(
        {"code_indices": layer, "slice_index": np.full(count, 2, np.int32),
         "condition_codes": below}))


def test_layers_below_are_the_nearest_last_and_absent_under_the_bottom():
    codes = np.arange(4)[None, :, None, None] * np.ones((2, 4, GRID, GRID), np.int32)
    below = layers_below(codes, 2, DEPTH, CODES)
    assert below.shape == (2, DEPTH, GRID, GRID)
    assert [int(below[0, d, 0, 0]) for d in range(DEPTH)] == [CODES, 0, 1]
    assert (layers_below(codes, 0, DEPTH, CODES) == CODES).all()
    assert [int(v) for v in layers_below(codes, 4, DEPTH, CODES)[1, :, 0, 0]] == [1, 2, 3]
    layer, depth, examples_below = stack_examples(codes, DEPTH, CODES)
    assert layer.shape == (8, GRID, GRID) and list(depth) == [0, 1, 2, 3] * 2
    np.testing.assert_array_equal(examples_below[6], below[0])


@pytest.mark.parametrize("depth", range(DEPTH))
def test_every_layer_below_changes_the_logits(depth):
    prior = make_stack_prior()
    below = np.random.default_rng(0).integers(0, CODES, (1, DEPTH, GRID, GRID))
    changed = below.copy()
    changed[0, depth] = (changed[0, depth] + 1) % CODES
    assert np.abs(logits(prior, below) - logits(prior, changed)).max() > 1e-4


def test_the_layer_drawn_stays_causal_given_the_layers_below():
    prior = make_stack_prior()
    rng = np.random.default_rng(1)
    below = rng.integers(0, CODES, (1, DEPTH, GRID, GRID))
    layer = rng.integers(0, CODES, (1, GRID, GRID))
    later = layer.copy()
    later[0, -1, -1] = (later[0, -1, -1] + 1) % CODES  # the last position: nothing may see it
    np.testing.assert_allclose(logits(prior, below, layer), logits(prior, below, later),
                               atol=1e-6)


def test_condition_noise_replaces_codes_but_never_the_absent_layers():
    prior = make_stack_prior(condition_noise=1.0)
    below = np.full((50, DEPTH, GRID, GRID), 1, np.int32)
    below[:, 0] = prior.absent_code
    corrupted = keras.ops.convert_to_numpy(prior.corrupt_condition(below))
    assert (corrupted[:, 0] == prior.absent_code).all()
    assert (corrupted[:, 1:] < CODES).all() and (corrupted[:, 1:] != 1).any()


def test_it_saves_and_loads_with_the_same_logits(tmp_path):
    prior = make_stack_prior()
    below = np.random.default_rng(2).integers(0, CODES + 1, (2, DEPTH, GRID, GRID))
    prior.save(tmp_path / "stack_prior.keras")
    loaded = keras.saving.load_model(tmp_path / "stack_prior.keras")
    assert loaded.context_layers == DEPTH and loaded.condition_shape == (DEPTH, GRID, GRID)
    np.testing.assert_allclose(logits(loaded, below), logits(prior, below), atol=1e-5)


def test_it_learns_that_a_layer_repeats_the_one_below_and_draws_seeded_stacks():
    # Stacks whose layers all copy the bottom one: given the layers below, a layer is certain.
    rng = np.random.default_rng(3)
    bottoms = rng.integers(0, CODES, (64, 1, GRID, GRID))
    codes = np.repeat(bottoms, 4, axis=1).astype(np.int32)
    layer, depth, below = stack_examples(codes, DEPTH, CODES)
    keras.utils.set_random_seed(0)
    prior = make_stack_prior()
    prior.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs = {"code_indices": layer, "slice_index": depth, "condition_codes": below}
    history = prior.fit(inputs, layer, batch_size=32, epochs=30, verbose=0)
    above_bottom = depth > 0
    upper = prior.evaluate({name: value[above_bottom] for name, value in inputs.items()},
                           layer[above_bottom], verbose=0)
    assert upper < 0.2 * np.log(CODES) < history.history["loss"][0]
    drawn = stacks.sample_stack_codes_given_below(prior, 3, 4, seed=5)
    assert drawn.shape == (3, 4, GRID, GRID) and drawn.dtype == np.int32
    np.testing.assert_array_equal(drawn, stacks.sample_stack_codes_given_below(prior, 3, 4,
                                                                               seed=5))
    # Drawn as it learned: each layer mostly repeats the one below.
    assert (drawn[:, 1:] == drawn[:, :-1]).mean() > 0.8
