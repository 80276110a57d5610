"""A decoder that sees the neighbouring slices: quantized latents refined along the stack.

The slice VQ-VAE decodes each axial slice of a stack from its own codes alone. Each slice's
codes are the nearest codebook entries to its encoder latents, so neighbouring slices that
differ a little can land on codes that differ a lot: decoded one by one, the stack steps from
slice to slice (docs/experiments.md: real stacks decoded from their codes have a streak index
1.19x the real stacks', decoded from the unquantized latents 1.09x).

`SliceContextRefiner` takes a stack's quantized latents [B, S, g, g, D] (the codebook entries
of its codes) and returns latents of the same shape, each slice's refined from its neighbours'
by factorised 3D residual blocks (`SlabBlock`): a residual on its input whose last layer starts
at zero, so an untrained refiner changes nothing. It is trained to give back the encoder's
unquantized latents (what quantization took away), and the slice VQ-VAE's own decoder renders
its output slice by slice. It is fully convolutional: it trains on short runs of slices and
refines a stack of any length. No file is read or written here.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models.slabs import SlabBlock


@keras.saving.register_keras_serializable(package="vqvae")
class SliceContextRefiner(keras.Model):
    """Quantized latents [B, S, g, g, D] -> refined latents [B, S, g, g, D].

    Args:
        code_dim: D, the slice VQ-VAE's code dimension.
        channels: the 3D network's width.
        blocks: residual blocks; each sees one more slice on each side (the refiner sees
            `blocks` slices above and below).
    """

    def __init__(self, code_dim: int = 64, channels: int = 64, blocks: int = 4,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.code_dim, self.channels, self.blocks = int(code_dim), int(channels), int(blocks)
        self.inflow = layers.Conv3D(self.channels, 1, name="inflow")
        self.residual_blocks = [SlabBlock(self.channels, name=f"block_{number}")
                                for number in range(self.blocks)]
        self.outflow = layers.Conv3D(self.code_dim, 1, kernel_initializer="zeros",
                                     name="outflow")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.build((None, None, None, None, self.code_dim))

    def build(self, input_shape: tuple) -> None:
        if self.built:
            return
        shape = tuple(input_shape[:-1])
        self.inflow.build(shape + (self.code_dim,))
        for block in self.residual_blocks:
            block.build(shape + (self.channels,))
        self.outflow.build(shape + (self.channels,))
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker]

    def call(self, latents: Tensor, training: bool = False) -> Tensor:
        hidden = self.inflow(latents)
        for block in self.residual_blocks:
            hidden = block(hidden)
        return latents + self.outflow(ops.relu(hidden))

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Tensor:
        """The mean squared distance to the unquantized latents `y`."""
        loss = ops.mean(ops.square(ops.cast(y, y_pred.dtype) - y_pred))
        self.loss_tracker.update_state(loss)
        return loss

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), code_dim=self.code_dim, channels=self.channels,
                    blocks=self.blocks)


def refine_codes(refiner: SliceContextRefiner, vqvae: keras.Model, code_indices: Tensor,
                 strength: float = 1.0) -> Tensor:
    """Refined latents [V, S, g, g, D] of slice code stacks [V, S, g, g]: the codebook rows
    moved `strength` of the way to the refiner's output (0: unchanged, 1: the refiner's)."""
    latents = vqvae.quantizer.lookup(ops.cast(code_indices, "int32"))
    if strength == 1.0:
        return refiner(latents)
    return latents + strength * (refiner(latents) - latents)


def decode_refined(refiner: SliceContextRefiner, vqvae: keras.Model, code_indices: Tensor,
                   batch_size: int = 64, strength: float = 1.0) -> Tensor:
    """Images [V, S, H, W] in [0, 1] of slice code stacks [V, S, g, g], each stack's latents
    refined along its slices (`strength`: see `refine_codes`) and then decoded slice by slice
    (`batch_size` slices at a time)."""
    refined = refine_codes(refiner, vqvae, code_indices, strength)
    count, length = refined.shape[:2]
    flat = ops.reshape(refined, (-1,) + tuple(refined.shape[2:]))
    images = ops.concatenate([
        ops.cast(vqvae.decoder(flat[start:start + batch_size], training=False), "float32")
        for start in range(0, count * length, batch_size)])
    images = ops.clip(images, 0.0, 1.0)
    return ops.reshape(images, (count, length) + tuple(images.shape[1:3]))
