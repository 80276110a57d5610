"""What a prior takes and how it is scored: the call forms of its inputs and the bits-per-code
metric."""
from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from brainvq.hints import Tensor

FOURIER_OCTAVES = 6  # continuous covariates: sin and cos of 2^k * pi * x, k = 0 .. 5


@keras.saving.register_keras_serializable(package="vqvae")
class BitsPerCode(keras.metrics.MeanMetricWrapper):
    """Mean negative log-likelihood of the true codes under predicted logits, in bits per code
    (sparse cross-entropy / ln 2): the prior's compression rate, log2 K for a uniform guess."""

    def __init__(self, name: str = "bits_per_code", dtype: Any = None) -> None:
        super().__init__(fn=self.bits, name=name, dtype=dtype)

    @staticmethod
    def bits(code_indices: Tensor, logits: Tensor) -> Tensor:
        nats = keras.losses.sparse_categorical_crossentropy(code_indices, logits, from_logits=True)
        return nats / math.log(2.0)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


def split_prior_inputs(inputs: Any) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(code_indices, slice_index or None, condition_codes or None) of any of a prior's call
    forms: a dict, a tuple (code_indices[, slice_index[, condition_codes]]), or the codes."""
    if isinstance(inputs, dict):
        return (inputs["code_indices"], inputs.get("slice_index"),
                inputs.get("condition_codes"))
    if isinstance(inputs, (tuple, list)):
        return (inputs[0], inputs[1] if len(inputs) > 1 else None,
                inputs[2] if len(inputs) > 2 else None)
    return inputs, None, None


def prior_covariates(inputs: Any) -> Tensor | None:
    """The covariates [B, C] (float; NaN: not given) of a prior's dict inputs, or None."""
    return inputs.get("covariates") if isinstance(inputs, dict) else None


def prior_augmentation(inputs: Any) -> Tensor | None:
    """The augmentation parameters [B, A] of a prior's dict inputs, or None (none: 0)."""
    return inputs.get("augmentation") if isinstance(inputs, dict) else None


def fourier_features(value: Tensor, present: Tensor) -> Tensor:
    """[B, 1 + 2 * FOURIER_OCTAVES] features of a continuous covariate value [B] (scaled to
    0 .. 1): a flag for `present` [B] bool, then sin and cos of 2^k * pi * value; all 0 where
    the value is not given."""
    octaves = (2.0 ** ops.arange(FOURIER_OCTAVES, dtype="float32")) * math.pi
    angles = value[:, None] * octaves[None, :]
    flag = ops.cast(present, "float32")[:, None]
    return ops.concatenate([flag, flag * ops.sin(angles), flag * ops.cos(angles)], axis=-1)
