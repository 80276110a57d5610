"""Names for type hints, where Python's own types cannot say what a value is."""
from __future__ import annotations

import os
from typing import Any, MutableMapping, Union

Tensor = Any
"""A backend tensor or a numpy array: `keras.ops` take either, and no one class spans
TensorFlow, JAX and numpy."""

Values = MutableMapping[str, Any]
"""A run's flat hyperparameters, one key per `--flag` (`hyperparameters.json`)."""

PathLike = Union[str, "os.PathLike[str]"]
"""A file or folder, as a string or a `pathlib.Path`."""
