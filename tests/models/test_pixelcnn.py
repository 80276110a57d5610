"""Tests of the gated PixelCNN prior (pixelcnn.py; tiny shapes, CPU).

Causality is checked by perturbation: every input position is changed on its own and the
positions whose outputs move are compared with the exact receptive field the architecture
should have (so a leak, a blind spot, or a receptive field that is too small all fail).
"""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import modules  # noqa: E402
from helpers import (  # noqa: E402
    CHANGED,
    CODES,
    FILTERS,
    GRID,
    LAYERS,
    MASK_RULES,
    SLICES,
    UNCHANGED,
    assert_dependencies,
    dependency_matrix,
    expected_matrix,
    logits_of,
    make_prior,
    perturb_code,
    perturb_vector,
)

# ---------------------------------------------------------------------------------------------
# Gated layers and the whole network
# ---------------------------------------------------------------------------------------------

def test_first_gated_layer_stacks_are_causal():
    layer = modules.GatedPixelCNNLayer(FILTERS, 3, mask_type="A")
    layer.build((None, GRID, GRID, FILTERS))
    base = np.random.default_rng(0).normal(size=(GRID, GRID, FILTERS)).astype("float32")

    def stack_output(index):
        return lambda batch: ops.convert_to_numpy(layer(batch, batch, training=False)[index])

    vertical = dependency_matrix(stack_output(0), base, perturb_vector(np.random.default_rng(1)))
    horizontal = dependency_matrix(stack_output(1), base,
                                   perturb_vector(np.random.default_rng(1)))
    above = MASK_RULES[("vertical", "A")]
    assert_dependencies(vertical, expected_matrix(GRID, above))  # rows strictly above only
    assert_dependencies(horizontal, expected_matrix(GRID, MASK_RULES[("full", "A")]))


def test_later_gated_layer_stacks_are_causal():
    layer = modules.GatedPixelCNNLayer(FILTERS, 3, mask_type="B", condition_dim=FILTERS)
    layer.build((None, GRID, GRID, FILTERS))
    rng = np.random.default_rng(0)
    vertical_in, horizontal_in = rng.normal(size=(2, GRID, GRID, FILTERS)).astype("float32")
    condition = rng.normal(size=(1, FILTERS)).astype("float32")

    def run(vertical, horizontal, index):
        condition_batch = np.repeat(condition, len(vertical), axis=0)
        return ops.convert_to_numpy(layer(vertical, horizontal, condition_batch,
                                          training=False)[index])

    def changes(perturbed_input, output):
        if perturbed_input == "vertical":
            def apply(batch):
                return run(batch, np.repeat(horizontal_in[None], len(batch), 0), output)
            return dependency_matrix(apply, vertical_in, perturb_vector(np.random.default_rng(1)))
        def apply(batch):
            return run(np.repeat(vertical_in[None], len(batch), 0), batch, output)
        return dependency_matrix(apply, horizontal_in, perturb_vector(np.random.default_rng(1)))

    vertical_window = expected_matrix(GRID, MASK_RULES[("vertical", "B")])
    # The vertical input at rows <= r (features that only see rows < r) feeds both stacks.
    assert_dependencies(changes("vertical", 0), vertical_window)
    assert_dependencies(changes("vertical", 1), vertical_window)
    # The horizontal input feeds only the horizontal stack: row r, columns <= c.
    assert_dependencies(changes("horizontal", 0), np.zeros((GRID ** 2, GRID ** 2), bool))
    assert_dependencies(changes("horizontal", 1),
                        expected_matrix(GRID, MASK_RULES[("horizontal", "B")]))


def network_rule(reach):
    """Receptive field of the whole prior: `reach` rows above over +-reach columns, and
    `reach` columns to the left in the same row."""
    return lambda r, c, rq, cq: (((r - rq >= 1) & (r - rq <= reach) & (abs(cq - c) <= reach))
                                 | ((rq == r) & (c - cq >= 1) & (c - cq <= reach)))


def test_network_logits_have_the_exact_causal_receptive_field():
    prior = make_prior()
    base = np.random.default_rng(0).integers(0, CODES, (GRID, GRID))
    change = dependency_matrix(lambda batch: logits_of(prior, batch, np.full(len(batch), 1)),
                               base, perturb_code(np.random.default_rng(1)))
    reach = prior.causal_reach
    assert reach == (LAYERS + 1) * 1
    assert_dependencies(change, expected_matrix(GRID, network_rule(reach)))
    # Spelled out: (4, 4) sees the row above two columns to the right, and its left neighbour.
    p = 4 * GRID + 4
    assert change[p, 3 * GRID + 6] > CHANGED and change[p, 4 * GRID + 3] > CHANGED
    assert change[p, p] <= UNCHANGED and change[p, p + 1] <= UNCHANGED


def test_network_logits_ignore_every_later_position_at_once():
    prior = make_prior()
    rng = np.random.default_rng(0)
    base = rng.integers(0, CODES, (GRID, GRID))
    flat = base.reshape(-1)
    future, past = [], []
    for position in range(GRID * GRID):
        later = flat.copy()
        shift = rng.integers(1, CODES, GRID * GRID - position)
        later[position:] = (later[position:] + shift) % CODES
        earlier = flat.copy()
        earlier[:position] = (earlier[:position] + rng.integers(1, CODES, position)) % CODES
        future.append(later.reshape(GRID, GRID))
        past.append(earlier.reshape(GRID, GRID))
    logits = logits_of(prior, np.stack([base] + future + past))
    reference = logits[0].reshape(GRID * GRID, -1)
    future_logits = logits[1:1 + GRID * GRID].reshape(GRID * GRID, GRID * GRID, -1)
    past_logits = logits[1 + GRID * GRID:].reshape(GRID * GRID, GRID * GRID, -1)
    positions = np.arange(GRID * GRID)
    future_change = np.abs(future_logits[positions, positions] - reference).max(-1)
    past_change = np.abs(past_logits[positions, positions] - reference).max(-1)
    assert (future_change <= UNCHANGED).all()
    assert (past_change[1:] > CHANGED).all()  # position 0 has nothing before it


def test_no_blind_spot_the_last_position_sees_every_earlier_one():
    # Kernel 5 and 3 gated layers reach 6 rows up and 6 columns either side: the whole 6x6 grid.
    prior = make_prior(grid=6, kernel_size=5)
    base = np.random.default_rng(0).integers(0, CODES, (6, 6))
    change = dependency_matrix(lambda batch: logits_of(prior, batch), base,
                               perturb_code(np.random.default_rng(1)))
    last = 6 * 6 - 1
    assert (change[last, :last] > CHANGED).all()
    assert change[last, last] <= UNCHANGED
    assert_dependencies(change, expected_matrix(6, network_rule(prior.causal_reach)))


def test_condition_changes_logits_and_is_dropped_in_training():
    prior = make_prior(condition_dropout=1.0)
    codes = np.random.default_rng(0).integers(0, CODES, (2, GRID, GRID))
    conditional = logits_of(prior, codes, [1, 2])
    unconditional = logits_of(prior, codes)  # no slice_index: the unconditional row
    np.testing.assert_allclose(unconditional, logits_of(prior, codes, [SLICES, SLICES]))
    assert np.abs(conditional - unconditional).max() > 1e-3
    # condition_dropout=1.0: in training every example falls back to the unconditional row.
    dropped = ops.convert_to_numpy(prior((codes.astype("int32"), np.array([1, 2], "int32")),
                                         training=True))
    np.testing.assert_allclose(dropped, unconditional, atol=1e-5)


def test_prior_loss_falls_on_a_fixed_batch():
    keras.utils.set_random_seed(0)
    import hyperparameters

    prior = modules.prior_from_hyperparameters(
        dict(hyperparameters.DEFAULTS, prior_filters=FILTERS, prior_layers=LAYERS,
             prior_kernel_size=3, prior_dropout=0.1, num_codes=CODES,
             num_slice_positions=SLICES), 6)
    rng = np.random.default_rng(0)
    # Structured grids: each is a stripe pattern, so the codes are predictable from the past.
    stripes = (np.arange(6)[None, :, None] + rng.integers(0, CODES, (16, 1, 1))) % CODES
    codes = np.broadcast_to(stripes, (16, 6, 6)).astype("int32")
    slices = rng.integers(0, SLICES, 16).astype("int32")
    prior.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = prior.fit((codes, slices), codes, batch_size=16, epochs=30, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
