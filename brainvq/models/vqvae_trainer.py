"""`VQVAETrainer`: the VQ-VAE network (`vqvae.VQVAE`, or `hierarchy.VQVAE2` for
`VQVAE2Trainer`) with what trains it: the reconstruction loss (`losses/reconstruction.py`), the
quantizer's loss, an optional PatchGAN discriminator (`losses/adversarial.py`), the metrics each
step reports, and the TensorFlow and JAX steps (`vqvae_steps.py`).

The trainers subclass the networks rather than hold one, so a saved `.keras` file keeps its
layers at the top (`encoder/`, `quantizer/`, `decoder/`, `discriminator/`), as the shipped
models were saved; `LinearWarmup` is the learning-rate warm-up their optimizer uses.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

from brainvq.hints import Tensor
from brainvq.losses import adversarial
from brainvq.losses.reconstruction import reconstruction_terms
from brainvq.losses.ssim import SSIM_WINDOWS
from brainvq.models.hierarchy import VQVAE2
from brainvq.models.vqvae import VQVAE
from brainvq.models.vqvae_steps import VQVAETrainingSteps

VQVAE_METRICS = ("loss", "reconstruction_loss", "vq_loss", "ssim", "perplexity", "codebook_usage")
ADVERSARIAL_METRICS = ("generator_loss", "discriminator_loss", "adversarial_weight")
TOP_LEVEL_METRICS = ("top_perplexity", "top_codebook_usage")


class _Unsaved:
    """Holds a network Keras must not track (so not save) as part of the model."""
    network = None


@keras.saving.register_keras_serializable(package="vqvae")
class VQVAETrainer(VQVAETrainingSteps, VQVAE):
    """The VQ-VAE network trained with its own `train_step`.

    The loss is `reconstruction + vq`, where reconstruction = MSE + ssim_weight * (1 - SSIM) and
    vq is the quantizer's commitment (and, without EMA, codebook) loss. Each step reports the
    total, reconstruction and VQ losses, the batch SSIM, the codebook perplexity and the fraction
    of codes used, so they show in the `fit` progress bar and in the CSV log.

    The steps (`vqvae_steps.VQVAETrainingSteps`) are written out rather than in Keras's
    `compute_loss` hook because the adversarial loss's adaptive weight needs the gradients of
    two losses at the decoder's last layer in the same step (and the quantizer's batch
    statistics come out of the forward pass); each backend's step is the same computation
    (TensorFlow: a tape; JAX: one `jax.vjp`, with the optimizer's variables, and so its step
    counter and loss scale, in the stateless state).

    Args:
        ssim_weight: weight of (1 - SSIM) in the reconstruction loss.
        ssim_warmup_steps: the SSIM weight ramps up linearly over this many training steps.
            From a random start, SSIM alone pulls the dark background (most of a slice) to
            zero faster than MSE can teach structure, and training stalls; MSE first avoids it.
        ssim_window: the SSIM term's window, "uniform" (7x7: exactly the SSIM the scripts
            report) or "gaussian" (11x11); see `ssim_per_image`.
        data_variance: the MSE term is divided by this (1.0: plain MSE); the keras-io design
            divides by the variance of its training images.
        perceptual_weight: weight of the VGG16 perceptual distance (perceptual.py) in the
            reconstruction loss; it applies once `use_perceptual_network` has given the
            network (train.py does), whose fixed weights are not saved with the model.
        adversarial_weight: > 0 adds a PatchGAN discriminator (adversarial.py, saved with the
            model) and its hinge loss, weighted adaptively times this factor.
        adversarial_start: training steps before the adversarial terms switch on.
        Everything else: the network's (`VQVAE`; `VQVAE2` for `VQVAE2Trainer`).

    Call returns the reconstructions [B, S, S, 1]; `forward` returns them with every loss term.
    """

    def __init__(self, ssim_weight: float = 0.5, ssim_warmup_steps: int = 500,
                 ssim_window: str = "uniform", data_variance: float = 1.0,
                 perceptual_weight: float = 0.0, adversarial_weight: float = 0.0,
                 adversarial_start: int = 2000, **kwargs: Any) -> None:
        if ssim_window not in SSIM_WINDOWS:
            raise ValueError(f"unknown ssim_window {ssim_window!r}: use one of {SSIM_WINDOWS}")
        if not data_variance > 0:
            raise ValueError(f"data_variance must be > 0, got {data_variance!r}")
        super().__init__(**kwargs)  # the network's layers first: their variables come first
        self.ssim_weight = float(ssim_weight)
        self.ssim_warmup_steps = int(ssim_warmup_steps)
        self.ssim_window = ssim_window
        self.data_variance = float(data_variance)
        self.perceptual_weight = float(perceptual_weight)
        self._perceptual = _Unsaved()
        self.adversarial_weight = float(adversarial_weight)
        self.adversarial_start = int(adversarial_start)
        self.discriminator = None
        if self.adversarial_weight > 0:
            self.discriminator = adversarial.build_discriminator(self.image_size)
        names = VQVAE_METRICS + (("perceptual_loss",) if self.perceptual_weight > 0 else ())
        if self.adversarial_weight > 0:
            names += ADVERSARIAL_METRICS
        if self.levels == 2:
            names += TOP_LEVEL_METRICS
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    def use_perceptual_network(self, network: keras.Model) -> None:
        """Gives the (frozen) `perceptual.feature_network` the perceptual term uses."""
        self._perceptual.network = network

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def real_images(self, inputs: Tensor) -> Tensor:
        """The images the reconstructions are scored against (and the discriminator sees as
        real): the inputs themselves. A subclass fed more than the images overrides this and
        `autoencode` to pick its parts out."""
        return inputs

    def forward(self, images: Tensor, training: bool = False,
                ssim_weight: float | Tensor | None = None) -> dict[str, Tensor]:
        """Runs the whole model; returns reconstructions, code indices and the loss terms.

        `ssim_weight` overrides the model's weight of (1 - SSIM) (used for the warm-up)."""
        reconstructions, codes = self.autoencode(images, training=training)
        terms = reconstruction_terms(
            self.real_images(images), reconstructions,
            self.ssim_weight if ssim_weight is None else ssim_weight, self.ssim_window,
            self.data_variance, self.perceptual_weight, self._perceptual.network)
        return {"reconstructions": reconstructions,
                "loss": terms["reconstruction_loss"] + codes["vq_loss"], **terms, **codes}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "ssim_weight": self.ssim_weight, "ssim_warmup_steps": self.ssim_warmup_steps,
            "ssim_window": self.ssim_window, "data_variance": self.data_variance,
            "perceptual_weight": self.perceptual_weight,
            "adversarial_weight": self.adversarial_weight,
            "adversarial_start": self.adversarial_start,
        })
        return config


@keras.saving.register_keras_serializable(package="vqvae")
class VQVAE2Trainer(VQVAETrainer, VQVAE2):
    """The two-level VQ-VAE (`hierarchy.VQVAE2`) trained with `VQVAETrainer`'s step and losses;
    its steps also report "top_perplexity" and "top_codebook_usage" ("perplexity" and
    "codebook_usage" are the bottom level's)."""


@keras.saving.register_keras_serializable(package="vqvae")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that rises linearly from 0 to `learning_rate` over the first
    `warmup_steps` optimizer steps, then stays there.

    Adam's first steps move every weight by about the learning rate whatever its gradient; in
    wide convolutions that can multiply the activations several times within a few steps, and
    a VQ-VAE's latents then leave its codebook behind (the commitment loss jumps and most codes
    die). A warm-up keeps those first steps small.

    Args:
        learning_rate: the rate after the warm-up.
        warmup_steps: steps to reach it.
    """

    def __init__(self, learning_rate: float, warmup_steps: int) -> None:
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: Tensor) -> Tensor:
        fraction = ops.minimum((ops.cast(step, "float32") + 1.0) / self.warmup_steps, 1.0)
        return self.learning_rate * fraction

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}
