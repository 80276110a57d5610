"""What the scripts print: a quiet TensorFlow start-up, unless --verbose asks for everything.

TensorFlow writes a few lines to stderr while it starts (`I0000 ... cudart_stub.cc ... Could not
find cuda drivers`, `E0000 ... failed call to cuInit` on a machine without a GPU, the CPU
instruction notice, later `E0000 ... remapper failed`). They are harmless but read like errors,
and the first ones are written before TensorFlow's own log settings apply, so
`TF_CPP_MIN_LOG_LEVEL` alone does not hide them: `quiet_start` points the process's stderr at
/dev/null while TensorFlow starts and finds its devices, then restores it.
"""
import os
import sys


def add_verbose_flag(parser):
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and informational log lines")
    return parser


def quiet_start(verbose=False):
    """Starts the Keras backend with its informational logging hidden (unless `verbose`)."""
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
