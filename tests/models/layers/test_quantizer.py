"""Tests of the vector quantizer (quantizer.py): nearest code, straight-through gradient,
commitment loss, EMA updates, dead-code restart, k-means init, usage (tiny shapes, CPU)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import modules  # noqa: E402


def make_quantizer(codebook, **kwargs):
    codebook = np.asarray(codebook, dtype="float32")
    quantizer = modules.VectorQuantizer(len(codebook), codebook.shape[1], **kwargs)
    quantizer.build((None, codebook.shape[1]))
    quantizer.codebook.assign(codebook)
    quantizer.ema_code_sum.assign(codebook)
    quantizer.ema_cluster_size.assign(np.ones(len(codebook), "float32"))
    quantizer.initialized.assign(1.0)  # skip the first-batch k-means init
    return quantizer


CODEBOOK = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]


def test_quantizer_picks_the_nearest_code():
    quantizer = make_quantizer(CODEBOOK)
    inputs = np.random.RandomState(0).uniform(-1, 6, size=(3, 5, 2)).astype("float32")
    result = quantizer(inputs, training=False)
    distances = ((inputs[..., None, :] - np.array(CODEBOOK)) ** 2).sum(-1)
    expected = distances.argmin(-1)
    np.testing.assert_array_equal(ops.convert_to_numpy(result["code_indices"]), expected)
    np.testing.assert_allclose(ops.convert_to_numpy(result["quantized"]),
                               np.array(CODEBOOK)[expected], atol=1e-6)


def test_gradient_passes_straight_through():
    import tensorflow as tf

    quantizer = make_quantizer(CODEBOOK)
    inputs = tf.constant([[0.2, 0.1], [0.9, 0.3], [4.0, 4.5]])
    weights = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        quantized = quantizer(inputs, training=False)["quantized"]
        objective = tf.reduce_sum(quantized * weights)
    np.testing.assert_allclose(tape.gradient(objective, inputs).numpy(), weights.numpy())


def test_commitment_loss_is_beta_times_distance():
    quantizer = make_quantizer(CODEBOOK, commitment_cost=0.25)
    # squared errors 0.25 and 0 over 4 numbers
    inputs = np.array([[0.5, 0.0], [0.0, 0.0]], "float32")
    loss = float(quantizer(inputs, training=False)["loss"])
    assert loss == pytest.approx(0.25 * 0.25 / 4)


def test_ema_moves_codes_towards_their_inputs():
    quantizer = make_quantizer(CODEBOOK, ema_decay=0.5, dead_code_threshold=0.0)
    inputs = np.array([[0.8, 0.2], [1.2, -0.2], [1.0, 0.4]], "float32")  # all nearest code 1
    before = ops.convert_to_numpy(quantizer.codebook).copy()
    quantizer(inputs, training=True)
    after = ops.convert_to_numpy(quantizer.codebook)
    target = inputs.mean(axis=0)
    assert np.linalg.norm(after[1] - target) < np.linalg.norm(before[1] - target)
    np.testing.assert_allclose(after[3], before[3], atol=0.1)  # unassigned code barely moves


def test_dead_codes_are_restarted_from_encoder_outputs():
    quantizer = make_quantizer(CODEBOOK, dead_code_threshold=0.5)
    quantizer.ema_cluster_size.assign(np.array([1.0, 1.0, 1.0, 0.0], "float32"))  # code 3 dead
    inputs = np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.8]], "float32")
    quantizer(inputs, training=True)
    restarted = ops.convert_to_numpy(quantizer.codebook)[3]
    assert min(np.linalg.norm(restarted - row) for row in inputs) < 1e-5


def test_first_training_batch_initialises_the_codebook_from_data():
    quantizer = modules.VectorQuantizer(8, 3)
    quantizer.build((None, 3))
    inputs = np.random.RandomState(1).normal(10.0, 1.0, size=(64, 3)).astype("float32")
    quantizer(inputs, training=True)
    codebook = ops.convert_to_numpy(quantizer.codebook)
    assert float(quantizer.initialized) == 1.0
    assert np.abs(codebook.mean(axis=0) - 10.0).max() < 1.5  # codes moved to the data
    result = quantizer(inputs, training=False)
    assert float(result["usage"]) > 0.5


def test_usage_and_perplexity():
    quantizer = make_quantizer(CODEBOOK)
    inputs = np.array([[0.0, 0.0], [1.0, 0.0]] * 4, "float32")  # two codes, evenly
    result = quantizer(inputs, training=False)
    assert float(result["usage"]) == pytest.approx(0.5)
    assert float(result["perplexity"]) == pytest.approx(2.0, rel=1e-4)


def test_quantizer_config_round_trip():
    quantizer = modules.VectorQuantizer(16, 4, commitment_cost=0.3, use_ema=False)
    clone = modules.VectorQuantizer.from_config(quantizer.get_config())
    settings = (clone.num_codes, clone.code_dim, clone.commitment_cost, clone.use_ema)
    assert settings == (16, 4, 0.3, False)


def test_plain_vq_loss_trains_the_codebook_by_gradient():
    quantizer = modules.VectorQuantizer(4, 2, use_ema=False)
    quantizer.build((None, 2))
    assert quantizer.codebook.trainable
    trainable_names = [weight.path for weight in quantizer.trainable_weights]
    assert trainable_names == [quantizer.codebook.path]
    ema = modules.VectorQuantizer(4, 2, use_ema=True)
    ema.build((None, 2))
    assert ema.trainable_weights == []
