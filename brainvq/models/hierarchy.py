"""VQ-VAE-2: a two-level VQ-VAE network, and the two-level prior over its codes.

The bottom level is our single-level VQ-VAE's grid (image / 2**num_downsamples); the top level
is a grid half as wide again, encoded from the bottom encoder's features. As in Razavi et al.
(2019), the bottom latents are computed from the bottom features *and* the decoded top codes,
so the bottom codes only need to hold what the top codes do not; the decoder reads both.

One image's code is stored as one flat vector: the top grid's codes in raster order, then the
bottom grid's (`pack_codes` / `unpack_codes`). Both levels share the codebook size K, so that
vector is what the rest of the pipeline already handles (the cached `codes.npz`, the prior's
bits per code, the code histograms), and its length times log2 K is the code's size in bits.

The prior (`HierarchicalPrior`) is two `GatedPixelCNN`s of the whole-context kind: a top prior
conditioned on the slice position, and a bottom prior conditioned on the slice position and on
the top codes (a spatial condition, upsampled to the bottom grid). Trained together, the top
prior sees the true top codes and the bottom prior the true top codes as its condition; sampled,
the top grid is drawn first, then the bottom grid given it (sampling.py).
"""
from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models.layers.attention import SpatialSelfAttention
from brainvq.models.prior_inputs import split_prior_inputs
from brainvq.models.vqvae import (
    VQVAE,
    ResidualBlock,
    build_decoder,
    build_encoder,
    level_channels,
)


def pack_codes(top: Tensor, bottom: Tensor) -> Tensor:
    """Top [B, t, t] and bottom [B, g, g] code indices -> one [B, t*t + g*g] vector each."""
    batch = ops.shape(bottom)[0]
    return ops.concatenate([ops.reshape(top, (batch, -1)),
                            ops.reshape(ops.cast(bottom, top.dtype), (batch, -1))], axis=1)


def unpack_codes(codes: Tensor, top_grid_size: int, grid_size: int) -> tuple[Tensor, Tensor]:
    """The inverse of `pack_codes`: (top [B, t, t], bottom [B, g, g])."""
    codes = ops.convert_to_tensor(codes)
    top_length = top_grid_size * top_grid_size
    return (ops.reshape(codes[:, :top_length], (-1, top_grid_size, top_grid_size)),
            ops.reshape(codes[:, top_length:], (-1, grid_size, grid_size)))


def build_top_encoder(grid_size: int, width: int, code_dim: int, num_residual_blocks: int,
                      attention: bool) -> keras.Model:
    """Bottom features [B, g, g, width] -> top latents [B, g/2, g/2, code_dim]."""
    inputs = keras.Input((grid_size, grid_size, width), name="bottom_features")
    hidden = layers.Conv2D(width, 4, strides=2, padding="same", activation="relu",
                           name="down")(inputs)
    hidden = layers.Conv2D(width, 3, padding="same", name="mix")(hidden)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(width, name=f"residual_{block}")(hidden)
    if attention:
        hidden = SpatialSelfAttention(name="attention")(hidden)
    latents = layers.Conv2D(code_dim, 1, name="to_codes")(layers.ReLU()(hidden))
    return keras.Model(inputs, latents, name="top_encoder")


def build_top_decoder(top_grid_size: int, code_dim: int, width: int, num_residual_blocks: int
                      ) -> keras.Model:
    """Quantized top codes [B, t, t, code_dim] -> features on the bottom grid [B, 2t, 2t, width]
    (what the bottom latents are computed from, beside the bottom features)."""
    inputs = keras.Input((top_grid_size, top_grid_size, code_dim), name="top_quantized")
    hidden = layers.Conv2D(width, 3, padding="same", name="from_codes")(inputs)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(width, name=f"residual_{block}")(hidden)
    hidden = layers.Conv2DTranspose(width, 4, strides=2, padding="same", name="up")(
        layers.ReLU()(hidden))
    return keras.Model(inputs, hidden, name="top_decoder")


@keras.saving.register_keras_serializable(package="vqvae")
class VQVAE2(VQVAE):
    """A two-level VQ-VAE network (VQ-VAE-2); `vqvae_trainer.VQVAE2Trainer` trains it.

    Encoder (as the single level's, to `width` features on the bottom grid g) -> top encoder
    (one more stride-2 level, to the top grid t = g/2) -> top quantizer; the bottom latents are
    a 1x1 convolution of the bottom features concatenated with the top decoder's features of
    the quantized top codes -> bottom quantizer; the decoder (as the single level's) reads the
    quantized bottom codes concatenated with the quantized top codes upsampled to g. Each level
    has its own `VectorQuantizer` (EMA, k-means init, dead-code restart); both have K codes.

    Args:
        top_code_dim: dimension of the top codes (the bottom's is `code_dim`).
        Everything else as `VQVAE` (architecture "residual" only).

    `encode` returns packed codes [B, t*t + g*g] (`pack_codes`), `decode_codes` takes them;
    `autoencode`'s codes also hold "top_perplexity" and "top_codebook_usage".
    """

    levels = 2

    def __init__(self, top_code_dim: int = 64, **kwargs: Any) -> None:
        self.top_code_dim = int(top_code_dim)
        if kwargs.get("architecture", "residual") != "residual":
            raise ValueError("VQ-VAE-2 is built on the residual architecture only")
        super().__init__(**kwargs)

    @property
    def top_grid_size(self) -> int:
        return self.grid_size // 2

    @property
    def code_shape(self) -> tuple[int, ...]:
        """Shape of one image's packed code."""
        return (self.top_grid_size ** 2 + self.grid_size ** 2,)

    @property
    def code_bits(self) -> float:
        """Bits of one image's code: positions of both grids x log2 K."""
        return (self.grid_size ** 2 + self.top_grid_size ** 2) * math.log2(self.num_codes)

    def _build_networks(self) -> None:
        if self.grid_size % 2:
            raise ValueError(f"a two-level VQ-VAE needs an even bottom grid, got "
                             f"{self.grid_size}x{self.grid_size}: use an --image-size divisible "
                             f"by 2**(--num-downsamples + 1) = {2 ** (self.num_downsamples + 1)}")
        width = level_channels(self.channels, self.num_downsamples)[-1]
        self.encoder = build_encoder(self.image_size, width, self.num_downsamples, self.channels,
                                     self.num_residual_blocks, self.attention)
        self.top_encoder = build_top_encoder(self.grid_size, width, self.top_code_dim,
                                             self.num_residual_blocks, self.attention)
        self.top_decoder = build_top_decoder(self.top_grid_size, self.top_code_dim, width,
                                             self.num_residual_blocks)
        self.bottom_latents = layers.Conv2D(self.code_dim, 1, name="bottom_latents")
        self.top_upsample = layers.Conv2DTranspose(self.top_code_dim, 4, strides=2,
                                                   padding="same", name="top_upsample")
        self.decoder = build_decoder(self.grid_size, self.code_dim + self.top_code_dim,
                                     self.num_downsamples, self.channels,
                                     self.num_residual_blocks, self.attention)
        self.top_quantizer = self._make_quantizer(self.top_code_dim, "top_quantizer")
        self.quantizer = self._make_quantizer(self.code_dim, "vector_quantizer")

    def build(self, input_shape: tuple | None = None) -> None:
        width = level_channels(self.channels, self.num_downsamples)[-1]
        self.top_quantizer.build((None, self.top_grid_size, self.top_grid_size,
                                  self.top_code_dim))
        self.bottom_latents.build((None, self.grid_size, self.grid_size, 2 * width))
        self.top_upsample.build((None, self.top_grid_size, self.top_grid_size,
                                 self.top_code_dim))
        super().build(input_shape)

    def _bottom_latents(self, features: Tensor, top_quantized: Tensor, training: bool) -> Tensor:
        top_features = self.top_decoder(top_quantized, training=training)
        return self.bottom_latents(ops.concatenate([features, top_features], axis=-1))

    def _decode(self, bottom_quantized: Tensor, top_quantized: Tensor, training: bool) -> Tensor:
        upsampled = self.top_upsample(top_quantized)
        return ops.cast(self.decoder(ops.concatenate([bottom_quantized, upsampled], axis=-1),
                                     training=training), "float32")

    def autoencode(self, images: Tensor, training: bool = False
                   ) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.encoder(images, training=training)
        top = self.top_quantizer(self.top_encoder(features, training=training),
                                 training=training)
        bottom = self.quantizer(self._bottom_latents(features, top["quantized"], training),
                                training=training)
        reconstructions = self._decode(bottom["quantized"], top["quantized"], training)
        return reconstructions, {
            "code_indices": pack_codes(top["code_indices"], bottom["code_indices"]),
            "vq_loss": top["loss"] + bottom["loss"],
            "perplexity": bottom["perplexity"], "codebook_usage": bottom["usage"],
            "top_perplexity": top["perplexity"], "top_codebook_usage": top["usage"]}

    def encode(self, images: Tensor) -> Tensor:
        """Packed code indices [B, t*t + g*g] (top grid, then bottom grid) of a batch."""
        features = self.encoder(images, training=False)
        top = self._nearest(self.top_quantizer, self.top_encoder(features, training=False),
                            self.top_grid_size)
        latents = self._bottom_latents(features, self.top_quantizer.lookup(top), False)
        bottom = self._nearest(self.quantizer, latents, self.grid_size)
        return pack_codes(top, bottom)

    def decode_codes(self, code_indices: Tensor) -> Tensor:
        """Images [B, S, S, 1] rendered from packed code indices [B, t*t + g*g]."""
        top, bottom = unpack_codes(code_indices, self.top_grid_size, self.grid_size)
        return self._decode(self.quantizer.lookup(bottom), self.top_quantizer.lookup(top), False)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["top_code_dim"] = self.top_code_dim
        return config


@keras.saving.register_keras_serializable(package="vqvae")
class HierarchicalPrior(keras.Model):
    """p(top codes | slice) p(bottom codes | top codes, slice) over packed two-level codes.

    Args:
        top, bottom: `GatedPixelCNN`s over the top grid and the bottom grid; the bottom one is
            built with `condition_codes` = K and `condition_grid_size` = the top grid's side.

    Call args:
        inputs: {"code_indices": packed [B, t*t + g*g], "slice_index": [B] (optional)} or a
            tuple (code_indices, slice_index).

    Returns:
        Logits [B, t*t + g*g, K] (float32) in the packed order, so a sparse cross-entropy
        against the packed codes is the NLL of the whole code, per code.
    """

    def __init__(self, top: keras.Model, bottom: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if bottom.condition_codes != top.num_codes or \
                bottom.condition_grid_size != top.grid_size:
            raise ValueError("the bottom prior must be conditioned on the top prior's codes "
                             "and grid")
        self.top = top
        self.bottom = bottom
        self.num_codes = top.num_codes
        self.grid_size = bottom.grid_size
        self.top_grid_size = top.grid_size
        self.num_slice_positions = top.num_slice_positions

    @property
    def unconditional_index(self) -> int:
        return self.top.unconditional_index

    def build(self, input_shape: tuple | None = None) -> None:
        for prior in (self.top, self.bottom):
            if not prior.built:
                prior.build()

    def get_build_config(self) -> dict[str, Any]:
        return {}

    def build_from_config(self, config: dict[str, Any]) -> None:
        self.build()

    def call(self, inputs: Any, training: bool = False) -> Tensor:
        codes, slice_index, _ = split_prior_inputs(inputs)
        top, bottom = unpack_codes(codes, self.top_grid_size, self.grid_size)
        top_logits = self.top({"code_indices": top, "slice_index": slice_index},
                              training=training)
        bottom_logits = self.bottom({"code_indices": bottom, "slice_index": slice_index,
                                     "condition_codes": top}, training=training)
        batch = ops.shape(top_logits)[0]
        return ops.concatenate([ops.reshape(top_logits, (batch, -1, self.num_codes)),
                                ops.reshape(bottom_logits, (batch, -1, self.num_codes))], axis=1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"top": keras.saving.serialize_keras_object(self.top),
                       "bottom": keras.saving.serialize_keras_object(self.bottom)})
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HierarchicalPrior:
        config = dict(config)
        top = keras.saving.deserialize_keras_object(config.pop("top"))
        bottom = keras.saving.deserialize_keras_object(config.pop("bottom"))
        model = cls(top, bottom, **config)
        model.build()  # before Keras compiles it, so the optimizer's state loads too
        return model
