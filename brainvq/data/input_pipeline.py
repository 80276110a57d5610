"""Batches of in-memory arrays for `fit`: `tf.data` on TensorFlow, a `PyDataset` elsewhere.

On the TensorFlow backend the input is `tf.data` (shuffle -> repeat -> batch -> prefetch), as
Keras recommends. On JAX or PyTorch the same batches come from `ArrayBatches`, a
`keras.utils.PyDataset` over numpy arrays: training then needs no TensorFlow at all (a JAX-only
GPU machine), and a JAX run never lets TensorFlow take GPU memory beside it.

`structure` is an array or a (nested) tuple or dict of arrays with the same first dimension,
e.g. `images`, `(images, slice_index)` or `((codes, slices), codes)`; every batch has that
structure.
"""
from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from brainvq.data.slice_sets import SliceSet


def batches(structure: np.ndarray | tuple, batch_size: int, shuffle: bool, seed: int = 0,
            drop_remainder: bool = False, repeat: bool = False) -> Any:
    """Batches of `structure` for `fit`, `evaluate` or `predict`.

    Args:
        structure: an array, or a nested tuple of arrays sharing their first dimension.
        batch_size: items per batch.
        shuffle: shuffle over all items, reshuffled on every pass (seeded).
        seed: the shuffle's seed.
        drop_remainder: drop the last partial batch of a pass.
        repeat: repeat forever (then give `fit` a `steps_per_epoch`).

    Returns:
        A `tf.data.Dataset` on the TensorFlow backend, else an `ArrayBatches`.
    """
    if keras.backend.backend() != "tensorflow":
        return ArrayBatches(structure, batch_size, shuffle, seed, drop_remainder, repeat)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(structure)
    # No .cache(): the source already is in memory, a cache would only copy it again.
    if shuffle:
        data = data.shuffle(max(1, _length(structure)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        data = data.repeat()
    return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _length(structure: np.ndarray | tuple) -> int:
    if isinstance(structure, dict):
        return _length(next(iter(structure.values())))
    return _length(structure[0]) if isinstance(structure, tuple) else len(structure)


def _take(structure: np.ndarray | tuple, indices: np.ndarray) -> np.ndarray | tuple:
    if isinstance(structure, dict):
        return {key: _take(part, indices) for key, part in structure.items()}
    if isinstance(structure, tuple):
        return tuple(_take(part, indices) for part in structure)
    return structure[indices]


class ArrayBatches(keras.utils.PyDataset):
    """Seeded, reshuffled batches of numpy arrays (see the module docstring).

    Finite (`repeat=False`): `len()` batches a pass, reshuffled at each epoch's end.
    Infinite (`repeat=True`): an endless stream of passes, each a new permutation, read in
    order whatever index Keras asks for, so epochs cut by `steps_per_epoch` go on where the
    last one stopped, as a repeated `tf.data` pipeline does.
    """

    def __init__(self, structure: np.ndarray | tuple, batch_size: int, shuffle: bool, seed: int = 0,
             drop_remainder: bool = False, repeat: bool = False) -> None:
        super().__init__()  # one worker, no multiprocessing: batches are numpy slices
        self.structure = structure
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_remainder = drop_remainder
        self.repeat = repeat
        self.size = _length(structure)
        self._rng = np.random.default_rng(seed)
        self._order = self._new_order()
        self._cursor = 0

    def _new_order(self) -> np.ndarray:
        return self._rng.permutation(self.size) if self.shuffle else np.arange(self.size)

    @property
    def num_batches(self) -> int | None:
        if self.repeat:
            return None
        rounding = math.floor if self.drop_remainder else math.ceil
        return rounding(self.size / self.batch_size)

    def __getitem__(self, index: int) -> np.ndarray | tuple:
        if self.repeat:
            return _take(self.structure, self._next_indices())
        start = index * self.batch_size
        return _take(self.structure, self._order[start:start + self.batch_size])

    def _next_indices(self) -> np.ndarray:
        taken = []
        needed = self.batch_size
        while needed:
            if self._cursor >= self.size:
                self._order, self._cursor = self._new_order(), 0
            part = self._order[self._cursor:self._cursor + needed]
            self._cursor += len(part)
            needed -= len(part)
            taken.append(part)
        return np.concatenate(taken)

    def on_epoch_end(self) -> None:
        if not self.repeat:
            self._order = self._new_order()


def make_dataset(slices: SliceSet, batch_size: int, shuffle: bool = True, seed: int = 42,
                 with_slice_index: bool = False, drop_remainder: bool = False,
                 repeat: bool = False) -> Any:
    """Batches of a SliceSet for `fit`: shuffle -> repeat -> batch -> prefetch.

    Args:
        slices: the SliceSet to iterate.
        batch_size: images per batch.
        shuffle: shuffle over the whole set, reshuffled every epoch (seeded).
        seed: shuffle seed.
        with_slice_index: yield (images, slice_index) pairs instead of images.
        drop_remainder: drop the last partial batch (needed for fixed-shape distribution).
        repeat: repeat forever.

    Returns:
        float32 [B, H, W, 1] images, or (images, int32 [B] slice_index): a tf.data.Dataset on
        the TensorFlow backend, a keras.utils.PyDataset on JAX or PyTorch (input_pipeline.py).
    """
    images = np.asarray(slices.images, dtype=np.float32)
    structure = (images, np.asarray(slices.slice_index, dtype=np.int32)) if with_slice_index \
        else images
    return batches(structure, batch_size, shuffle, seed=seed,
                                  drop_remainder=drop_remainder, repeat=repeat)
