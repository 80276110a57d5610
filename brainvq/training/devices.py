"""Devices and precision: the `tf.distribute` strategy of --strategy, mixed precision, and
whether the backend sees a GPU."""
from __future__ import annotations

import os
from typing import Any

import keras


def make_strategy(name: str) -> Any:
    """The `tf.distribute` strategy for --strategy (None for a single device)."""
    if name == "none":
        return None
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"error: --strategy {name} needs the TensorFlow backend (it is "
                         f"tf.distribute); this run uses {keras.backend.backend()}: set "
                         f"KERAS_BACKEND=tensorflow, or leave --strategy none")
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise SystemExit("error: --strategy multiworker needs TF_CONFIG describing the "
                             "cluster (see docs/long-runs.md)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise SystemExit(f"error: unknown --strategy {name!r}; use none, mirrored or multiworker")


def set_precision(mixed: bool) -> str:
    """float32, or mixed precision: float16 compute on a GPU, bfloat16 on a CPU."""
    if not mixed:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    policy = "mixed_float16" if has_gpu() else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def has_gpu() -> bool:
    """Whether the Keras backend sees a GPU (TensorFlow, JAX or PyTorch)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False
