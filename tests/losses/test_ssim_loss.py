"""Tests of the SSIM loss (ssim_loss.py) against scikit-image's SSIM."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import modules  # noqa: E402
from helpers import smooth_images  # noqa: E402


def test_gaussian_ssim_window_matches_scikit_image():
    from skimage.metrics import structural_similarity

    images = smooth_images(2, 32)
    noisy = np.clip(images + np.random.RandomState(0).normal(0, 0.1, images.shape), 0, 1)
    ours = ops.convert_to_numpy(modules.ssim_per_image(images, noisy.astype("float32"),
                                                       window="gaussian"))
    reference = [structural_similarity(a[..., 0], b[..., 0], data_range=1.0,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False)
                 for a, b in zip(images, noisy)]
    np.testing.assert_allclose(ours, reference, atol=0.03)


def test_uniform_ssim_window_is_exactly_the_reported_metric():
    from skimage.metrics import structural_similarity

    images = smooth_images(2, 32)
    noisy = np.clip(images + np.random.RandomState(1).normal(0, 0.1, images.shape), 0, 1)
    ours = ops.convert_to_numpy(modules.ssim_per_image(images, noisy.astype("float32"),
                                                       window="uniform"))
    reference = [structural_similarity(a[..., 0], b[..., 0], data_range=1.0)
                 for a, b in zip(images, noisy)]
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    with pytest.raises(ValueError, match="ssim_window"):
        modules.VQVAETrainer(image_size=32, ssim_window="box")
