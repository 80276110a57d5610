"""A small CNN trained on the real training slices only: the feature space of the realism checks.

Inception features need downloaded ImageNet weights and know nothing of MRI; this network is
trained, once per run, on the real training slices (flipped and shifted copies) for two tasks:
each slice's position along the brain (one class per slice position; the predicted position is
the expectation of the class probabilities), and which defect, if any, was applied to a copy of
a real slice (`CORRUPTIONS`: blur, a dented outline, a split, halves that do not belong
together, noise). The first makes its features describe anatomy, the second makes them respond
to the ways generated slices fail; no generated image is ever used to train it. `realism.py`
measures Fréchet distance, KID and k-NN precision/recall in the space of its embedding, and uses
the predicted position to check that slice-conditioned samples land where they were asked to.

It is saved in the run folder (`feature_network.keras`, with `feature_network.json` recording a
fingerprint of the slices it was trained on) and retrained only when those slices change.
"""
from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
from keras import layers
from numpy.typing import ArrayLike

from brainvq.data import augmentation
from brainvq.hints import PathLike
from brainvq.runs import fingerprints

MODEL_FILE = "feature_network.keras"
INFO_FILE = "feature_network.json"
EMBEDDING_LAYER = "embedding"
MAX_TRAINING_IMAGES = 1024
IMAGES_SEEN = 25000
# What the second head tells apart: real slices and real slices with one defect each, the kinds
# of failure a generator shows (so the features respond to them).
CORRUPTIONS = ("none", "blur", "dent", "split", "mismatched halves", "noise")


def build(image_size: int, num_slice_positions: int, feature_dim: int = 64) -> keras.Model:
    """The network: four stride-2 conv blocks, global average pooling, a `feature_dim`
    embedding, and two heads: class probabilities over the `num_slice_positions` slice
    positions, and over the `CORRUPTIONS` (which, if any, was applied to the slice)."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    hidden = inputs
    for number, filters in enumerate((16, 32, 64, 96), start=1):
        hidden = layers.Conv2D(filters, 3, strides=2, padding="same", activation="gelu")(hidden)
        hidden = layers.Conv2D(filters, 3, padding="same", activation="gelu",
                               name=f"block_{number}")(hidden)
    hidden = layers.GlobalAveragePooling2D()(hidden)
    features = layers.Dense(feature_dim, activation="tanh", name=EMBEDDING_LAYER)(hidden)
    position = layers.Dense(num_slice_positions, activation="softmax", name="position")(features)
    corruption = layers.Dense(len(CORRUPTIONS), activation="softmax",
                              name="corruption")(features)
    return keras.Model(inputs, [position, corruption], name="feature_network")


def corrupt(image: np.ndarray, kind: str, rng: np.random.Generator,
            other: np.ndarray) -> np.ndarray:
    """A copy of `image` [S, S, 1] with one anatomical or image defect (`CORRUPTIONS`).

    Args:
        kind: the index of the defect in `CORRUPTIONS` (0: none).
        rng: numpy Generator.
        other: another real slice, the source of the mismatched half.
    """
    from scipy import ndimage

    size = image.shape[0]
    out = image.copy()
    if kind == 1:  # blur
        out = ndimage.gaussian_filter(image, (rng.uniform(1.0, 2.5),) * 2 + (0,))
    elif kind == 2:  # a dent: a wedge from the centre cut away
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
        angle = np.arctan2(yy, xx) - rng.uniform(-np.pi, np.pi)
        out[np.cos(angle) > np.cos(rng.uniform(0.2, 0.6))] = 0.0
    elif kind == 3:  # a split: a band through the slice removed
        width, start = rng.integers(2, 6), rng.integers(size // 3, 2 * size // 3)
        if rng.random() < 0.5:
            out[start:start + width] = 0.0
        else:
            out[:, start:start + width] = 0.0
    elif kind == 4:  # halves that do not belong together
        half = size // 2
        if rng.random() < 0.5:
            out[:, half:] = other[:, half:]
        else:
            out[half:] = other[half:]
    elif kind == 5:  # noise
        out = np.clip(image + rng.normal(0.0, rng.uniform(0.03, 0.1), image.shape), 0.0, 1.0)
    return out.astype(np.float32)


def train(images: np.ndarray, slice_index: ArrayLike, num_slice_positions: int,
          epochs: int | None = None, seed: int = 0, verbose: int = 0) -> keras.Model:
    """Fits a new feature network on real slices and their positions.

    Args:
        images: [N, S, S, 1] real training slices.
        slice_index: [N] their positions, 0 .. num_slice_positions - 1.
        num_slice_positions: the number of classes (slice positions).
        epochs: passes over the slices and their augmented copies (None: about
            `IMAGES_SEEN` images in all, between 3 and 30 passes). At most
            `MAX_TRAINING_IMAGES` slices are used (a random subset of larger sets).
        seed: seed of the initialisation, augmentation and shuffling.

    Returns:
        The trained Keras model.
    """
    keras.utils.set_random_seed(seed)
    images = np.asarray(images, np.float32)
    targets = np.asarray(slice_index, np.int32)
    if len(images) > MAX_TRAINING_IMAGES:  # e.g. the demo's many jittered copies
        chosen = np.random.default_rng(seed).choice(len(images), MAX_TRAINING_IMAGES,
                                                    replace=False)
        images, targets = images[chosen], targets[chosen]
    rng = np.random.default_rng(seed)
    clean = np.concatenate([images, augmentation.flip_and_shift(images, 2, 6, seed=seed)])
    positions = np.tile(targets, 3)
    kinds = np.arange(1, len(CORRUPTIONS))
    source = rng.integers(0, len(clean), len(kinds) * len(images))
    defects = np.repeat(kinds, len(images))
    corrupted = np.stack([corrupt(clean[index], kind, rng, clean[rng.integers(len(clean))])
                          for index, kind in zip(source, defects)])
    augmented = np.concatenate([clean, corrupted])
    targets = (np.concatenate([positions, positions[source]]),
               np.concatenate([np.zeros(len(clean), np.int32), defects]).astype(np.int32))
    if epochs is None:
        epochs = int(np.clip(IMAGES_SEEN // len(augmented), 3, 30))
    model = build(images.shape[1], num_slice_positions)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=["sparse_categorical_crossentropy", "sparse_categorical_crossentropy"])
    model.fit(augmented, targets, batch_size=32, epochs=epochs, shuffle=True, verbose=verbose)
    return model


def load_or_train(folder: PathLike, images: np.ndarray, slice_index: ArrayLike,
                  num_slice_positions: int, seed: int = 0) -> keras.Model:
    """The run's feature network: loaded from `folder` when it was trained on these slices,
    else trained (printing that it does) and saved there."""
    folder = pathlib.Path(folder)
    fingerprint = fingerprints.slices_fingerprint(images, slice_index)
    info_path, model_path = folder / INFO_FILE, folder / MODEL_FILE
    if info_path.is_file() and model_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fingerprint:
            return keras.saving.load_model(model_path)
    print(f"training the realism feature network on {len(images)} real training slices "
          f"(once; saved as {model_path})")
    model = train(images, slice_index, num_slice_positions, seed=seed)
    model.save(model_path)
    info_path.write_text(json.dumps({"fingerprint": fingerprint,
                                     "num_slice_positions": num_slice_positions}) + "\n")
    return model


def features_and_positions(model: keras.Model, images: np.ndarray,
                           num_slice_positions: int | None = None,
                           batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Realism features [N, d] (the `EMBEDDING_LAYER` output both heads read) and predicted
    slice positions [N] (the expectation of the class probabilities, in slice-index units)."""
    features = model.get_layer(EMBEDDING_LAYER).output
    probe = keras.Model(model.inputs[0], [features, model.get_layer("position").output])
    # Called batch by batch rather than with `predict`: a new probe's `predict` is traced anew,
    # and every call of this function makes a new probe (TensorFlow warned of the retracing).
    images = np.asarray(images, np.float32)
    batches = [probe(images[start:start + batch_size], training=False)
               for start in range(0, len(images), batch_size)]
    features = np.concatenate([keras.ops.convert_to_numpy(batch[0]) for batch in batches])
    probabilities = np.concatenate([keras.ops.convert_to_numpy(batch[1]) for batch in batches])
    expected = probabilities @ np.arange(probabilities.shape[1], dtype=np.float64)
    return np.asarray(features, np.float64), expected
