"""Causal self-attention over raster positions: the PixelCNN prior's whole-grid context.

A gated PixelCNN sees a bounded window (`GatedPixelCNN.causal_reach`); on a 16x16 grid with the
old defaults the bottom of a slice was sampled without seeing its top. `CausalAttentionBlock`s on
top of the gated stacks close that gap, as PixelSNAIL's attention does:

    h        = LayerNorm(x)
    query_p  = Wq h_p
    key_q    = Wk (h_q + context_q)        value_q = Wv (h_q + context_q)
    x_p     += Wo softmax_{q < p}(query_p . key_q / sqrt(d)) value_q        (per head)
    x_p     += MLP(LayerNorm(x_p))

`x_q` (the gated stacks' features at q) depends only on the codes before q, and `context_q` is
the embedding of the code *at* q, so position p attends strictly earlier positions q < p and
reaches every one of their codes directly: the logits at p depend on every earlier code and on
no later one, whatever the grid size. A learned-free "null" slot (score 0, value 0) is always
visible, so position 0, which has nothing before it, is well defined.

For sampling, a block is split into `query_step` (what position p needs before its code is
drawn) and `key_value` (what p adds to the key/value cache once its code is known); together
they give exactly the whole-grid `call`.
"""
from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor


def _split_heads(tensor: Tensor, heads: int) -> Tensor:
    """[B, P, F] -> [B, heads, P, F // heads]."""
    batch, positions = ops.shape(tensor)[0], ops.shape(tensor)[1]
    tensor = ops.reshape(tensor, (batch, positions, heads, tensor.shape[-1] // heads))
    return ops.transpose(tensor, (0, 2, 1, 3))


def _merge_heads(tensor: Tensor) -> Tensor:
    """[B, heads, P, d] -> [B, P, heads * d]."""
    tensor = ops.transpose(tensor, (0, 2, 1, 3))
    batch, positions = ops.shape(tensor)[0], ops.shape(tensor)[1]
    return ops.reshape(tensor, (batch, positions, tensor.shape[2] * tensor.shape[3]))


def causal_mask(positions: int) -> Tensor:
    """Boolean [P, P]: entry (p, q) is true where query p may attend key q (q < p)."""
    index = ops.arange(positions, dtype="int32")
    return index[None, :] < index[:, None]


@keras.saving.register_keras_serializable(package="vqvae")
class CausalAttentionBlock(layers.Layer):
    """One pre-norm transformer block with strictly causal multi-head attention.

    Args:
        filters: F, the width of the features (a multiple of `heads`).
        heads: number of attention heads.
        dropout: dropout rate on the attention and MLP outputs.

    Call args:
        features: [B, P, F] features in raster order; features[:, q] must depend only on the
            codes before q.
        context: [B, P, F] the embedding of the code at each position (and its position).
        training: whether dropout is active.

    Returns:
        [B, P, F] features; output p depends on features[:, <= p] and context[:, < p].
    """

    def __init__(self, filters: int, heads: int = 4, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.heads = int(heads)
        self.dropout_rate = float(dropout)
        if self.heads < 1 or self.filters % self.heads:
            raise ValueError(f"filters ({filters}) must be a positive multiple of heads "
                             f"({heads})")
        self.attention_norm = layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.query = layers.Dense(self.filters, name="query")
        self.key = layers.Dense(self.filters, name="key")
        self.value = layers.Dense(self.filters, name="value")
        self.attention_output = layers.Dense(self.filters, name="attention_output")
        self.mlp_norm = layers.LayerNormalization(epsilon=1e-5, name="mlp_norm")
        self.mlp_hidden = layers.Dense(2 * self.filters, activation="gelu", name="mlp_hidden")
        self.mlp_output = layers.Dense(self.filters, name="mlp_output")
        self.dropout = layers.Dropout(self.dropout_rate)

    def build(self, input_shape: tuple) -> None:
        shape = (None, None, self.filters)
        for layer in (self.attention_norm, self.query, self.key, self.value,
                      self.attention_output, self.mlp_norm):
            layer.build(shape)
        self.mlp_hidden.build(shape)
        self.mlp_output.build((None, None, 2 * self.filters))

    def key_value(self, normed: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """Keys and values [B, P, F] of positions whose normed features and code context
        are given (`normed` is `attention_norm(features)`, as `query_step` returns it)."""
        source = normed + ops.cast(context, normed.dtype)
        return self.key(source), self.value(source)

    def attend(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> Tensor:
        """Multi-head attention of queries [B, Pq, F] over keys/values [B, Pk, F].

        Args:
            mask: boolean, broadcastable to [B, heads, Pq, Pk]; true where a key is visible.
                A null slot (score 0, value 0) is always visible as well.

        Returns:
            [B, Pq, F] attended values.
        """
        depth = self.filters // self.heads
        query, keys, values = (_split_heads(t, self.heads) for t in (query, keys, values))
        scores = ops.einsum("bhpd,bhqd->bhpq", ops.cast(query, "float32"),
                            ops.cast(keys, "float32")) / math.sqrt(depth)
        scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        null = ops.zeros_like(scores[..., :1])
        weights = ops.softmax(ops.concatenate([scores, null], axis=-1), axis=-1)[..., :-1]
        attended = ops.einsum("bhpq,bhqd->bhpd", weights, ops.cast(values, "float32"))
        return ops.cast(_merge_heads(attended), query.dtype)

    def query_step(self, features: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None,
                   training: bool = False, normed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The block's output at some positions, given the keys and values of the others.

        Args:
            features: [B, Pq, F] input features at the query positions.
            keys, values: [B, Pk, F] (e.g. a sampler's cache).
            mask: as for `attend`.
            training: whether dropout is active.
            normed: `attention_norm(features)` when the caller has it already.

        Returns:
            (output [B, Pq, F], normed [B, Pq, F]): the block's output, and the normed input
            features from which `key_value` makes these positions' keys and values.
        """
        if normed is None:
            normed = self.attention_norm(features)
        attended = self.attend(self.query(normed), keys, values, mask)
        features = features + self.dropout(self.attention_output(attended), training=training)
        hidden = self.mlp_hidden(self.mlp_norm(features))
        features = features + self.dropout(self.mlp_output(hidden), training=training)
        return features, normed

    def call(self, features: Tensor, context: Tensor, training: bool = False) -> Tensor:
        normed = self.attention_norm(features)
        keys, values = self.key_value(normed, context)
        mask = causal_mask(ops.shape(features)[1])[None, None]
        output, _ = self.query_step(features, keys, values, mask, training=training,
                                    normed=normed)
        return output

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"filters": self.filters, "heads": self.heads,
                       "dropout": self.dropout_rate})
        return config


@keras.saving.register_keras_serializable(package="vqvae")
class SpatialSelfAttention(layers.Layer):
    """Non-causal self-attention over the positions of a feature map, with a residual:
    x += Wo MHA(GroupNorm(x)) over all H*W positions (the VQGAN / VQ-VAE-2 block used at the
    coarsest resolution of the encoder and decoder, where every position can see the whole
    slice).

    Args:
        heads: number of attention heads (the width must be a multiple).

    Call args:
        features: [B, H, W, F].

    Returns:
        [B, H, W, F].
    """

    def __init__(self, heads: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads = int(heads)

    def build(self, input_shape: tuple) -> None:
        width = int(input_shape[-1])
        if width % self.heads:
            raise ValueError(f"feature width {width} is not a multiple of heads={self.heads}")
        self.norm = layers.GroupNormalization(groups=min(32, width), epsilon=1e-6)
        self.norm.build(input_shape)
        self.attention = layers.MultiHeadAttention(self.heads, width // self.heads)
        sequence = (input_shape[0], None, width)
        self.attention.build(sequence, sequence)

    def call(self, features: Tensor) -> Tensor:
        height, width = ops.shape(features)[1], ops.shape(features)[2]
        hidden = self.norm(features)
        flat = ops.reshape(hidden, (ops.shape(features)[0], height * width, features.shape[-1]))
        attended = self.attention(flat, flat)
        return features + ops.reshape(attended, ops.shape(features))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"heads": self.heads})
        return config
