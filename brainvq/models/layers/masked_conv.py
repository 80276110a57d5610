"""Masked convolutions: the causal building block of the PixelCNN prior."""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from brainvq.hints import Tensor

#
# A gated PixelCNN (van den Oord et al., 2016, "Conditional Image Generation with PixelCNN
# Decoders") over the VQ-VAE's code grids, in raster order. Two stacks run side by side:
#
#   * the vertical stack at (r, c) sees only rows < r (all columns within its reach): its first
#     convolution (type A) keeps the kernel rows above the centre, the later ones (type B) keep
#     the centre row as well, which only adds features that themselves see rows < r;
#   * the horizontal stack at (r, c) sees row r left of c (type A) or up to c (type B), plus the
#     vertical stack's features at the same position through a 1x1 convolution.
#
# Because the vertical stack already stops at row r - 1, it is fed to the horizontal stack
# unshifted: shifting it down by one row as well would leave row r - 1 blind. After L gated
# layers with kernel k (h = k // 2), position (r, c) depends on exactly the rows r - L*h .. r - 1
# over the columns c - L*h .. c + L*h, and on row r over the columns c - L*h .. c - 1: no blind
# spot, no leak (tests/test_pixelcnn.py checks both by perturbation).

PIXELCNN_STACKS = ("vertical", "horizontal", "full")


def pixelcnn_mask(kernel_size: int, mask_type: str, stack: str) -> np.ndarray:
    """The 0/1 mask of a masked convolution kernel, as a float32 numpy array [kh, kw].

    Args:
        kernel_size: odd side k of the kernel.
        mask_type: "A" (excludes the centre position) or "B" (includes it).
        stack: "vertical" ([k, k], rows above the centre; type B adds the centre row),
            "horizontal" ([1, k], columns left of the centre; type B adds the centre) or
            "full" ([k, k], the plain PixelCNN mask: rows above plus the left part of the
            centre row; type B adds the centre).

    Returns:
        The mask, shaped like the spatial dimensions of the kernel.
    """
    centre = kernel_size // 2
    include_centre = mask_type == "B"
    if stack == "horizontal":
        mask = np.zeros((1, kernel_size), "float32")
        mask[0, :centre + include_centre] = 1.0
        return mask
    mask = np.zeros((kernel_size, kernel_size), "float32")
    mask[:centre, :] = 1.0
    if stack == "vertical":
        if include_centre:
            mask[centre, :] = 1.0
    else:
        mask[centre, :centre + include_centre] = 1.0
    return mask


@keras.saving.register_keras_serializable(package="vqvae")
class MaskedConv2D(layers.Layer):
    """A 2D convolution whose kernel is multiplied by a causal (raster-order) mask.

    The mask is a constant built in `build` from numpy; `call` convolves with `kernel * mask`,
    so the kernel variable itself is never modified and masked entries get no gradient.

    Args:
        filters: number of output channels.
        kernel_size: odd side k of the kernel ("horizontal" kernels are 1 x k).
        mask_type: "A" (the output at a position does not see that position: first layer) or
            "B" (it does: later layers).
        stack: "vertical", "horizontal" or "full" (see `pixelcnn_mask`).
        use_bias: add a learned bias.
        kernel_initializer, bias_initializer: initialisers of the kernel and the bias.

    Call args:
        inputs: [B, H, W, C] features.

    Returns:
        [B, H, W, filters] features ("same" padding, stride 1).
    """

    def __init__(self, filters: int, kernel_size: int = 3, mask_type: str = "B",
                 stack: str = "full", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if stack not in PIXELCNN_STACKS:
            raise ValueError(f"stack must be one of {PIXELCNN_STACKS}, got {stack!r}")
        if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.mask_type = mask_type
        self.stack = stack
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: tuple) -> None:
        self.mask = pixelcnn_mask(self.kernel_size, self.mask_type, self.stack)  # numpy constant
        kernel_height, kernel_width = self.mask.shape
        self.kernel = self.add_weight(
            name="kernel", shape=(kernel_height, kernel_width, int(input_shape[-1]), self.filters),
            initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,),
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)

    def masked_kernel(self) -> Tensor:
        """The kernel with the mask applied (what `call` convolves with)."""
        mask = ops.convert_to_tensor(self.mask[:, :, None, None], dtype=self.compute_dtype)
        return ops.cast(self.kernel, self.compute_dtype) * mask

    def call(self, inputs: Tensor) -> Tensor:
        outputs = ops.conv(inputs, self.masked_kernel(), strides=1, padding="same")
        if self.bias is not None:
            outputs = outputs + ops.cast(self.bias, self.compute_dtype)
        return outputs

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size,
            "mask_type": self.mask_type, "stack": self.stack, "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
