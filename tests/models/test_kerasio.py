"""The keras-io `vq_vae.py` baseline (baselines.py, harness.KERASIO) is the published design."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import hyperparameters  # noqa: E402
from brainvq.benchmarks import harness  # noqa: E402
from brainvq.benchmarks.rate_distortion import budget_text  # noqa: E402
from helpers import smooth_images  # noqa: E402


def test_kerasio_baseline_is_the_published_configuration():
    """keras-io: VQVAETrainer(data_variance, latent_dim=16, num_embeddings=128); the
    reconstruction loss is the MSE divided by the training images' variance, no SSIM term."""
    images = smooth_images(8, 32)
    values = dict(hyperparameters.DEFAULTS, image_size=32)
    model = harness.quality_model(values, "kerasio", images)
    assert (model.num_codes, model.code_dim, model.grid_size) == (128, 16, 8)
    assert not model.use_ema and model.ssim_weight == 0.0
    results = model.forward(images, training=False)
    reconstructions = keras.ops.convert_to_numpy(results["reconstructions"])
    mse = np.mean((images - reconstructions) ** 2)
    np.testing.assert_allclose(float(results["reconstruction_loss"]), mse / np.var(images),
                               rtol=1e-4)
    assert np.var(images) < 0.5  # so dividing by it is not a no-op


@pytest.mark.eager  # a few steps: tracing them costs more
def test_a_step_budget_trains_exactly_that_many_steps():
    """`benchmark.py ... --steps N` stops after N optimizer steps, whatever the clock says (the
    slices' 12 // batch 4 = 3 steps per epoch, so 5 steps end inside the second epoch; the
    minute of wall-clock budget would allow many more)."""
    from brainvq.data.slice_sets import SliceSet

    images = smooth_images(12, 32)
    train = SliceSet(images=images, slice_index=np.zeros(12, np.int32),
                     case_id=np.zeros(12, np.int32), paths=[f"{i}.png" for i in range(12)])
    values = dict(hyperparameters.DEFAULTS, image_size=32, batch_size=4, num_codes=16,
                  code_dim=8, channels=8, num_downsamples=2)
    model, images_seen, _ = harness.train_for_budget(values, None, train, minutes=1.0,
                                                        steps=5)
    assert int(model.optimizer.iterations) == 5
    assert images_seen == 5 * 4
    assert budget_text(60.0, 5) == "5 steps" and budget_text(9, 0) == "9 min"
