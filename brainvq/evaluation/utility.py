"""What synthetic slices are worth to a model trained on them: "train on synthetic, test on real".

One small multi-task CNN, the *utility model*, reads a slice and predicts every covariate the
prior was conditioned on (age, sex, ...) and the slice's position. It is trained on a set of
labelled slices (real, synthetic, or both) and judged on the real slices of held-out subjects:
Pearson r and mean absolute error (in the covariate's units) for a continuous covariate,
accuracy for a categorical one, and the share of slices placed within 2 positions of the truth.

No file is read or written here: the benchmark (`benchmark.py utility`) draws the slices and
keeps the synthetic sets.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras
import numpy as np
from keras import layers
from numpy.typing import ArrayLike

from brainvq.data import augmentation
from brainvq.evaluation.covariate_checks import agreement

IMAGES_SEEN = 20000  # images each utility model sees while it trains (the same for every set)
MAX_COPIES = 8  # at most this many augmented copies of each slice (small sets get the most)
READ_SIZE = 64  # slices are area-averaged to this side before the model reads them
POSITION_TOLERANCE = 2  # a slice "placed right" lies within this many positions of the truth
CONTINUOUS_LOSS_WEIGHT = 10.0  # a continuous covariate's MSE (encoded 0..1) against the others'
POSITION_LOSS_WEIGHT = 0.5  # the slice position's cross-entropy (32 classes) against the others'


@dataclasses.dataclass
class LabelledSlices:
    """Slices with what the utility model learns to read from them.

    Attributes:
        images: [N, S, S, 1] float32 in [0, 1].
        covariates: [N, C] float32, encoded as the prior takes them (continuous: 0..1 over the
            training range; categorical: the class index).
        slice_index: [N] int32 slice positions.
    """

    images: np.ndarray
    covariates: np.ndarray
    slice_index: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def take(self, chosen: ArrayLike) -> LabelledSlices:
        """The slices at `chosen` (indices or a boolean mask)."""
        return LabelledSlices(self.images[chosen], self.covariates[chosen],
                              self.slice_index[chosen])

    def known(self) -> LabelledSlices:
        """The slices whose every covariate is known (no NaN)."""
        return self.take(~np.isnan(self.covariates).any(axis=1))

    def shuffled(self, seed: int) -> LabelledSlices:
        """The same images with their label rows (covariates and position together) shuffled
        among them: the control whose readings must fall to chance."""
        order = np.random.default_rng(seed).permutation(len(self))
        return LabelledSlices(self.images, self.covariates[order], self.slice_index[order])


def concatenate(*sets: LabelledSlices) -> LabelledSlices:
    """One LabelledSlices holding every slice of `sets`, in order."""
    return LabelledSlices(*(np.concatenate([getattr(part, field.name) for part in sets])
                            for field in dataclasses.fields(LabelledSlices)))


def area_average(images: np.ndarray, size: int = READ_SIZE) -> np.ndarray:
    """[N, S, S, 1] images averaged over S/size x S/size blocks (unchanged when S <= size)."""
    side = images.shape[1]
    if side <= size or side % size:
        return np.asarray(images, np.float32)
    factor = side // size
    blocks = np.asarray(images, np.float32).reshape(len(images), size, factor, size, factor, 1)
    return blocks.mean(axis=(2, 4))


def build_utility_model(image_size: int, specs: Sequence[Mapping[str, Any]],
                        num_slice_positions: int) -> keras.Model:
    """Image -> one output per covariate in `specs` (a value near 0..1, or class probabilities)
    and the slice position's class probabilities: the rulers' convolutional trunk
    (covariate_checks.build_ruler) without the position as an input."""
    image = keras.Input((image_size, image_size, 1), name="image")
    hidden = image
    for filters in (16, 32, 64, 128):
        for strides in (2, 1):
            hidden = layers.Conv2D(filters, 3, strides=strides, padding="same",
                                   use_bias=False)(hidden)
            hidden = layers.Activation("relu")(layers.BatchNormalization(momentum=0.9)(hidden))
    hidden = layers.GlobalAveragePooling2D()(hidden)
    hidden = layers.Dense(128, activation="relu")(layers.Dropout(0.3)(hidden))
    outputs = {}
    for spec in specs:
        if spec["kind"] == "continuous":
            outputs[spec["name"]] = layers.Dense(1, name=spec["name"])(hidden)
        else:
            outputs[spec["name"]] = layers.Dense(len(spec["classes"]), activation="softmax",
                                                 name=spec["name"])(hidden)
    outputs["slice_position"] = layers.Dense(num_slice_positions, activation="softmax",
                                             name="slice_position")(hidden)
    return keras.Model(image, outputs, name="utility_model")


def _targets(slices: LabelledSlices, specs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    targets = {}
    for column, spec in enumerate(specs):
        values = slices.covariates[:, column]
        targets[spec["name"]] = (values[:, None].astype(np.float32)
                                 if spec["kind"] == "continuous" else values.astype(np.int32))
    targets["slice_position"] = np.asarray(slices.slice_index, np.int32)
    return targets


def train_utility_model(slices: LabelledSlices, specs: Sequence[Mapping[str, Any]],
                        num_slice_positions: int, seed: int = 0, images_seen: int | None = None
                        ) -> keras.Model:
    """A utility model fitted on `slices` (a LabelledSlices; slices with an unknown covariate
    are left out) for `images_seen` images (default `IMAGES_SEEN`), whatever the set's size:
    each slice and up to `MAX_COPIES` augmented copies (the first mirrored, the others shifted
    by up to 2 pixels at 64x64, rotated up to 8 degrees, scaled up to 8% and mirrored at random),
    as many copies as the budget covers, drawn in a seeded order; AdamW with a cosine-decayed
    learning rate."""
    images_seen = IMAGES_SEEN if images_seen is None else int(images_seen)
    slices = slices.known()
    if not len(slices):
        raise ValueError("no slice with every covariate known to train a utility model on")
    keras.utils.set_random_seed(seed)
    images = area_average(slices.images)
    copies = int(np.clip(images_seen // len(images) - 1, 1, MAX_COPIES))
    shift = max(1, images.shape[1] // 32)
    images = np.concatenate([images, augmentation.flip_and_shift(
        images, copies, shift, seed=seed, max_rotation=8.0, max_scale=0.08)])
    targets = {name: np.concatenate([value] * (copies + 1))
               for name, value in _targets(slices, specs).items()}
    rng = np.random.default_rng(seed)
    rounds = -(-images_seen // len(images))
    order = np.concatenate([rng.permutation(len(images)) for _ in range(rounds)])[:images_seen]
    model = build_utility_model(images.shape[1], specs, num_slice_positions)
    batch_size = 32
    steps = -(-images_seen // batch_size)
    losses, weights = {}, {}
    for spec in specs:
        continuous = spec["kind"] == "continuous"
        losses[spec["name"]] = "mse" if continuous else "sparse_categorical_crossentropy"
        weights[spec["name"]] = CONTINUOUS_LOSS_WEIGHT if continuous else 1.0
    losses["slice_position"] = "sparse_categorical_crossentropy"
    weights["slice_position"] = POSITION_LOSS_WEIGHT
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4), loss=losses,
                  loss_weights=weights)
    model.fit(images[order], {name: value[order] for name, value in targets.items()},
              batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return model


def read(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """The model's readings of slices, averaged over each slice and its mirror image:
    {output name: [N] encoded values (continuous) or [N, K] class probabilities}."""
    images = area_average(images)
    readings = [model.predict(view, batch_size=64, verbose=0)
                for view in (images, images[:, :, ::-1])]
    return {name: np.mean([reading[name] for reading in readings], axis=0)
            for name in readings[0]}


def judge(model: keras.Model, slices: LabelledSlices, specs: Sequence[Mapping[str, Any]]
          ) -> dict[str, float]:
    """The model's figures on real held-out `slices` (slices with an unknown covariate are
    left out of that covariate's figure): `{"<name> r", "<name> MAE"}` per continuous
    covariate (MAE in its units), `{"<name> accuracy"}` per categorical one and
    `"position within 2"`, the share placed within `POSITION_TOLERANCE` of the truth."""
    readings = read(model, slices.images)
    figures = {}
    for column, spec in enumerate(specs):
        reading = readings[spec["name"]]
        reading = reading[:, 0] if spec["kind"] == "continuous" else reading.argmax(axis=-1)
        for metric, value in agreement(spec, slices.covariates[:, column], reading).items():
            figures[f"{spec['name']} {'MAE' if metric == 'mae' else metric}"] = value
    placed = readings["slice_position"].argmax(axis=-1)
    figures[f"position within {POSITION_TOLERANCE}"] = float(
        np.mean(np.abs(placed - np.asarray(slices.slice_index)) <= POSITION_TOLERANCE))
    return figures
