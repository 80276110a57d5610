"""Tests of the gated PixelCNN prior and the samplers (tiny shapes, CPU).

Causality is checked by perturbation: every input position is changed on its own and the
positions whose outputs move are compared with the exact receptive field the architecture
should have (so a leak, a blind spot, or a receptive field that is too small all fail).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import modules  # noqa: E402
import sampling  # noqa: E402

GRID, CODES, FILTERS, LAYERS, SLICES = 8, 8, 16, 2, 4
UNCHANGED, CHANGED = 1e-6, 1e-5  # max |difference| of an output that must not / must move


def make_prior(grid=GRID, kernel_size=3, num_layers=LAYERS, seed=0, **kwargs):
    """A tiny built prior with larger-than-default embeddings, so every dependency shows."""
    keras.utils.set_random_seed(seed)
    prior = modules.GatedPixelCNN(num_codes=CODES, grid_size=grid, filters=FILTERS,
                                  num_layers=num_layers, kernel_size=kernel_size, dropout=0.0,
                                  num_slice_positions=SLICES, **kwargs)
    prior.build()
    rng = np.random.default_rng(seed)
    for embedding in (prior.code_embedding, prior.slice_embedding):
        shape = tuple(embedding.embeddings.shape)
        embedding.embeddings.assign(rng.normal(size=shape).astype("float32"))
    return prior


def logits_of(prior, codes, slices=None):
    inputs = {"code_indices": np.asarray(codes, "int32")}
    if slices is not None:
        inputs["slice_index"] = np.asarray(slices, "int32")
    return ops.convert_to_numpy(prior(inputs, training=False))


def dependency_matrix(apply, base, perturb):
    """D[p, q] = max |change| of the outputs at raster position p when input q is perturbed.

    `base` is one example [g, g, ...]; `apply` maps a batch of examples to outputs
    [B, g, g, C]; `perturb(example, row, column)` returns a copy changed at one position.
    """
    size = base.shape[0]
    batch = [base] + [perturb(base, row, column)
                      for row in range(size) for column in range(size)]
    outputs = np.asarray(apply(np.stack(batch)))
    change = np.abs(outputs[1:] - outputs[:1]).reshape(size * size, size * size, -1).max(-1)
    return change.T


def expected_matrix(size, depends):
    """E[p, q] = depends(row_p, column_p, row_q, column_q) over all position pairs."""
    rows, columns = np.divmod(np.arange(size * size), size)
    return depends(rows[:, None], columns[:, None], rows[None, :], columns[None, :])


def assert_dependencies(change, expected):
    leaks = np.argwhere(~expected & (change > UNCHANGED))
    assert len(leaks) == 0, f"outputs p depend on inputs q they must not see: (p, q) {leaks[:5]}"
    blind = np.argwhere(expected & (change <= CHANGED))
    assert len(blind) == 0, f"outputs p ignore inputs q they should see: (p, q) {blind[:5]}"


def perturb_vector(rng):
    def perturb(example, row, column):
        changed = example.copy()
        changed[row, column] += rng.normal(size=example.shape[-1]).astype(example.dtype)
        return changed
    return perturb


def perturb_code(rng):
    def perturb(example, row, column):
        changed = example.copy()
        changed[row, column] = (changed[row, column] + rng.integers(1, CODES)) % CODES
        return changed
    return perturb


# ---------------------------------------------------------------------------------------------
# Masked convolutions
# ---------------------------------------------------------------------------------------------

H = 1  # half-width of a 3-wide kernel

MASK_RULES = {
    ("vertical", "A"): lambda r, c, rq, cq: (r - rq >= 1) & (r - rq <= H) & (abs(cq - c) <= H),
    ("vertical", "B"): lambda r, c, rq, cq: (r - rq >= 0) & (r - rq <= H) & (abs(cq - c) <= H),
    ("horizontal", "A"): lambda r, c, rq, cq: (rq == r) & (c - cq >= 1) & (c - cq <= H),
    ("horizontal", "B"): lambda r, c, rq, cq: (rq == r) & (c - cq >= 0) & (c - cq <= H),
    ("full", "A"): lambda r, c, rq, cq: (((r - rq >= 1) & (r - rq <= H) & (abs(cq - c) <= H))
                                         | ((rq == r) & (c - cq >= 1) & (c - cq <= H))),
    ("full", "B"): lambda r, c, rq, cq: (((r - rq >= 1) & (r - rq <= H) & (abs(cq - c) <= H))
                                         | ((rq == r) & (c - cq >= 0) & (c - cq <= H))),
}


@pytest.mark.parametrize("stack,mask_type", sorted(MASK_RULES))
def test_masked_conv_sees_exactly_its_causal_window(stack, mask_type):
    layer = modules.MaskedConv2D(4, 3, mask_type=mask_type, stack=stack)
    layer.build((None, GRID, GRID, 2))
    base = np.random.default_rng(0).normal(size=(GRID, GRID, 2)).astype("float32")
    change = dependency_matrix(lambda batch: ops.convert_to_numpy(layer(batch)), base,
                               perturb_vector(np.random.default_rng(1)))
    assert_dependencies(change, expected_matrix(GRID, MASK_RULES[(stack, mask_type)]))


def test_mask_is_applied_in_call_and_the_kernel_is_untouched():
    layer = modules.MaskedConv2D(1, 3, mask_type="A", stack="full", use_bias=False)
    layer.build((None, 5, 5, 1))
    layer.kernel.assign(np.ones((3, 3, 1, 1), "float32"))  # nonzero at masked entries too
    image = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    output = ops.convert_to_numpy(layer(image))
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel), np.ones((3, 3, 1, 1)))
    # Type A full mask at (2, 2): the three pixels above and the one to the left.
    pixels = image[0, :, :, 0]
    assert output[0, 2, 2, 0] == pixels[1, 1] + pixels[1, 2] + pixels[1, 3] + pixels[2, 1]
    assert output[0, 0, 0, 0] == 0.0  # nothing before the first position
    # What call convolves with is kernel * mask.
    masked = ops.convert_to_numpy(layer.masked_kernel())[:, :, 0, 0]
    np.testing.assert_array_equal(masked, modules.pixelcnn_mask(3, "A", "full"))


def test_masked_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mask_type"):
        modules.MaskedConv2D(4, 3, mask_type="C")
    with pytest.raises(ValueError, match="stack"):
        modules.MaskedConv2D(4, 3, stack="diagonal")
    with pytest.raises(ValueError, match="odd"):
        modules.MaskedConv2D(4, 4)


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


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

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
    import numpy as np, keras, modules, sampling
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
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax ok" in result.stdout
