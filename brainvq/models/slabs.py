"""A latent that spans the slices: a second-stage VQ autoencoder over a stack's 2D code grids.

The slice VQ-VAE codes each axial slice of a stack as a g x g grid of codes: a stack of S slices
is [S, g, g] codes, and a model that draws them slice by slice has nothing that spans more than
two neighbouring slices. `SlabAutoencoder` codes the whole stack again, as a coarser grid of
[S / f, g, g] **slab codes** (one code per `f` slices of one code column, from its own
codebook), and decodes those back into the slice VQ-VAE's codes: logits over its codebook at
every one of the S x g x g places. A prior over slab codes then draws a whole head as S / f
slab grids (an eighth of the codes at f = 8), and the slab decoder, a 3D network, draws the
slices of each slab together with their neighbours: what it decodes is continuous along the
slice axis by construction.

Shapes: code indices [B, S, g, g] (slices first, bottom first) -> slab codes [B, S / f, g, g]
-> logits [B, S, g, g, K] over the slice codebook. No file is read or written here.
"""
from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models.layers.quantizer import VectorQuantizer


@keras.saving.register_keras_serializable(package="vqvae")
class SlabBlock(layers.Layer):
    """A residual block of two 3D convolutions: (3, 1, 1) along the slices, then (1, 3, 3)
    in-plane, each after a ReLU (factorised: a ninth of a full 3x3x3 convolution's cost)."""

    def __init__(self, channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.along = layers.Conv3D(self.channels, (3, 1, 1), padding="same")
        self.within = layers.Conv3D(self.channels, (1, 3, 3), padding="same")

    def build(self, input_shape: tuple) -> None:
        self.along.build(input_shape)
        self.within.build(input_shape[:-1] + (self.channels,))

    def call(self, inputs: Tensor) -> Tensor:
        hidden = self.along(ops.relu(inputs))
        return inputs + self.within(ops.relu(hidden))

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), channels=self.channels)


@keras.saving.register_keras_serializable(package="vqvae")
class SlabAutoencoder(keras.Model):
    """Slice code grids [B, S, g, g] -> slab codes [B, S / f, g, g] -> slice-code logits.

    Args:
        num_slice_codes: K, the slice VQ-VAE's codebook size (the inputs' and logits' range).
        slab_depth: f, slices per slab (a power of 2; S must be a multiple of it).
        slab_num_codes: the slab codebook's size.
        slab_code_dim: the slab codes' dimension.
        slab_channels: the 3D networks' width.
        blocks: residual blocks at each end of each network.
        commitment_cost, ema_decay, dead_code_threshold: the slab quantizer's
            (`VectorQuantizer`).
    """

    def __init__(self, num_slice_codes: int = 512, slab_depth: int = 8,
                 slab_num_codes: int = 512, slab_code_dim: int = 32, slab_channels: int = 64,
                 blocks: int = 1, commitment_cost: float = 0.25, ema_decay: float = 0.99,
                 dead_code_threshold: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        steps = math.log2(slab_depth) if slab_depth >= 1 else 0.5
        if steps != int(steps):
            raise ValueError(f"slab_depth must be a power of 2 (1, 2, 4, 8, ...), got "
                             f"{slab_depth}")
        self.num_slice_codes, self.slab_depth = int(num_slice_codes), int(slab_depth)
        self.slab_num_codes, self.slab_code_dim = int(slab_num_codes), int(slab_code_dim)
        self.slab_channels, self.blocks = int(slab_channels), int(blocks)
        self.commitment_cost, self.ema_decay = float(commitment_cost), float(ema_decay)
        self.dead_code_threshold = float(dead_code_threshold)
        self.embedding = layers.Embedding(self.num_slice_codes, self.slab_channels)
        self.encoder = self._network(
            [layers.Conv3D(self.slab_channels, (4, 1, 1), strides=(2, 1, 1), padding="same",
                           activation="relu") for _ in range(int(steps))],
            layers.Conv3D(self.slab_code_dim, 1), "encoder")
        self.quantizer = VectorQuantizer(
            self.slab_num_codes, self.slab_code_dim, commitment_cost=self.commitment_cost,
            ema_decay=self.ema_decay, dead_code_threshold=self.dead_code_threshold,
            name="slab_quantizer")
        self.decoder = self._network(
            [layers.Conv3DTranspose(self.slab_channels, (4, 1, 1), strides=(2, 1, 1),
                                    padding="same", activation="relu")
             for _ in range(int(steps))],
            layers.Conv3D(self.num_slice_codes, 1), "decoder", first=layers.Conv3D(
                self.slab_channels, (3, 3, 3), padding="same"))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="code_accuracy")
        self.perplexity_tracker = keras.metrics.Mean(name="perplexity")
        self.build()  # its weights exist before `fit` (a saved model holds them all)

    def _network(self, resampling: layers.Layer, last: layers.Layer, name: str,
                 first: layers.Layer | None = None) -> keras.Sequential:
        """[first] blocks, the resampling convolutions, blocks, then `last`."""
        stack = [first] if first is not None else []
        stack += [SlabBlock(self.slab_channels) for _ in range(self.blocks)]
        stack += resampling
        stack += [SlabBlock(self.slab_channels) for _ in range(self.blocks)]
        stack += [layers.Activation("relu"), last]
        return keras.Sequential(stack, name=name)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.accuracy_tracker, self.perplexity_tracker]

    def build(self, input_shape: tuple | None = None) -> None:
        if self.built:
            return
        depth, grid = 2 * self.slab_depth, 2
        self.call(ops.zeros((1, depth, grid, grid), "int32"))
        self.built = True

    def _check_depth(self, code_indices: Tensor) -> None:
        if code_indices.shape[1] is not None and code_indices.shape[1] % self.slab_depth:
            raise ValueError(f"a stack of {code_indices.shape[1]} slices does not split into "
                             f"slabs of {self.slab_depth}: cut stacks of a multiple of "
                             f"{self.slab_depth} slices")

    def bottleneck(self, code_indices: Tensor, training: bool = False) -> dict[str, Tensor]:
        """The quantizer's dict (`quantized`, `code_indices` [B, S / f, g, g], `loss`, ...)
        for slice code grids [B, S, g, g]."""
        self._check_depth(code_indices)
        features = self.embedding(ops.cast(code_indices, "int32"))
        return self.quantizer(self.encoder(features, training=training), training=training)

    def call(self, code_indices: Tensor, training: bool = False) -> Tensor:
        """Slice-code logits [B, S, g, g, K] through the slab bottleneck."""
        return self.decoder(self.bottleneck(code_indices, training)["quantized"],
                            training=training)

    def encode(self, code_indices: Tensor) -> Tensor:
        """Slab codes [B, S / f, g, g] int32 of slice code grids [B, S, g, g]."""
        return self.bottleneck(code_indices)["code_indices"]

    def decode_logits(self, slab_codes: Tensor) -> Tensor:
        """Slice-code logits [B, S, g, g, K] of slab codes [B, S / f, g, g]."""
        return self.decoder(self.quantizer.lookup(slab_codes))

    def decode(self, slab_codes: Tensor) -> Tensor:
        """The most likely slice code grids [B, S, g, g] int32 of slab codes."""
        return ops.cast(ops.argmax(self.decode_logits(slab_codes), axis=-1), "int32")

    def slab_losses(self, code_indices: Tensor, training: bool) -> tuple[Tensor, Tensor, Tensor]:
        quantized = self.bottleneck(code_indices, training)
        logits = self.decoder(quantized["quantized"], training=training)
        reconstruction = ops.mean(keras.losses.sparse_categorical_crossentropy(
            code_indices, logits, from_logits=True))
        accuracy = ops.mean(ops.cast(
            ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"),
                      ops.cast(code_indices, "int32")), "float32"))
        return reconstruction + quantized["loss"], accuracy, quantized["perplexity"]

    def _track(self, loss: Tensor, accuracy: Tensor, perplexity: Tensor) -> dict[str, Tensor]:
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        self.perplexity_tracker.update_state(perplexity)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data: Any) -> dict[str, Tensor]:
        code_indices = data[0] if isinstance(data, tuple) else data
        if keras.backend.backend() == "jax":
            raise NotImplementedError("SlabAutoencoder trains on TensorFlow; on JAX, call "
                                      "`stateless_call` with your own step")
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, accuracy, perplexity = self.slab_losses(code_indices, training=True)
        weights = self.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return self._track(loss, accuracy, perplexity)

    def test_step(self, data: Any) -> dict[str, Tensor]:
        code_indices = data[0] if isinstance(data, tuple) else data
        return self._track(*self.slab_losses(code_indices, training=False))

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), num_slice_codes=self.num_slice_codes,
                    slab_depth=self.slab_depth, slab_num_codes=self.slab_num_codes,
                    slab_code_dim=self.slab_code_dim, slab_channels=self.slab_channels,
                    blocks=self.blocks,
                    commitment_cost=self.commitment_cost, ema_decay=self.ema_decay,
                    dead_code_threshold=self.dead_code_threshold)
