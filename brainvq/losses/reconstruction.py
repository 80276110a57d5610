"""The VQ-VAE's reconstruction loss: MSE + ssim_weight * (1 - SSIM) (+ perceptual_weight *
the perceptual distance), the combination `VQVAETrainer` trains with."""
from __future__ import annotations

import keras
from keras import ops

from brainvq.hints import Tensor
from brainvq.losses import perceptual
from brainvq.losses.ssim import ssim_per_image


def reconstruction_terms(images: Tensor, reconstructions: Tensor, ssim_weight: float | Tensor,
                         ssim_window: str = "uniform", data_variance: float = 1.0,
                         perceptual_weight: float = 0.0,
                         perceptual_network: keras.Model | None = None) -> dict[str, Tensor]:
    """The reconstruction loss of a batch and its parts.

    Args:
        images, reconstructions: [B, S, S, 1].
        ssim_weight: weight of (1 - SSIM).
        ssim_window: "uniform" (7x7) or "gaussian" (11x11); see `ssim_per_image`.
        data_variance: the MSE term is divided by this (1.0: plain MSE).
        perceptual_weight: weight of the perceptual distance; it applies once
            `perceptual_network` (`perceptual.feature_network`) is given, and is reported as
            0 until then.

    Returns:
        {"reconstruction_loss", "ssim"} scalars, and "perceptual_loss" when its weight is > 0.
    """
    images = ops.cast(images, "float32")
    mse = ops.mean((images - reconstructions) ** 2) / data_variance
    ssim = ops.mean(ssim_per_image(images, reconstructions, window=ssim_window))
    terms = {"reconstruction_loss": mse + ssim_weight * (1.0 - ssim), "ssim": ssim}
    if perceptual_weight > 0 and perceptual_network is not None:
        terms["perceptual_loss"] = ops.mean(perceptual.perceptual_distance(
            perceptual_network, images, reconstructions))
        terms["reconstruction_loss"] = (terms["reconstruction_loss"]
                                        + perceptual_weight * terms["perceptual_loss"])
    elif perceptual_weight > 0:
        terms["perceptual_loss"] = ops.zeros(())
    return terms
