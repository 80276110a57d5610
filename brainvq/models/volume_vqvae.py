"""A VQ-VAE over whole stacks: one 3D grid of codes for a head, not a grid per slice.

The slice VQ-VAE (`vqvae.VQVAE`) codes each axial slice of a 128 x 128 x 64 stack as 16 x 16
codes, and the volume prior draws the 64 grids one after another: nothing in its latent spans
more than two slices. `VolumeVQVAE` codes the stack itself, slices first, [S, H, W, 1] ->
[S/fs, H/f, W/f] code indices (f = 2**num_downsamples in-plane, fs along the slices; 8 x 16 x
16 = 2,048 codes for a 64-slice head at f = fs = 8), with 3D strided convolutions, 3D residual
blocks and the same `VectorQuantizer`; its decoder renders all the slices of a head together.
It is fully convolutional: it trains on crops of stacks and codes whole ones.

Model code is `keras.ops` and `keras.layers` only (TensorFlow and JAX backends).
"""
from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models.layers.quantizer import VectorQuantizer
from brainvq.models.vqvae import QuantizedAutoencoder, ResidualBlock, level_channels


@keras.saving.register_keras_serializable(package="vqvae")
class ResidualBlock3D(ResidualBlock):
    """ReLU -> 3x3x3 conv -> ReLU -> 1x1x1 conv, added to the input: `vqvae.ResidualBlock` in
    3D (the same arguments)."""

    convolution = layers.Conv3D


def level_strides(num_downsamples: int, slice_downsamples: int) -> list[tuple[int, int, int]]:
    """(slices, rows, columns) strides of each level: 2 in-plane at every level, 2 along the
    slices at the first `slice_downsamples` levels and 1 after them."""
    if not 0 <= slice_downsamples <= num_downsamples:
        raise ValueError(f"slice_downsamples {slice_downsamples} must lie in [0, "
                         f"num_downsamples = {num_downsamples}]")
    return [(2 if level < slice_downsamples else 1, 2, 2) for level in range(num_downsamples)]


def _kernel(strides: tuple[int, int, int]) -> tuple[int, int, int]:
    """4 along a strided axis (no checkerboard: twice the stride), 3 along an unstrided one."""
    return tuple(4 if stride == 2 else 3 for stride in strides)


def build_volume_encoder(code_dim: int, num_downsamples: int = 3, channels: int = 16,
                         num_residual_blocks: int = 2, slice_downsamples: int | None = None
                         ) -> keras.Model:
    """Strided 3D convolutions, then residual blocks: [B, S, H, W, 1] -> [B, S/fs, H/f, W/f,
    code_dim] (f = 2**num_downsamples in-plane, fs = 2**slice_downsamples along the slices)."""
    inputs = keras.Input((None, None, None, 1), name="stack")
    hidden = inputs
    widths = level_channels(channels, num_downsamples)
    strides = level_strides(num_downsamples, num_downsamples if slice_downsamples is None
                            else slice_downsamples)
    for level, (width, stride) in enumerate(zip(widths, strides)):
        hidden = layers.Conv3D(width, _kernel(stride), strides=stride, padding="same",
                               activation="relu", name=f"down_{level}")(hidden)
    hidden = layers.Conv3D(widths[-1], 3, padding="same", name="mix")(hidden)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock3D(widths[-1], name=f"residual_{block}")(hidden)
    hidden = layers.ReLU()(hidden)
    latents = layers.Conv3D(code_dim, 1, name="to_codes")(hidden)
    return keras.Model(inputs, latents, name="volume_encoder")


UPSAMPLING = ("transposed", "resize")


def build_volume_decoder(code_dim: int, num_downsamples: int = 3, channels: int = 16,
                         num_residual_blocks: int = 2, slice_downsamples: int | None = None,
                         upsampling: str = "transposed") -> keras.Model:
    """Residual blocks, then an upsampling level per downsampling one: [B, s, h, w, code_dim]
    -> [B, s*fs, h*f, w*f, 1]. `upsampling` "transposed": transposed 3D convolutions (kernel 4
    along a strided axis); "resize": nearest-neighbour upsampling, then a 3x3x3 convolution.
    The two output voxels a transposed convolution makes of one input voxel along a strided
    axis sum different taps of its kernel, so they can differ where the input does not: a
    pattern of period 2 that an adversarial loss amplified into stripes between slices and a
    grid in-plane (docs/experiments.md, "A sharper 3D decoder"); a resized grid is smooth
    until a convolution puts detail in."""
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling {upsampling!r} is not one of {UPSAMPLING}")
    inputs = keras.Input((None, None, None, code_dim), name="quantized")
    widths = level_channels(channels, num_downsamples)
    strides = level_strides(num_downsamples, num_downsamples if slice_downsamples is None
                            else slice_downsamples)
    hidden = layers.Conv3D(widths[-1], 3, padding="same", name="from_codes")(inputs)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock3D(widths[-1], name=f"residual_{block}")(hidden)
    hidden = layers.ReLU()(hidden)
    for level in reversed(range(len(widths))):
        out_width = widths[level - 1] if level > 0 else max(channels // 2, 1)
        if upsampling == "resize":
            hidden = layers.UpSampling3D(strides[level], name=f"resize_{level}")(hidden)
            hidden = layers.Conv3D(out_width, 3, padding="same", activation="relu",
                                   name=f"up_{level}")(hidden)
        else:
            hidden = layers.Conv3DTranspose(out_width, _kernel(strides[level]),
                                            strides=strides[level], padding="same",
                                            activation="relu", name=f"up_{level}")(hidden)
    stack = layers.Conv3D(1, 3, padding="same", name="to_stack", dtype="float32")(hidden)
    return keras.Model(inputs, stack, name="volume_decoder")


@keras.saving.register_keras_serializable(package="vqvae")
class VolumeVQVAE(QuantizedAutoencoder, keras.Model):
    """3D encoder -> VectorQuantizer -> 3D decoder: stacks to a 3D grid of code indices and back.

    Args:
        num_codes, code_dim, commitment_cost, ema_decay, dead_code_threshold: passed to
            `VectorQuantizer` (EMA codebook).
        num_downsamples: stride-2 levels in-plane; f = 2**num_downsamples.
        slice_downsamples: stride-2 levels along the slices (None: num_downsamples, the same
            factor in every direction); fs = 2**slice_downsamples.
        channels, num_residual_blocks: width of the first level (doubling per level, capped at
            4x) and depth at the code grid's resolution.
        upsampling: the decoder's upsampling, "transposed" (convolutions) or "resize" (nearest
            neighbour, then a convolution: no pattern of period 2; `build_volume_decoder`).

    Call returns the reconstructions [B, S, H, W, 1] (float32) and, while training, adds the
    quantizer's loss to the model's losses, so `compile(loss="mse")` and `fit(stacks, stacks)`
    train it (mean absolute error alone gave back black stacks: most voxels are background).
    `encode` gives code indices [B, S/fs, H/f, W/f]; `decode_codes` renders them [B, S, H, W, 1]
    and `autoencode` gives the reconstructions with the quantizer's outputs
    (`vqvae.QuantizedAutoencoder`, as the slice VQ-VAE).
    """

    def __init__(self, num_codes: int = 512, code_dim: int = 64, num_downsamples: int = 3,
                 channels: int = 16, num_residual_blocks: int = 2,
                 slice_downsamples: int | None = None, upsampling: str = "transposed",
                 commitment_cost: float = 0.25,
                 ema_decay: float = 0.99,
                 dead_code_threshold: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.num_downsamples = int(num_downsamples)
        self.channels = int(channels)
        self.num_residual_blocks = int(num_residual_blocks)
        self.commitment_cost = float(commitment_cost)
        self.ema_decay = float(ema_decay)
        self.dead_code_threshold = float(dead_code_threshold)
        self.slice_downsamples = int(self.num_downsamples if slice_downsamples is None
                                     else slice_downsamples)
        level_strides(self.num_downsamples, self.slice_downsamples)  # checks the two
        self.upsampling = str(upsampling)
        self.factors = (2 ** self.slice_downsamples, 2 ** self.num_downsamples,
                        2 ** self.num_downsamples)
        networks = (self.code_dim, self.num_downsamples, self.channels,
                    self.num_residual_blocks, self.slice_downsamples)
        self.encoder = build_volume_encoder(*networks)
        self.decoder = build_volume_decoder(*networks, upsampling=self.upsampling)
        self.quantizer = VectorQuantizer(self.num_codes, self.code_dim,
                                         commitment_cost=self.commitment_cost,
                                         ema_decay=self.ema_decay,
                                         dead_code_threshold=self.dead_code_threshold,
                                         name="vector_quantizer")
        self.build()  # every weight exists from the start: `encode` works before any `call`

    def code_shape(self, stack_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The code grid of a stack [S, H, W]: each side over its factor (fs, f, f).

        Raises:
            ValueError: a side is not divisible by its factor.
        """
        if len(stack_shape) != 3 or any(side % factor
                                        for side, factor in zip(stack_shape, self.factors)):
            raise ValueError(f"a stack of {tuple(stack_shape)} voxels cannot be coded: its "
                             f"slices, rows and columns must be divisible by {self.factors} "
                             f"(crop or pad the stack, or use fewer downsamples)")
        return tuple(side // factor for side, factor in zip(stack_shape, self.factors))

    def code_bits(self, stack_shape: tuple[int, int, int]) -> float:
        """Bits of one stack's code: positions x log2 K."""
        return math.prod(self.code_shape(stack_shape)) * math.log2(self.num_codes)

    def build(self, input_shape: tuple | None = None) -> None:
        self.quantizer.build((None, None, None, None, self.code_dim))
        super().build((None, None, None, None, 1))

    def call(self, stacks: Tensor, training: bool = False) -> Tensor:
        reconstructions, codes = self.autoencode(stacks, training=training)
        if training:
            self.add_loss(codes["vq_loss"])
        return reconstructions

    def encode(self, stacks: Tensor) -> Tensor:
        """Code indices [B, s, h, w] of stacks [B, S, H, W, 1]."""
        latents = ops.cast(self.encoder(stacks, training=False), "float32")
        flat = ops.reshape(latents, (-1, self.code_dim))
        return ops.reshape(self.quantizer.nearest_codes(flat), ops.shape(latents)[:-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_codes": self.num_codes, "code_dim": self.code_dim,
            "num_downsamples": self.num_downsamples, "channels": self.channels,
            "num_residual_blocks": self.num_residual_blocks,
            "slice_downsamples": self.slice_downsamples, "upsampling": self.upsampling,
            "commitment_cost": self.commitment_cost, "ema_decay": self.ema_decay,
            "dead_code_threshold": self.dead_code_threshold,
        })
        return config
