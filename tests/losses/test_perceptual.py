"""Tests of the perceptual loss's plumbing (perceptual.py), with random VGG16 weights: no
download is needed, and what is checked does not depend on the weights."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import train  # noqa: E402
from brainvq.errors import WeightsUnavailable  # noqa: E402
from brainvq.losses import perceptual  # noqa: E402
from helpers import (  # noqa: E402
    TINY,
    smooth_images,
    tiny_vqvae,  # noqa: E402
)


@pytest.fixture(scope="module")
def network():
    keras.utils.set_random_seed(0)
    return perceptual.feature_network(32, weights="random")


def test_perceptual_distance_of_an_image_with_itself_is_zero(network):
    images = smooth_images(3, 32)
    same = ops.convert_to_numpy(perceptual.perceptual_distance(network, images, images))
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    other = ops.convert_to_numpy(perceptual.perceptual_distance(network, images, images[::-1]))
    assert other.shape == (3,) and other[0] > 1e-4 and abs(other[1]) < 1e-6
    assert not network.trainable_weights  # frozen


@pytest.mark.eager  # a few steps: tracing them costs more
def test_the_term_enters_the_loss_trains_and_is_not_saved(network):
    images = smooth_images(4, 32)
    keras.utils.set_random_seed(0)
    model = tiny_vqvae(perceptual_weight=2.0)
    plain = model.forward(images)
    assert float(plain["perceptual_loss"]) == 0.0  # no network given yet: the term is off
    model.use_perceptual_network(network)
    results = model.forward(images)
    difference = float(results["reconstruction_loss"] - plain["reconstruction_loss"])
    assert difference == pytest.approx(2.0 * float(results["perceptual_loss"]), rel=1e-4)
    assert float(results["perceptual_loss"]) > 0
    history = model.fit(images, epochs=2, batch_size=4, verbose=0).history
    assert "perceptual_loss" in history and np.isfinite(history["perceptual_loss"]).all()
    assert not any("perceptual_features" in weight.path for weight in model.weights)


def test_missing_weights_file_is_one_line_naming_it(data_dir, tmp_path):
    missing = tmp_path / "vgg16_notop.h5"
    with pytest.raises(WeightsUnavailable, match="vgg16_notop.h5: no such file"):
        perceptual.feature_network(32, weights=str(missing))
    with pytest.raises(SystemExit, match="error: --perceptual-weights .*vgg16_notop.h5"):
        train.main(["--stage", "vqvae", "--data-dir", str(data_dir), "--epochs", "1",
                    "--output-dir", str(tmp_path / "run"), "--images-dir",
                    str(tmp_path / "images"), *TINY, "--perceptual-weight", "0.1",
                    "--perceptual-weights", str(missing)])
