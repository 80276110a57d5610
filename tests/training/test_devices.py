"""More than one device, mixed precision, and the JAX backend.

Each check runs in a fresh Python process: the logical CPU devices, the dtype policy and the Keras
backend must all be fixed before TensorFlow or Keras start.
"""
import importlib.util

import numpy as np
import pytest

from helpers import run_python

MIRRORED = """
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, modules
    from helpers import smooth_images

    images = smooth_images(64, 32)

    def train(strategy, eager):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = modules.VQVAETrainer(image_size=32, num_codes=16, code_dim=8,
                                         num_downsamples=2, channels=16, num_residual_blocks=1,
                                         ssim_weight=0.0, dead_code_threshold=0.0)
            model.build()
            model.compile(optimizer=keras.optimizers.Adam(3e-3), run_eagerly=eager)
        data = tf.data.Dataset.from_tensor_slices(images).batch(16, drop_remainder=True)
        history = model.fit(data, epochs=3, verbose=0).history
        return model, history

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two, two_history = train(mirrored, eager=False)  # the graph a distributed run traces
    one, one_history = train(tf.distribute.get_strategy(), eager=True)  # 12 steps: eager is quicker
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "loss_one": one_history["loss"], "loss_two": two_history["loss"],
        "usage_two": two_history["codebook_usage"],
        "reconstruction_gap": float(np.abs(one.predict(images, verbose=0)
                                           - two.predict(images, verbose=0)).mean()),
        "ema_sizes_sum": float(np.sum(keras.ops.convert_to_numpy(
            two.quantizer.ema_cluster_size))),
    }))
"""


def test_mirrored_training_on_two_cpu_devices_matches_one_device():
    result = run_python(MIRRORED)
    assert result["replicas"] == 2
    # Same data, same start (MSE only, no random code restarts): the per-epoch losses agree.
    for one, two in zip(result["loss_one"], result["loss_two"]):
        assert abs(one - two) <= 0.05 * one + 1e-3, (result["loss_one"], result["loss_two"])
    assert result["reconstruction_gap"] < 0.01  # mean absolute pixel difference
    assert all(0 < usage <= 1 for usage in result["usage_two"])
    # EMA cluster sizes count the whole global batch (16 * 8 * 8 vectors a step), not one
    # replica's half: after 12 steps from 1 per code, sum = 16 d^12 + 1024 (1 - d^12), d = 0.99.
    decayed = 0.99 ** 12
    assert result["ema_sizes_sum"] == pytest.approx(16 * decayed + 1024 * (1 - decayed), rel=1e-3)


MIXED = """
    import json, numpy as np, keras, modules
    from helpers import smooth_images
    from helpers import tiny_vqvae

    images = smooth_images(32, 32)
    keras.utils.set_random_seed(0)
    full = tiny_vqvae()
    full.run_eagerly = True  # a dozen steps: tracing them costs more than running them
    full.fit(images, epochs=6, batch_size=16, verbose=0)
    full.save("/tmp/vqvae_float32_for_mixed_test.keras")
    codes32 = keras.ops.convert_to_numpy(full.encode(images))

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = keras.saving.load_model("/tmp/vqvae_float32_for_mixed_test.keras")
    codes16 = keras.ops.convert_to_numpy(mixed.encode(images))
    mixed.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    history = mixed.fit(images, epochs=2, batch_size=16, verbose=0).history
    mixed_result = {
        "encoder_dtype": mixed.encoder.get_layer("down_0").compute_dtype,
        "quantizer_dtype": mixed.quantizer.compute_dtype,
        "codebook_dtype": str(mixed.quantizer.codebook.dtype),
        "agreement": float((codes16 == codes32).mean()),
        "losses": history["loss"],
    }
"""


@pytest.fixture(scope="module")
def tensorflow_precision():
    """LOSS_SCALE, then MIXED, in one TensorFlow process (the loss-scale check runs first, under
    the float32 policy MIXED then changes)."""
    return run_python(LOSS_SCALE + MIXED + PRINT_BOTH)


def test_mixed_precision_keeps_the_quantizer_in_float32_and_the_codes(tensorflow_precision):
    result = tensorflow_precision["mixed"]
    assert result["encoder_dtype"] == "bfloat16"
    assert result["quantizer_dtype"] == "float32"
    assert result["codebook_dtype"] == "float32"
    assert result["agreement"] > 0.9
    assert all(loss == loss and abs(loss) < 1e6 for loss in result["losses"])  # finite


JAX = """
    import json, numpy as np, keras, modules
    from brainvq.generation import sampling
    from helpers import smooth_images
    from helpers import tiny_vqvae

    assert keras.backend.backend() == "jax"
    images = smooth_images(16, 32)
    keras.utils.set_random_seed(0)
    model = tiny_vqvae()
    before = keras.ops.convert_to_numpy(model.encoder.weights[0]).copy()
    history = model.fit(images, epochs=2, batch_size=8, verbose=0).history
    after = keras.ops.convert_to_numpy(model.encoder.weights[0])
    codes = keras.ops.convert_to_numpy(model.encode(images))
    prior = modules.GatedPixelCNN(num_codes=16, grid_size=8, filters=16, num_layers=2,
                                  kernel_size=3, dropout=0.0, num_slice_positions=32)
    prior.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    prior_history = prior.fit((codes, np.zeros(16, "int32")), codes, epochs=2, verbose=0).history
    first = sampling.sample_codes(prior, 3, 8, seed=5, slice_index=2)
    again = sampling.sample_codes(prior, 3, 8, seed=5, slice_index=2)
    decoded = keras.ops.convert_to_numpy(model.decode_codes(first))
    print(json.dumps({
        "losses": history["loss"], "prior_losses": prior_history["loss"],
        "weights_moved": float(np.abs(after - before).max()),
        "initialized": float(keras.ops.convert_to_numpy(model.quantizer.initialized)),
        "sample_shape": list(first.shape), "reproducible": bool((first == again).all()),
        "decoded_shape": list(decoded.shape),
    }))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_model_builds_trains_and_samples_on_the_jax_backend():
    result = run_python(JAX, backend="jax")
    assert all(np.isfinite(result["losses"])) and all(np.isfinite(result["prior_losses"]))
    assert result["weights_moved"] > 0
    assert result["initialized"] == 1.0  # the quantizer's state updates survived the JAX step
    assert result["sample_shape"] == [3, 8, 8] and result["reproducible"]
    assert result["decoded_shape"] == [3, 32, 32, 1]


LOSS_SCALE = """
    import json, numpy as np, keras, modules
    from helpers import smooth_images

    images = smooth_images(8, 32)

    def first_step_update(optimizer):
        keras.utils.set_random_seed(0)
        model = modules.VQVAETrainer(image_size=32, num_codes=16, code_dim=8, num_downsamples=2,
                                     channels=8, num_residual_blocks=1, ssim_weight=0.0,
                                     dead_code_threshold=0.0)
        model.build()
        # one step: eager is quicker on TensorFlow (JAX keeps the jitted step it was fixed in)
        model.compile(optimizer=optimizer, run_eagerly=keras.backend.backend() == "tensorflow")
        before = keras.ops.convert_to_numpy(model.decoder.weights[-2]).copy()
        model.fit(images, batch_size=8, epochs=1, verbose=0, shuffle=False)
        return keras.ops.convert_to_numpy(model.decoder.weights[-2]) - before

    plain = first_step_update(keras.optimizers.SGD(0.1))
    scaled = first_step_update(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1),
                                                                    initial_scale=1024.0))
    loss_scale = {"ratio": float(np.abs(scaled).sum() / np.abs(plain).sum())}
"""
PRINT_BOTH = """
    print(json.dumps({"loss_scale": loss_scale, "mixed": mixed_result}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_loss_scale_optimizer_takes_the_same_step(backend, request):
    """Under a LossScaleOptimizer (as mixed float16 training uses) the loss is scaled before
    the gradients and they are unscaled after, so the step equals the unscaled one; on JAX the
    gradients were unscaled without the loss being scaled (steps 1024x too small)."""
    if backend == "tensorflow":
        result = request.getfixturevalue("tensorflow_precision")["loss_scale"]
    elif importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    else:
        result = run_python(LOSS_SCALE + """
    print(json.dumps(loss_scale))
""", backend=backend)
    assert result["ratio"] == pytest.approx(1.0, rel=1e-3)
