"""A prior over one layer of a 3D code grid given every layer below it (issue 52).

The layered volume prior (`build.volume_prior_from_hyperparameters`) draws layer k of a code
stack given layer k - 1 alone: it cannot see where the head began, how fast it has been
growing or whether it is tilted, so its errors carry up the stack and drawn heads end too early
or too late. `StackPixelCNN` is the same gated PixelCNN over one g x g layer, conditioned on the
`context_layers` layers below it: each code embedded (one more row for "no layer here", below
the bottom of the stack), told its depth below the layer drawn, the column of embeddings mixed
into one feature map by a small MLP, then attended over as a whole and mixed by a 3x3
convolution as the spatial condition of `GatedPixelCNN` is. One network draws every layer,
the bottom one given an empty stack, so a whole grid is `length` calls of the fast cached
sampler (`generation.stacks.sample_stack_codes_given_below`).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models.pixelcnn import GatedPixelCNN


@keras.saving.register_keras_serializable(package="vqvae")
class StackPixelCNN(GatedPixelCNN):
    """p(layer k of a code stack | the layers below it, k): a `GatedPixelCNN` whose spatial
    condition is the `context_layers` layers below.

    Args:
        context_layers: D, how many layers below the drawn one it sees (the whole stack: its
            length - 1).
        **kwargs: `GatedPixelCNN`'s (`condition_codes` and `condition_grid_size` are implied:
            the codebook plus the "no layer" code, and the grid itself).

    Call args:
        inputs: as `GatedPixelCNN`'s, with "condition_codes" [B, D, g, g] ints: the D layers
            below the drawn one, the nearest last, `absent_code` where the stack has none
            (`layers_below` cuts them out of a stack). "slice_index" is the layer's depth k.
    """

    def __init__(self, context_layers: int = 15, **kwargs: Any) -> None:
        kwargs.pop("condition_codes", None)
        kwargs.pop("condition_grid_size", None)
        num_codes = int(kwargs.get("num_codes", 512))
        super().__init__(condition_codes=num_codes + 1,
                         condition_grid_size=int(kwargs.get("grid_size", 16)), **kwargs)
        if int(context_layers) < 1:
            raise ValueError(f"context_layers must be >= 1, got {context_layers}")
        self.context_layers = int(context_layers)
        self.depth_embedding = layers.Embedding(self.context_layers, self.filters,
                                                name="context_depth")
        self.context_merge = keras.Sequential(
            [layers.Dense(self.filters, activation="relu"), layers.Dense(self.filters)],
            name="context_merge")

    @property
    def absent_code(self) -> int:
        """The condition code of a layer below the bottom of the stack."""
        return self.num_codes

    @property
    def condition_shape(self) -> tuple[int, int, int]:
        """The shape of one example's condition codes: (D, g, g)."""
        return (self.context_layers, self.grid_size, self.grid_size)

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        self.depth_embedding.build((None,))
        self.context_merge.build((None, self.grid_size, self.grid_size,
                                  self.context_layers * self.filters))

    def corrupt_condition(self, condition_codes: Tensor) -> Tensor:
        """The layers below with a share `condition_noise` of their codes replaced by codes
        drawn from the codebook (never by, nor in place of, the "no layer" code)."""
        condition_codes = ops.cast(condition_codes, "int32")
        shape = ops.shape(condition_codes)
        replace = ops.logical_and(
            keras.random.uniform(shape, seed=self.seed_generator) < self.condition_noise,
            condition_codes != self.absent_code)
        drawn = keras.random.randint(shape, 0, self.num_codes, dtype="int32",
                                     seed=self.seed_generator)
        return ops.where(replace, drawn, condition_codes)

    def spatial_condition(self, condition_codes: Tensor) -> Tensor:
        """[B, D, g, g] codes of the layers below -> [B, g, g, F] condition features."""
        depth, side, filters = self.context_layers, self.grid_size, self.filters
        embedded = (self.condition_embedding(ops.cast(condition_codes, "int32"))
                    + self.depth_embedding(ops.arange(depth, dtype="int32"))[None, :, None, None])
        columns = ops.reshape(ops.transpose(embedded, (0, 2, 3, 1, 4)),
                              (-1, side, side, depth * filters))
        return self.condition_mix(self.condition_attention(self.context_merge(columns)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["context_layers"] = self.context_layers
        return config


def layers_below(codes: np.ndarray, layer: int, context_layers: int, absent_code: int
                 ) -> np.ndarray:
    """[N, D, g, g]: the `context_layers` layers below `layer` of code stacks [N, L, g, g], the
    nearest last, `absent_code` below the bottom of the stack."""
    codes = np.asarray(codes)
    count, _, height, width = codes.shape
    below = np.full((count, context_layers, height, width), absent_code, np.int32)
    start = max(0, layer - context_layers)
    if layer > start:
        below[:, context_layers - (layer - start):] = codes[:, start:layer]
    return below


def stack_examples(codes: np.ndarray, context_layers: int, absent_code: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every layer of code stacks [N, L, g, g] as a training example: (layers [N * L, g, g],
    depths [N * L], layers below [N * L, D, g, g]), stack by stack."""
    codes = np.asarray(codes, np.int32)
    count, length = codes.shape[:2]
    below = np.stack([layers_below(codes, layer, context_layers, absent_code)
                      for layer in range(length)], axis=1)
    return (codes.reshape((-1,) + codes.shape[2:]),
            np.tile(np.arange(length, dtype=np.int32), count),
            below.reshape((-1,) + below.shape[2:]))
