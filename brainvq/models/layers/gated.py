"""The gated PixelCNN layer (van den Oord et al. 2016): a vertical and a horizontal stack of
masked convolutions with gated activations, the building block of `pixelcnn.GatedPixelCNN`."""
from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models.layers.masked_conv import MaskedConv2D


def gate(features: Tensor) -> Tensor:
    """tanh(a) * sigmoid(b) for features [..., 2F] split into a and b along the last axis."""
    a, b = ops.split(features, 2, axis=-1)
    return ops.tanh(a) * ops.sigmoid(b)


@keras.saving.register_keras_serializable(package="vqvae")
class GatedPixelCNNLayer(layers.Layer):
    """One gated PixelCNN layer: a vertical and a horizontal stack with gated activations.

        vertical'   = gate(Vconv(vertical) + cond)
        horizontal' = horizontal + 1x1(dropout(gate(Hconv(horizontal) + 1x1(Vconv(vertical))
                                                     + cond)))

    where gate(x) = tanh(x_a) * sigmoid(x_b) and cond is the conditioning vector projected to
    2 * filters (broadcast over the grid). The residual connection is used when `residual` is
    true (the default for type B; a type A layer must not have it: its input holds the current
    position).

    Args:
        filters: F, the width of both stacks (inputs and outputs).
        kernel_size: odd side k of the masked convolutions.
        mask_type: "A" for the first layer, "B" for the others.
        dropout: dropout rate on the gated horizontal features.
        condition_dim: size of the conditioning vectors (None: no conditioning input).
        residual: residual connection on the horizontal stack (default: mask_type == "B").

    Call args:
        vertical: [B, H, W, C] vertical stack input.
        horizontal: [B, H, W, C] horizontal stack input.
        condition: optional [B, condition_dim] conditioning vectors.
        training: whether dropout is active.

    Returns:
        A tuple (vertical, horizontal) of [B, H, W, F] features.
    """

    def __init__(self, filters: int, kernel_size: int = 3, mask_type: str = "B",
                 dropout: float = 0.0, condition_dim: int | None = None,
                 residual: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.mask_type = mask_type
        self.dropout_rate = float(dropout)
        self.condition_dim = None if condition_dim is None else int(condition_dim)
        self.residual = (mask_type == "B") if residual is None else bool(residual)
        if self.residual and mask_type == "A":
            raise ValueError("a type A layer cannot have a residual connection: its input "
                             "holds the position being predicted")
        self.vertical_conv = MaskedConv2D(2 * self.filters, self.kernel_size, mask_type,
                                          "vertical", name="vertical_conv")
        self.horizontal_conv = MaskedConv2D(2 * self.filters, self.kernel_size, mask_type,
                                            "horizontal", name="horizontal_conv")
        self.vertical_to_horizontal = layers.Conv2D(2 * self.filters, 1,
                                                    name="vertical_to_horizontal")
        self.horizontal_output = layers.Conv2D(self.filters, 1, name="horizontal_output")
        self.condition_projection = (layers.Dense(2 * self.filters, use_bias=False,
                                                  name="condition_projection")
                                     if self.condition_dim else None)
        self.dropout = layers.Dropout(self.dropout_rate)

    def build(self, input_shape: tuple) -> None:
        """Builds the sublayers for stack inputs shaped `input_shape` ([B, H, W, C])."""
        input_shape = tuple(input_shape)
        gated_shape = input_shape[:-1] + (2 * self.filters,)
        if self.residual and input_shape[-1] != self.filters:
            raise ValueError(f"the residual connection needs {self.filters} input channels, "
                             f"got shape {input_shape}")
        self.vertical_conv.build(input_shape)
        self.horizontal_conv.build(input_shape)
        self.vertical_to_horizontal.build(gated_shape)
        self.horizontal_output.build(input_shape[:-1] + (self.filters,))
        if self.condition_projection is not None:
            self.condition_projection.build((None, self.condition_dim))

    def condition_bias(self, condition: Tensor | None) -> Tensor | None:
        """The conditioning vectors [B, condition_dim] projected to a [B, 1, 1, 2F] bias."""
        if condition is None:
            return None
        if self.condition_projection is None:
            raise ValueError(f"{self.name} was built without conditioning "
                             f"(condition_dim=None) but was given a condition")
        return self.condition_projection(condition)[:, None, None, :]

    def vertical_step(self, vertical: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The vertical stack's half of the layer.

        Args:
            vertical: [B, H, W, C] vertical stack input.
            bias: optional [B, 1, 1, 2F] conditioning bias (`condition_bias`).

        Returns:
            A tuple (vertical_out [B, H, W, F], to_horizontal [B, H, W, 2F]), where
            to_horizontal is what the vertical stack adds to the horizontal one at each position.
            At row r both depend only on rows above r, which is what lets the sampler compute
            them once per row.
        """
        features = self.vertical_conv(vertical)
        to_horizontal = self.vertical_to_horizontal(features)
        if bias is not None:
            features = features + bias
        return gate(features), to_horizontal

    def horizontal_step(self, horizontal: Tensor, to_horizontal: Tensor, bias: Tensor | None = None,
                        training: bool | None = None) -> Tensor:
        """The horizontal stack's half of the layer.

        Args:
            horizontal: [B, H, W, C] horizontal stack input.
            to_horizontal: [B, H, W, 2F] from `vertical_step` at the same positions.
            bias: optional [B, 1, 1, 2F] conditioning bias.
            training: whether dropout is active.

        Returns:
            [B, H, W, F] horizontal stack output.
        """
        features = self.horizontal_conv(horizontal) + to_horizontal
        if bias is not None:
            features = features + bias
        gated = self.dropout(gate(features), training=training)
        output = self.horizontal_output(gated)
        if self.residual:
            output = horizontal + output
        return output

    def call(self, vertical: Tensor, horizontal: Tensor, condition: Tensor | None = None,
             training: bool | None = None) -> tuple[Tensor, Tensor]:
        bias = self.condition_bias(condition)
        vertical_out, to_horizontal = self.vertical_step(vertical, bias)
        return vertical_out, self.horizontal_step(horizontal, to_horizontal, bias, training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size,
            "mask_type": self.mask_type, "dropout": self.dropout_rate,
            "condition_dim": self.condition_dim, "residual": self.residual,
        })
        return config
