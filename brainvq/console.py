"""What the scripts print: a quiet TensorFlow start-up, unless --verbose asks for everything.

TensorFlow writes a few lines to stderr while it starts (`I0000 ... cudart_stub.cc ... Could not
find cuda drivers`, `E0000 ... failed call to cuInit` on a machine without a GPU, the CPU
instruction notice, later `E0000 ... remapper failed`). They are harmless but read like errors,
and the first ones are written before TensorFlow's own log settings apply, so
`TF_CPP_MIN_LOG_LEVEL` alone does not hide them: `quiet_start` points the process's stderr at
/dev/null while TensorFlow starts and finds its devices, then restores it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

# Keras's backends and the package each needs.
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
            "openvino": "openvino"}


def add_verbose_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and informational log lines")
    return parser


def check_backend() -> None:
    """Exits with one line when KERAS_BACKEND names no Keras backend, or one not installed."""
    name = os.environ.get("KERAS_BACKEND", "tensorflow")
    installed = [backend for backend, package in BACKENDS.items()
                 if importlib.util.find_spec(package) is not None and backend != "numpy"]
    if name not in BACKENDS:
        sys.exit(f"error: KERAS_BACKEND={name} is not a Keras backend: use one of "
                 f"{', '.join(b for b in BACKENDS if b != 'numpy')} (installed here: "
                 f"{', '.join(installed) or 'none'}), or unset it for tensorflow")
    if importlib.util.find_spec(BACKENDS[name]) is None:
        sys.exit(f"error: KERAS_BACKEND={name}, but {BACKENDS[name]} is not installed: "
                 f"`pip install {BACKENDS[name]}`, or unset KERAS_BACKEND to use tensorflow "
                 f"(installed here: {', '.join(installed) or 'none'})")


def quiet_start(verbose: bool = False) -> None:
    """Checks KERAS_BACKEND, then starts the Keras backend with its informational logging
    hidden (unless `verbose`)."""
    check_backend()
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" \
            or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # where the cuInit line is written
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
