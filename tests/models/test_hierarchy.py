"""Tests of VQ-VAE-2 (hierarchy.py): both levels learn, packed codes, the bottom prior's
condition on the top codes, its sampler, save/reload, and train.py/predict.py with --levels 2."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import hyperparameters  # noqa: E402
import modules  # noqa: E402
from brainvq.generation import sampling  # noqa: E402
from brainvq.models import hierarchy  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from helpers import TINY, run_on_jax, smooth_images  # noqa: E402

TOP_GRID, BOTTOM_GRID, CODES = 4, 8, 16


def tiny_vqvae2(**kwargs):
    settings = dict(image_size=32, num_codes=CODES, code_dim=8, top_code_dim=4,
                    num_downsamples=2, channels=16, num_residual_blocks=1, ssim_warmup_steps=10)
    settings.update(kwargs)
    model = modules.VQVAE2Trainer(**settings)
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def tiny_prior(**kwargs):
    values = dict(hyperparameters.DEFAULTS, num_codes=CODES, prior_filters=16, prior_layers=2,
                  num_slice_positions=4, levels=2, prior_dropout=0.0, **kwargs)
    return modules.prior_from_hyperparameters(values, BOTTOM_GRID)


def test_codes_are_packed_top_grid_then_bottom_grid():
    top = np.arange(2 * TOP_GRID ** 2).reshape(2, TOP_GRID, TOP_GRID).astype("int32")
    bottom = 100 + np.arange(2 * BOTTOM_GRID ** 2).reshape(2, BOTTOM_GRID, BOTTOM_GRID)
    packed = ops.convert_to_numpy(hierarchy.pack_codes(ops.convert_to_tensor(top),
                                                       ops.convert_to_tensor(bottom)))
    assert packed.shape == (2, TOP_GRID ** 2 + BOTTOM_GRID ** 2)
    np.testing.assert_array_equal(packed[0, :TOP_GRID ** 2], top[0].ravel())
    unpacked_top, unpacked_bottom = hierarchy.unpack_codes(packed, TOP_GRID, BOTTOM_GRID)
    np.testing.assert_array_equal(ops.convert_to_numpy(unpacked_top), top)
    np.testing.assert_array_equal(ops.convert_to_numpy(unpacked_bottom), bottom)


def test_both_levels_get_gradients_and_ema_updates():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    images = smooth_images(32, 32)
    model = tiny_vqvae2()
    networks = (model.encoder, model.top_encoder, model.top_decoder, model.bottom_latents,
                model.top_upsample, model.decoder)
    with tf.GradientTape() as tape:
        loss = model.forward(images, training=True)["loss"]
    gradients = tape.gradient(loss, [network.trainable_variables for network in networks])
    for network, network_gradients in zip(networks, gradients):
        assert all(gradient is not None for gradient in network_gradients), network.name
        largest = max(float(np.abs(ops.convert_to_numpy(g)).max()) for g in network_gradients)
        assert largest > 0, network.name
    before = {name: ops.convert_to_numpy(quantizer.ema_cluster_size).copy()
              for name, quantizer in (("top", model.top_quantizer), ("bottom", model.quantizer))}
    first = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    history = model.fit(images, epochs=12, batch_size=16, verbose=0)
    last = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    for name, quantizer in (("top", model.top_quantizer), ("bottom", model.quantizer)):
        after = ops.convert_to_numpy(quantizer.ema_cluster_size)
        assert np.abs(after - before[name]).max() > 0, name
    assert last["loss"] < 0.8 * first["loss"]
    for name in ("top_perplexity", "top_codebook_usage", "perplexity", "codebook_usage"):
        assert name in history.history
    codes = ops.convert_to_numpy(model.encode(images))
    assert codes.shape == (32, TOP_GRID ** 2 + BOTTOM_GRID ** 2)
    assert len(np.unique(codes[:, :TOP_GRID ** 2])) >= 2
    assert len(np.unique(codes[:, TOP_GRID ** 2:])) >= 2
    assert model.code_bits == (TOP_GRID ** 2 + BOTTOM_GRID ** 2) * 4
    assert tuple(model.decode_codes(codes[:2]).shape) == (2, 32, 32, 1)


def test_decoder_uses_both_levels():
    model = tiny_vqvae2()
    codes = np.zeros((1, TOP_GRID ** 2 + BOTTOM_GRID ** 2), "int32")
    base = ops.convert_to_numpy(model.decode_codes(codes))
    for start in (0, TOP_GRID ** 2):  # change one top code, then one bottom code
        changed = codes.copy()
        changed[0, start] = 3
        assert np.abs(ops.convert_to_numpy(model.decode_codes(changed)) - base).max() > 1e-6


def test_bottom_prior_depends_on_the_top_codes_and_the_top_prior_not_on_the_bottom():
    keras.utils.set_random_seed(1)
    prior = tiny_prior()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, CODES, (2, TOP_GRID ** 2 + BOTTOM_GRID ** 2)).astype("int32")
    slices = np.array([1, 2], "int32")
    logits = ops.convert_to_numpy(prior((codes, slices)))
    assert logits.shape == (2, TOP_GRID ** 2 + BOTTOM_GRID ** 2, CODES)
    top_changed = codes.copy()
    top_changed[:, TOP_GRID ** 2 - 1] = (codes[:, TOP_GRID ** 2 - 1] + 1) % CODES  # last top
    moved = np.abs(ops.convert_to_numpy(prior((top_changed, slices))) - logits)
    assert moved[:, TOP_GRID ** 2:].max() > 1e-5  # the bottom logits see every top code
    # ...including the first bottom position, which sees no bottom code at all:
    assert moved[:, TOP_GRID ** 2].max() > 1e-5
    bottom_changed = codes.copy()
    bottom_changed[:, -1] = (codes[:, -1] + 1) % CODES
    moved = np.abs(ops.convert_to_numpy(prior((bottom_changed, slices))) - logits)
    assert moved[:, :TOP_GRID ** 2].max() < 1e-6


def test_conditioned_sampler_equals_the_whole_grid_forward_pass():
    keras.utils.set_random_seed(2)
    prior = tiny_prior()
    condition = np.random.default_rng(1).integers(0, CODES, (3, TOP_GRID, TOP_GRID))
    cropped = sampling.sample_codes(prior.bottom, 3, BOTTOM_GRID, slice_index=1, seed=4,
                                    crop=True, condition_codes=condition)
    whole = sampling.sample_codes(prior.bottom, 3, BOTTOM_GRID, slice_index=1, seed=4,
                                  crop=False, condition_codes=condition)
    np.testing.assert_array_equal(cropped, whole)
    # Greedy samples are the argmax of their own logits (the sampler saw those logits).
    greedy = sampling.sample_codes(prior.bottom, 3, BOTTOM_GRID, slice_index=1, top_k=1,
                                   seed=0, condition_codes=condition)
    logits = prior.bottom({"code_indices": greedy, "slice_index": np.full(3, 1, "int32"),
                           "condition_codes": condition})
    np.testing.assert_array_equal(greedy, ops.convert_to_numpy(logits).argmax(-1))
    with pytest.raises(ValueError, match="condition_codes"):
        sampling.sample_codes(prior.bottom, 3, BOTTOM_GRID, seed=0)


def test_saved_and_reloaded_hierarchy_samples_the_same_slices(tmp_path):
    keras.utils.set_random_seed(3)
    vqvae, prior = tiny_vqvae2(), tiny_prior()
    codes = sampling.sample_codes(prior, 4, BOTTOM_GRID, slice_index=2, seed=7, top_k=8)
    assert codes.shape == (4, TOP_GRID ** 2 + BOTTOM_GRID ** 2)
    images = ops.convert_to_numpy(vqvae.decode_codes(codes))
    vqvae.save(tmp_path / "vqvae.keras")
    prior.save(tmp_path / "prior.keras")
    vqvae_loaded = keras.saving.load_model(tmp_path / "vqvae.keras")
    prior_loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert isinstance(prior_loaded, hierarchy.HierarchicalPrior)
    again = sampling.sample_codes(prior_loaded, 4, BOTTOM_GRID, slice_index=2, seed=7, top_k=8)
    np.testing.assert_array_equal(again, codes)
    np.testing.assert_allclose(ops.convert_to_numpy(vqvae_loaded.decode_codes(again)), images,
                               atol=1e-6)


def test_image_size_must_allow_two_levels():
    values = dict(hyperparameters.DEFAULTS, image_size=36, num_downsamples=2, levels=2)
    assert "2**(--num-downsamples + 1)" in hyperparameters.combination_problem(values)
    assert hyperparameters.combination_problem(dict(values, levels=1)) is None


def test_train_and_predict_with_two_levels(data_dir, tmp_path, capsys):
    import predict
    import train

    output_dir, images_dir = tmp_path / "run", tmp_path / "images"
    common = ["--data-dir", str(data_dir), "--output-dir", str(output_dir),
              "--images-dir", str(images_dir), *TINY, "--levels", "2", "--top-code-dim", "4"]
    train.main(["--epochs", "1", "--prior-epochs", "1", *common])
    assert "test-split NLL" in capsys.readouterr().out
    with np.load(output_dir / run_folder.CODES_FILE) as stored:
        assert stored["train_codes"].shape == (12, TOP_GRID ** 2 + BOTTOM_GRID ** 2)
    predict.main(["--output-dir", str(output_dir), "--images-dir", str(images_dir),
                  "--samples", "3", "--slice", "1"])
    assert "mean SSIM over 6 test slices" in capsys.readouterr().out
    assert len(list((images_dir / "samples").glob("sample_*.png"))) == 3
    # A checkpoint of the other depth is refused by name (--resume keeps the run's own depth
    # unless another is asked for).
    with pytest.raises(SystemExit, match="levels"):
        train.main(["--stage", "vqvae", "--epochs", "2", "--resume", *common[:-4],
                    "--levels", "1"])


JAX_SCRIPT = """
import numpy as np, keras, hyperparameters, modules
from brainvq.generation import sampling
from keras import ops
keras.utils.set_random_seed(0)
model = modules.VQVAE2Trainer(image_size=32, num_codes=16, code_dim=8, top_code_dim=4,
                              num_downsamples=2, channels=16, num_residual_blocks=1)
model.build()
model.compile(optimizer=keras.optimizers.Adam(3e-3))
images = np.random.default_rng(0).random((8, 32, 32, 1)).astype("float32")
history = model.fit(images, epochs=2, batch_size=8, verbose=0)
assert "top_perplexity" in history.history
codes = np.asarray(model.encode(images))
assert codes.shape == (8, 80)
values = dict(hyperparameters.DEFAULTS, num_codes=16, prior_filters=16, prior_layers=2,
              num_slice_positions=4, levels=2)
prior = modules.prior_from_hyperparameters(values, 8)
prior.compile(optimizer="adam",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
prior.fit((codes, np.arange(8, dtype="int32") % 4), codes, epochs=1, verbose=0)
sampled = sampling.sample_codes(prior, 3, 8, slice_index=1, seed=2)
assert (sampled == sampling.sample_codes(prior, 3, 8, slice_index=1, seed=2)).all()
assert tuple(model.decode_codes(sampled).shape) == (3, 32, 32, 1)
print("jax ok")
"""


def test_two_levels_train_and_sample_on_jax():
    pytest.importorskip("jax")
    run_on_jax(JAX_SCRIPT, timeout=900)  # 900 s: a loaded machine took over 300
