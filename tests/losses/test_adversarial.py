"""Tests of the adversarial loss (adversarial.py and its use in VQVAETrainer's steps)."""
import importlib.util

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import hyperparameters  # noqa: E402
import modules  # noqa: E402
import train  # noqa: E402
from brainvq.losses import adversarial  # noqa: E402
from brainvq.losses.reconstruction import reconstruction_terms  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from brainvq.training import stages  # noqa: E402
from helpers import (  # noqa: E402
    TINY,
    run_python,  # noqa: E402
    smooth_images,
    tiny_vqvae,  # noqa: E402
)


def test_hinge_losses_and_adaptive_weight():
    confident = np.full((2, 4, 4, 1), 3.0, "float32")
    assert float(adversarial.discriminator_hinge(confident, -confident)) == 0.0
    assert float(adversarial.discriminator_hinge(-confident, confident)) == pytest.approx(4.0)
    assert float(adversarial.generator_hinge(confident)) == pytest.approx(-3.0)
    weight = adversarial.adaptive_weight(np.full(4, 3.0), np.full(4, 1.5))
    assert float(weight) == pytest.approx(2.0, rel=1e-3)
    logits = adversarial.build_discriminator(32)(np.zeros((1, 32, 32, 1), "float32"))
    assert tuple(logits.shape) == (1, 4, 4, 1)  # one logit per patch



@pytest.mark.parametrize("shape", [(8, 16, 16), (16, 32, 8)])
def test_volume_discriminator_gives_a_logit_per_3d_patch_of_any_stack(shape):
    discriminator = adversarial.build_volume_discriminator(channels=4, num_layers=3)
    logits = discriminator(np.zeros((2, *shape, 1), "float32"))
    assert tuple(logits.shape) == (2, *(side // 8 for side in shape), 1)


def test_volume_discriminator_learns_to_tell_blurred_stacks_from_sharp_ones():
    keras.utils.set_random_seed(0)
    sharp = np.random.default_rng(0).random((4, 8, 16, 16, 1)).astype("float32")
    blurred = (sharp + np.roll(sharp, 1, 1) + np.roll(sharp, 1, 2) + np.roll(sharp, 1, 3)) / 4
    discriminator = adversarial.build_volume_discriminator(channels=8, num_layers=2)
    optimizer = keras.optimizers.Adam(1e-3)
    import tensorflow as tf

    losses = []
    for _ in range(40):
        with tf.GradientTape() as tape:
            loss = adversarial.discriminator_hinge(discriminator(sharp, training=True),
                                                   discriminator(blurred, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, discriminator.trainable_variables),
                                      discriminator.trainable_variables))
        losses.append(float(loss))
    assert losses[0] > 0.8 and losses[-1] < 0.2


def discriminator_weights(model):
    return [ops.convert_to_numpy(w).copy() for w in model.discriminator.trainable_weights]


@pytest.mark.eager  # a few steps: tracing them costs more
@pytest.mark.parametrize("start", [0, 1000])
def test_discriminator_trains_only_from_the_start_step(start):
    images = smooth_images(8, 32)
    keras.utils.set_random_seed(0)
    model = tiny_vqvae(adversarial_weight=0.5, adversarial_start=start)
    before = discriminator_weights(model)
    history = model.fit(images, epochs=2, batch_size=4, verbose=0).history
    moved = max(np.abs(a - b).max() for a, b in zip(before, discriminator_weights(model)))
    for name in ("generator_loss", "discriminator_loss", "adversarial_weight"):
        assert np.isfinite(history[name]).all()
    if start == 0:
        assert moved > 0 and history["adversarial_weight"][-1] > 0
    else:
        assert moved == 0 and history["adversarial_weight"][-1] == 0


class ChannelTargets(modules.VQVAETrainer):
    """Fed [B, S, S, 2]: codes channel 1, is scored (and its discriminator trained) against
    channel 0, and holds the adversarial weight: the hooks a decoder fine-tune overrides."""

    def real_images(self, inputs):
        return inputs[..., :1]

    def autoencode(self, inputs, training=False):
        return super().autoencode(inputs[..., 1:], training=training)

    def adversarial_scale(self, reconstruction_gradient, generator_gradient):
        return ops.ones(())


@pytest.mark.eager
def test_a_trainer_fed_more_than_images_scores_against_its_real_images():
    images = smooth_images(8, 32)
    inputs = np.concatenate([1.0 - images, images], axis=-1)  # target: the negative
    keras.utils.set_random_seed(0)
    model = ChannelTargets(image_size=32, num_codes=16, code_dim=8, num_downsamples=2,
                           channels=16, num_residual_blocks=1, ssim_warmup_steps=10,
                           adversarial_weight=0.5, adversarial_start=0)
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    results = model.forward(inputs)
    against = reconstruction_terms(inputs[..., :1], results["reconstructions"], model.ssim_weight)
    against_input = reconstruction_terms(images, results["reconstructions"], model.ssim_weight)
    assert float(results["reconstruction_loss"]) == pytest.approx(
        float(against["reconstruction_loss"]), rel=1e-5)
    assert float(results["reconstruction_loss"]) != pytest.approx(
        float(against_input["reconstruction_loss"]), rel=1e-2)
    history = model.fit(inputs, epochs=1, batch_size=4, verbose=0).history
    assert history["adversarial_weight"][-1] == pytest.approx(0.5)  # held, not adaptive
    assert np.isfinite(history["discriminator_loss"]).all()


def test_discriminator_state_survives_resume(data_dir, tmp_path):
    output_dir = tmp_path / "run"
    flags = ["--stage", "vqvae", "--data-dir", str(data_dir), "--output-dir", str(output_dir),
             "--images-dir", str(tmp_path / "images"), *TINY, "--adversarial-weight", "0.1",
             "--adversarial-start", "0"]
    train.main([*flags, "--epochs", "1"])
    first = run_folder.load_checkpoint(
        output_dir / run_folder.last_checkpoint_name(run_folder.VQVAE_FILE))
    trained = discriminator_weights(first)
    fresh = tiny_vqvae(adversarial_weight=0.1)
    assert max(np.abs(a - b).max()
               for a, b in zip(trained, discriminator_weights(fresh))) > 0
    model, done = stages.load_for_resume(output_dir, "vqvae", dict(
        hyperparameters.load(output_dir)))
    assert done == 1
    for saved, resumed in zip(trained, discriminator_weights(model)):
        np.testing.assert_array_equal(saved, resumed)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) > 0
    train.main([*flags, "--epochs", "2", "--resume"])
    assert run_folder.epochs_done(output_dir, "vqvae") == 2


JAX_ADVERSARIAL = """
    import json, numpy as np, keras
    from helpers import smooth_images
    from helpers import tiny_vqvae

    images = smooth_images(8, 32)
    keras.utils.set_random_seed(0)
    model = tiny_vqvae(adversarial_weight=0.5, adversarial_start=0)
    before = [np.array(w) for w in model.discriminator.trainable_weights]
    history = model.fit(images, epochs=2, batch_size=4, verbose=0).history
    moved = max(float(np.abs(np.array(w) - b).max())
                for w, b in zip(model.discriminator.trainable_weights, before))
    print(json.dumps({"moved": moved, "weight": history["adversarial_weight"][-1],
                      "finite": bool(np.isfinite(history["loss"]).all())}))
"""


def test_adversarial_training_on_jax():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    result = run_python(JAX_ADVERSARIAL, backend="jax")
    assert result["finite"] and result["moved"] > 0 and result["weight"] > 0
