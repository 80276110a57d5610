"""Tests of the adversarial loss (adversarial.py and its use in VQVAETrainer's steps)."""
import importlib.util

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import hyperparameters  # noqa: E402
import train  # noqa: E402
from brainvq.losses import adversarial  # noqa: E402
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
