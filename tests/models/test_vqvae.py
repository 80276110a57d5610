"""Tests of the VQ-VAE (models/vqvae.py, models/vqvae_trainer.py): losses fall, codes are used,
save/reload, the network apart from its training."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import modules  # noqa: E402
from helpers import smooth_images, tiny_vqvae  # noqa: E402


def test_trainer_losses_fall_and_codes_are_used():
    keras.utils.set_random_seed(0)
    images = smooth_images(32, 32)
    model = tiny_vqvae()
    first = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    history = model.fit(images, epochs=12, batch_size=16, verbose=0)
    last = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    assert last["loss"] < 0.6 * first["loss"]
    assert last["reconstruction_loss"] < first["reconstruction_loss"]
    assert last["ssim"] > first["ssim"]
    for name in ("loss", "reconstruction_loss", "vq_loss", "ssim", "perplexity", "codebook_usage"):
        assert name in history.history
    codes = ops.convert_to_numpy(model.encode(images))
    assert codes.shape == (32, 8, 8)
    assert len(np.unique(codes)) >= 4


@pytest.mark.eager  # a few steps: tracing them costs more
def test_saved_model_reloads_with_the_same_reconstructions(tmp_path):
    keras.utils.set_random_seed(0)
    images = smooth_images(8, 32)
    model = tiny_vqvae()
    model.fit(images, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "vqvae.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded.encode(images)),
                                  ops.convert_to_numpy(model.encode(images)))
    np.testing.assert_allclose(ops.convert_to_numpy(loaded.quantizer.ema_cluster_size),
                               ops.convert_to_numpy(model.quantizer.ema_cluster_size))


@pytest.mark.parametrize("levels", [1, 2])
def test_the_network_alone_is_the_trainer_without_its_training(tmp_path, levels):
    """`VQVAE` (`VQVAE2`) holds the trainer's weights, in the same order, and nothing else: the
    trainer's weights give the network the same codes and reconstructions; the network has no
    loss terms or metrics, and saves and reloads as itself."""
    keras.utils.set_random_seed(0)
    images = smooth_images(8, 32)
    network_class, trainer_class, settings = modules.VQVAE, modules.VQVAETrainer, {}
    if levels == 2:
        network_class, trainer_class = modules.VQVAE2, modules.VQVAE2Trainer
        settings = {"top_code_dim": 8}
    trainer = trainer_class(image_size=32, num_codes=16, code_dim=8, num_downsamples=2,
                            channels=16, num_residual_blocks=1, **settings)
    trainer.build()
    network = network_class(image_size=32, num_codes=16, code_dim=8, num_downsamples=2,
                            channels=16, num_residual_blocks=1, **settings)
    network.build()
    assert [w.shape for w in network.weights] == [w.shape for w in trainer.weights]
    network.set_weights(trainer.get_weights())
    np.testing.assert_array_equal(ops.convert_to_numpy(network.encode(images)),
                                  ops.convert_to_numpy(trainer.encode(images)))
    np.testing.assert_allclose(ops.convert_to_numpy(network(images)),
                               ops.convert_to_numpy(trainer(images)), atol=1e-6)
    assert not hasattr(network, "forward") and not network.metrics
    assert "ssim_weight" not in network.get_config()
    network.save(tmp_path / "network.keras")
    loaded = keras.saving.load_model(tmp_path / "network.keras")
    assert type(loaded) is network_class
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(images)),
                               ops.convert_to_numpy(network(images)), atol=1e-6)


def test_decode_codes_renders_images_of_the_input_size():
    model = tiny_vqvae()
    codes = np.zeros((2, 8, 8), "int32")
    assert tuple(model.decode_codes(codes).shape) == (2, 32, 32, 1)


def test_image_size_must_divide_by_the_downsampling():
    with pytest.raises(ValueError, match="not divisible"):
        modules.VQVAETrainer(image_size=36, num_downsamples=3)


@pytest.mark.eager  # a few steps: tracing them costs more
def test_attention_lets_every_grid_position_see_the_whole_slice(tmp_path):
    """--attention: a change in one corner of the slice reaches the latent at the far corner,
    which the convolutions alone (receptive field of a few grid cells) do not; the model
    saves and reloads with the same reconstructions."""
    images = smooth_images(2, 32)
    changed = images.copy()
    changed[:, :4, :4] += 0.5
    far_corner = {}
    for attention in (False, True):
        keras.utils.set_random_seed(0)
        model = tiny_vqvae(attention=attention)
        latents = ops.convert_to_numpy(model.encoder(images))
        moved = ops.convert_to_numpy(model.encoder(changed)) - latents
        far_corner[attention] = float(np.abs(moved[:, -1, -1]).max())
    assert far_corner[False] == 0.0 and far_corner[True] > 1e-4
    model.fit(images, epochs=1, batch_size=2, verbose=0)
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.attention
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-5)


@pytest.mark.eager  # a few steps: tracing them costs more
def test_learning_rate_warms_up_linearly_and_survives_save_and_reload(tmp_path):
    import hyperparameters

    schedule = modules.LinearWarmup(1e-3, 10)
    rates = [float(schedule(step)) for step in (0, 4, 9, 10, 1000)]
    np.testing.assert_allclose(rates, [1e-4, 5e-4, 1e-3, 1e-3, 1e-3], rtol=1e-6)
    values = dict(hyperparameters.DEFAULTS, learning_rate=1e-3, warmup_steps=0)
    assert not isinstance(modules.vqvae_optimizer(values)._learning_rate,  # 0: no warm-up
                          keras.optimizers.schedules.LearningRateSchedule)

    keras.utils.set_random_seed(0)
    model = tiny_vqvae()
    model.compile(optimizer=modules.vqvae_optimizer(dict(values, warmup_steps=10)))
    model.fit(smooth_images(16, 32), epochs=1, batch_size=8, verbose=0)  # 2 steps
    assert np.isclose(float(model.optimizer.learning_rate), 3e-4)  # the rate of step 2 of 10
    model.save(tmp_path / "warm.keras")
    reloaded = keras.saving.load_model(tmp_path / "warm.keras")
    assert isinstance(reloaded.optimizer._learning_rate, modules.LinearWarmup)
    assert int(reloaded.optimizer.iterations) == 2
    assert np.isclose(float(reloaded.optimizer.learning_rate), 3e-4)
