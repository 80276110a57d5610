"""An adversarial loss for sharper reconstructions: a PatchGAN discriminator with hinge losses and
the adaptive weight of VQGAN (Esser et al. 2021).

The discriminator looks at overlapping patches (its receptive field is a few tens of pixels) and
says, per patch, whether it comes from a real slice or a reconstruction. Blur is what tells them
apart, so the decoder is pushed towards real texture where pixel losses settle for the average.

    discriminator:  relu(1 - D(real)) + relu(1 + D(reconstruction))      (mean over patches)
    generator:      -D(reconstruction)
    weight:         adversarial_weight * |grad_W L_rec| / (|grad_W L_gen| + 1e-4)

where W is the decoder's last layer, so the adversarial gradient there is as large as the
reconstruction gradient (times `adversarial_weight`) whatever the two losses' scales. Both terms
are off until `adversarial_start` training steps, when the reconstructions are already close.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from brainvq.hints import Tensor

ADAPTIVE_EPSILON = 1e-4
ADAPTIVE_MAX = 1e4


def build_discriminator(image_size: int, channels: int = 64, num_layers: int = 3) -> keras.Model:
    """A PatchGAN discriminator: [B, S, S, 1] -> logits [B, S / 2^n, S / 2^n, 1] (n = num_layers).

    Args:
        image_size: side of the square inputs.
        channels: width of the first convolution; doubles per layer up to 8x.
        num_layers: stride-2 4x4 convolutions.

    Returns:
        An uncompiled keras.Model named "discriminator".
    """
    inputs = keras.Input((image_size, image_size, 1), name="image")
    return _patch_discriminator(inputs, layers.Conv2D, channels, num_layers, "discriminator")


def build_volume_discriminator(channels: int = 32, num_layers: int = 3) -> keras.Model:
    """The PatchGAN discriminator over stacks (3D patches, so it sees the steps between slices
    as well as the texture within them): [B, S, H, W, 1] -> logits [B, S / 2^n, H / 2^n,
    W / 2^n, 1], any S, H, W divisible by 2^n.

    Args:
        channels: width of the first 4x4x4 convolution; doubles per layer up to 8x.
        num_layers: stride-2 4x4x4 convolutions.

    Returns:
        An uncompiled keras.Model named "volume_discriminator".
    """
    inputs = keras.Input((None, None, None, 1), name="stack")
    return _patch_discriminator(inputs, layers.Conv3D, channels, num_layers,
                                "volume_discriminator")


def _patch_discriminator(inputs: Tensor, convolution: type, channels: int, num_layers: int,
                         name: str) -> keras.Model:
    """Stride-2 convolutions of kernel 4 (the first without normalisation), LeakyReLU 0.2,
    group normalisation, then one convolution to a logit per patch."""
    hidden = convolution(channels, 4, strides=2, padding="same", name="down_0")(inputs)
    hidden = layers.LeakyReLU(0.2)(hidden)
    for level in range(1, num_layers):
        width = channels * min(2 ** level, 8)
        hidden = convolution(width, 4, strides=2, padding="same", use_bias=False,
                             name=f"down_{level}")(hidden)
        hidden = layers.GroupNormalization(groups=min(32, width), name=f"norm_{level}")(hidden)
        hidden = layers.LeakyReLU(0.2)(hidden)
    logits = convolution(1, 4, padding="same", name="patch_logits", dtype="float32")(hidden)
    return keras.Model(inputs, logits, name=name)


def discriminator_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss of the discriminator: mean relu(1 - real) + mean relu(1 + fake), over 2."""
    real = ops.mean(ops.relu(1.0 - ops.cast(real_logits, "float32")))
    fake = ops.mean(ops.relu(1.0 + ops.cast(fake_logits, "float32")))
    return 0.5 * (real + fake)


def generator_hinge(fake_logits: Tensor) -> Tensor:
    """The generator's adversarial loss: -mean D(reconstruction)."""
    return -ops.mean(ops.cast(fake_logits, "float32"))


def adaptive_weight(reconstruction_gradient: Tensor, generator_gradient: Tensor) -> Tensor:
    """|grad L_rec| / (|grad L_gen| + 1e-4) at the decoder's last layer, clipped to [0, 1e4],
    with no gradient of its own."""
    numerator = ops.sqrt(ops.sum(ops.square(ops.cast(reconstruction_gradient, "float32"))))
    denominator = ops.sqrt(ops.sum(ops.square(ops.cast(generator_gradient, "float32"))))
    weight = numerator / (denominator + ADAPTIVE_EPSILON)
    return ops.stop_gradient(ops.clip(weight, 0.0, ADAPTIVE_MAX))
