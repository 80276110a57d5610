"""Names for type hints, where Python's own types cannot say what a value is."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, MutableMapping, Sequence, Union

if TYPE_CHECKING:
    import keras

    from brainvq.data.slice_sets import SliceSet

Tensor = Any
"""A backend tensor or a numpy array: `keras.ops` take either, and no one class spans
TensorFlow, JAX and numpy."""

Values = MutableMapping[str, Any]
"""A run's flat hyperparameters, one key per `--flag` (`hyperparameters.json`)."""

PathLike = Union[str, "os.PathLike[str]"]
"""A file or folder, as a string or a `pathlib.Path`."""

Splits = Mapping[str, "SliceSet"]
"""A run's slices by split name ("train", "validate", "test")."""

Callbacks = Sequence["keras.callbacks.Callback"]
"""Extra Keras callbacks for a training stage."""
