"""The VQ-VAE network: encoder -> `VectorQuantizer` -> decoder, with nothing of its training.

The encoder (stride-2 convolutions, residual blocks) and decoder (residual blocks, transposed
convolutions) down- and up-sample by 2^num_downsamples. `VQVAE` encodes images to code indices
and renders code indices back to images; `vqvae_trainer.VQVAETrainer` is this network with its
losses (`losses/reconstruction.py`) and training steps (`vqvae_steps.py`).
"""
from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models.kerasio import build_kerasio_decoder, build_kerasio_encoder
from brainvq.models.layers.attention import SpatialSelfAttention
from brainvq.models.layers.quantizer import VectorQuantizer


@keras.saving.register_keras_serializable(package="vqvae")
class ResidualBlock(layers.Layer):
    """ReLU -> 3x3 conv -> ReLU -> 1x1 conv, added to the input (the VQ-VAE paper's block).

    Args:
        channels: width of the input and output.
        hidden_channels: width of the 3x3 convolution (default: channels // 2).
    """

    convolution = layers.Conv2D  # the rank of the block (`volume_vqvae.ResidualBlock3D`: 3D)

    def __init__(self, channels: int, hidden_channels: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.hidden_channels = int(hidden_channels or max(channels // 2, 1))
        self.conv3 = self.convolution(self.hidden_channels, 3, padding="same")
        self.conv1 = self.convolution(self.channels, 1)

    def build(self, input_shape: tuple) -> None:
        self.conv3.build(input_shape)
        self.conv1.build(tuple(input_shape[:-1]) + (self.hidden_channels,))

    def call(self, inputs: Tensor) -> Tensor:
        hidden = self.conv3(ops.relu(inputs))
        return inputs + self.conv1(ops.relu(hidden))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"channels": self.channels, "hidden_channels": self.hidden_channels})
        return config


def level_channels(channels: int, num_downsamples: int) -> list[int]:
    """Width of each resolution level: `channels`, doubling per level, capped at 4x."""
    return [channels * min(2 ** level, 4) for level in range(num_downsamples)]


def build_encoder(image_size: int, code_dim: int, num_downsamples: int = 3, channels: int = 64,
                  num_residual_blocks: int = 2, attention: bool = False) -> keras.Model:
    """Strided convolutions then residual blocks (and, with `attention`, a self-attention block
    at the grid's resolution): [B, S, S, 1] -> [B, S/2^n, S/2^n, code_dim]."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    hidden = inputs
    for level, width in enumerate(level_channels(channels, num_downsamples)):
        hidden = layers.Conv2D(width, 4, strides=2, padding="same", activation="relu",
                               name=f"down_{level}")(hidden)
    width = level_channels(channels, num_downsamples)[-1]
    hidden = layers.Conv2D(width, 3, padding="same", name="mix")(hidden)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(width, name=f"residual_{block}")(hidden)
    if attention:
        hidden = SpatialSelfAttention(name="attention")(hidden)
    hidden = layers.ReLU()(hidden)
    latents = layers.Conv2D(code_dim, 1, name="to_codes")(hidden)
    return keras.Model(inputs, latents, name="encoder")


def build_decoder(grid_size: int, code_dim: int, num_downsamples: int = 3, channels: int = 64,
                  num_residual_blocks: int = 2, attention: bool = False) -> keras.Model:
    """(With `attention`, a self-attention block, then) residual blocks, then transposed
    convolutions: [B, g, g, code_dim] -> [B, g*2^n, g*2^n, 1]."""
    inputs = keras.Input((grid_size, grid_size, code_dim), name="quantized")
    widths = level_channels(channels, num_downsamples)
    hidden = layers.Conv2D(widths[-1], 3, padding="same", name="from_codes")(inputs)
    if attention:
        hidden = SpatialSelfAttention(name="attention")(hidden)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(widths[-1], name=f"residual_{block}")(hidden)
    hidden = layers.ReLU()(hidden)
    for level in reversed(range(len(widths))):
        out_width = widths[level - 1] if level > 0 else channels // 2
        hidden = layers.Conv2DTranspose(out_width, 4, strides=2, padding="same",
                                        activation="relu", name=f"up_{level}")(hidden)
    image = layers.Conv2D(1, 3, padding="same", name="to_image", dtype="float32")(hidden)
    return keras.Model(inputs, image, name="decoder")


class QuantizedAutoencoder:
    """Encoder -> quantizer -> decoder, for a model that has the three as `encoder`, `quantizer`
    (a `VectorQuantizer`) and `decoder`: `VQVAE` (slices) and `volume_vqvae.VolumeVQVAE`
    (stacks) share it."""

    def autoencode(self, images: Tensor, training: bool = False
                   ) -> tuple[Tensor, dict[str, Tensor]]:
        """Encoder -> quantizer -> decoder.

        Returns:
            (reconstructions float32 of the inputs' shape, codes), where codes holds
            "code_indices" (the code grid), "vq_loss", "perplexity" and "codebook_usage" (the
            quantizer's outputs).
        """
        latents = self.encoder(images, training=training)
        quantized = self.quantizer(latents, training=training)
        reconstructions = ops.cast(self.decoder(quantized["quantized"], training=training),
                                   "float32")
        return reconstructions, {"code_indices": quantized["code_indices"],
                                 "vq_loss": quantized["loss"],
                                 "perplexity": quantized["perplexity"],
                                 "codebook_usage": quantized["usage"]}

    def decode_codes(self, code_indices: Tensor) -> Tensor:
        """Images (or stacks) rendered from code indices."""
        return ops.cast(self.decoder(self.quantizer.lookup(code_indices), training=False),
                        "float32")


@keras.saving.register_keras_serializable(package="vqvae")
class VQVAE(QuantizedAutoencoder, keras.Model):
    """Encoder -> VectorQuantizer -> decoder: images to code indices and back.

    Args:
        image_size: side of the square input slices.
        num_codes, code_dim, commitment_cost, use_ema, ema_decay, dead_code_threshold: passed to
            `VectorQuantizer`.
        num_downsamples: stride-2 levels; the code grid is image_size / 2**num_downsamples.
        channels, num_residual_blocks: encoder/decoder width and depth.
        architecture: "residual" (ours) or "kerasio" (the keras-io `vq_vae.py` encoder and
            decoder, 4x down, ignoring channels and residual blocks; kept as a baseline).
        attention: a self-attention block at the grid's resolution in the encoder and the
            decoder (`attention.SpatialSelfAttention`).

    Call returns the reconstructions [B, S, S, 1]; `encode` returns code indices [B, g, g],
    `decode_codes` renders code indices back into images, and `autoencode` returns the
    reconstructions with the quantizer's outputs (its loss, perplexity and codebook usage).
    """

    levels = 1  # code grids (hierarchy.VQVAE2 has two)

    def __init__(self, image_size: int = 128, num_codes: int = 512, code_dim: int = 64,
                 num_downsamples: int = 3, channels: int = 64, num_residual_blocks: int = 2,
                 commitment_cost: float = 0.25, use_ema: bool = True, ema_decay: float = 0.99,
                 dead_code_threshold: float = 1.0, architecture: str = "residual",
                 attention: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if image_size % (2 ** num_downsamples):
            raise ValueError(f"image_size {image_size} is not divisible by 2**num_downsamples "
                             f"= {2 ** num_downsamples}; pick another --image-size or "
                             f"--num-downsamples")
        self.image_size = int(image_size)
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.num_downsamples = int(num_downsamples)
        self.channels = int(channels)
        self.num_residual_blocks = int(num_residual_blocks)
        self.commitment_cost = float(commitment_cost)
        self.use_ema = bool(use_ema)
        self.ema_decay = float(ema_decay)
        self.dead_code_threshold = float(dead_code_threshold)
        self.attention = bool(attention)
        self.architecture = architecture
        if architecture == "kerasio":
            self.num_downsamples = 2
        elif architecture != "residual":
            raise ValueError(f"unknown architecture {architecture!r}: use residual or kerasio")
        self.grid_size = self.image_size // 2 ** self.num_downsamples
        self._build_networks()

    def _build_networks(self) -> None:
        """Creates the encoder, the decoder and the quantizer (a subclass may add levels)."""
        if self.architecture == "kerasio":
            self.encoder = build_kerasio_encoder(self.image_size, self.code_dim)
            self.decoder = build_kerasio_decoder(self.grid_size, self.code_dim)
        else:
            self.encoder = build_encoder(self.image_size, self.code_dim, self.num_downsamples,
                                         self.channels, self.num_residual_blocks, self.attention)
            self.decoder = build_decoder(self.grid_size, self.code_dim, self.num_downsamples,
                                         self.channels, self.num_residual_blocks, self.attention)
        self.quantizer = self._make_quantizer(self.code_dim, "vector_quantizer")

    def _make_quantizer(self, code_dim: int, name: str) -> VectorQuantizer:
        return VectorQuantizer(
            self.num_codes, code_dim, commitment_cost=self.commitment_cost,
            use_ema=self.use_ema, ema_decay=self.ema_decay,
            dead_code_threshold=self.dead_code_threshold, name=name)

    @property
    def code_shape(self) -> tuple[int, ...]:
        """Shape of one image's code indices (`encode` gives [B, *code_shape])."""
        return (self.grid_size, self.grid_size)

    @property
    def code_bits(self) -> float:
        """Bits of one image's code: positions x log2 K."""
        return self.grid_size ** 2 * math.log2(self.num_codes)

    def build(self, input_shape: tuple | None = None) -> None:
        grid = (None, self.grid_size, self.grid_size, self.code_dim)
        self.quantizer.build(grid)
        super().build((None, self.image_size, self.image_size, 1))

    def call(self, images: Tensor, training: bool = False) -> Tensor:
        return self.autoencode(images, training=training)[0]

    @staticmethod
    def _nearest(quantizer: VectorQuantizer, latents: Tensor, grid_size: int) -> Tensor:
        """Code indices [B, grid_size, grid_size] of `quantizer`'s codes nearest `latents`."""
        flat = ops.reshape(ops.cast(latents, "float32"), (-1, quantizer.code_dim))
        return ops.reshape(quantizer.nearest_codes(flat), (-1, grid_size, grid_size))

    def encode(self, images: Tensor) -> Tensor:
        """Code indices [B, g, g] of a batch of images."""
        return self._nearest(self.quantizer, self.encoder(images, training=False),
                             self.grid_size)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "image_size": self.image_size, "num_codes": self.num_codes,
            "code_dim": self.code_dim, "num_downsamples": self.num_downsamples,
            "channels": self.channels, "num_residual_blocks": self.num_residual_blocks,
            "commitment_cost": self.commitment_cost, "use_ema": self.use_ema,
            "ema_decay": self.ema_decay, "dead_code_threshold": self.dead_code_threshold,
            "architecture": self.architecture, "attention": self.attention,
        })
        return config
