"""Do samples show what was asked for? Independent checks of covariate-conditioned samples.

For each covariate a prior was trained on (age, sex, ...), a small CNN, the *ruler*, learns to
predict it from a slice and its position, trained only on the real training slices (never on
samples, never on held-out subjects). Its agreement with the truth on held-out real slices is the
ceiling; its agreement with the values *requested* of samples is what the prior achieves; the
same on the samples with the requested values shuffled among them is a control that must fall to
chance. Continuous covariates: Pearson r and mean absolute error (in the covariate's units);
categorical ones: accuracy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import keras
import numpy as np
from keras import layers
from numpy.typing import ArrayLike

from brainvq.data import augmentation
from brainvq.evaluation import realism
from brainvq.generation import generate
from brainvq.hints import PathLike
from brainvq.runs import run_folder

if TYPE_CHECKING:
    from brainvq.data.slice_sets import SliceSet

IMAGES_SEEN = 60000  # images a ruler sees while it trains (passes over the augmented slices)
RULER_SIZE = 64  # larger slices are read area-averaged to this size (atrophy shows at it)
RULER_COPIES = 8  # augmented copies of each training slice (benchmark.py rulers --ruler-copies)


def build_ruler(image_size: int, spec: Mapping[str, Any], num_slice_positions: int,
                size: int = RULER_SIZE) -> keras.Model:
    """Image and slice position -> the covariate: a value near [0, 1] (continuous, scaled to the
    training range) or class probabilities (categorical); images larger than `size` are
    area-averaged to it first."""
    image = keras.Input((image_size, image_size, 1), name="image")
    position = keras.Input((), dtype="int32", name="slice_index")
    hidden = image
    if image_size > size:
        hidden = layers.AveragePooling2D(image_size // size)(hidden)
    for filters in (16, 32, 64, 128):
        for strides in (2, 1):
            hidden = layers.Conv2D(filters, 3, strides=strides, padding="same",
                                   use_bias=False)(hidden)
            hidden = layers.Activation("relu")(layers.BatchNormalization(momentum=0.9)(hidden))
    hidden = layers.GlobalAveragePooling2D()(hidden)
    hidden = layers.Concatenate()([hidden, layers.Embedding(num_slice_positions + 1, 16)(position)])
    hidden = layers.Dense(64, activation="relu")(layers.Dropout(0.3)(hidden))
    if spec["kind"] == "continuous":
        output = layers.Dense(1, name="value")(hidden)
    else:
        output = layers.Dense(len(spec["classes"]), activation="softmax", name="value")(hidden)
    return keras.Model([image, position], output, name=f"ruler_{spec['name']}")


def train_ruler(images: np.ndarray, slice_index: ArrayLike, targets: np.ndarray,
                spec: Mapping[str, Any], num_slice_positions: int, seed: int = 0,
                epochs: int | None = None, images_seen: int | None = None,
                size: int = RULER_SIZE, copies: int | None = None) -> keras.Model:
    """A ruler fitted on real slices whose covariate `targets` (encoded, NaN: unknown) are
    known, with `copies` augmented copies of each (the first mirrored; each further one shifted,
    rotated up to 8 degrees, scaled up to 8% and mirrored at random), for about `images_seen`
    images but at least 3 passes (or `epochs` passes), its learning rate decaying to zero on a
    cosine. `images_seen` and `copies` default to `IMAGES_SEEN` and `RULER_COPIES`."""
    images_seen = IMAGES_SEEN if images_seen is None else images_seen
    copies = RULER_COPIES if copies is None else copies
    keras.utils.set_random_seed(seed)
    known = ~np.isnan(targets)
    images, slice_index, targets = images[known], slice_index[known], targets[known]
    extra = {"max_rotation": 8.0, "max_scale": 0.08} if copies > 1 else {}
    images = np.concatenate([images, augmentation.flip_and_shift(images, copies, 4, seed=seed,
                                                                 **extra)])
    slice_index = np.tile(np.asarray(slice_index, np.int32), copies + 1)
    targets = np.tile(targets, copies + 1)
    if epochs is None:
        epochs = int(np.clip(images_seen // max(len(images), 1), 3, 60))
    batch_size = 32
    steps = epochs * -(-len(images) // batch_size)
    model = build_ruler(images.shape[1], spec, num_slice_positions, size)
    continuous = spec["kind"] == "continuous"
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss="mse" if continuous else "sparse_categorical_crossentropy")
    model.fit([images, slice_index], targets if continuous else targets.astype(np.int32),
              batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    return model


def measure(ruler: keras.Model, spec: Mapping[str, Any], images: np.ndarray,
            slice_index: ArrayLike) -> np.ndarray:
    """The ruler's readings of slices, averaged over each slice and its mirror image: encoded
    values (continuous) or class indices."""
    slice_index = np.asarray(slice_index, np.int32)
    output = np.mean([ruler.predict([view, slice_index], batch_size=64, verbose=0)
                      for view in (images, images[:, :, ::-1])], axis=0)
    return output[:, 0] if spec["kind"] == "continuous" else output.argmax(axis=-1)


def ruler_ceiling(train: SliceSet, held_out: SliceSet, train_targets: np.ndarray,
                  held_out_targets: np.ndarray, spec: Mapping[str, Any], num_slice_positions: int,
                  seed: int = 0, **options: Any) -> tuple[keras.Model, dict[str, float]]:
    """A ruler trained on the real slices of `train` (a SliceSet) and its agreement with the
    truth on those of `held_out`: (ruler, agreement). `options`: of `train_ruler`."""
    ruler = train_ruler(train.images, train.slice_index, train_targets, spec, num_slice_positions,
                        seed=seed, **options)
    reading = measure(ruler, spec, held_out.images, held_out.slice_index)
    return ruler, agreement(spec, held_out_targets, reading)


def agreement(spec: Mapping[str, Any], truth: ArrayLike, reading: ArrayLike) -> dict[str, float]:
    """{"r", "mae"} in the covariate's units (continuous) or {"accuracy"} (categorical)."""
    truth, reading = np.asarray(truth, np.float64), np.asarray(reading, np.float64)
    known = ~np.isnan(truth)
    truth, reading = truth[known], reading[known]
    if spec["kind"] == "continuous":
        span = spec["high"] - spec["low"]
        r = float(np.corrcoef(truth, reading)[0, 1]) if truth.std() and reading.std() else 0.0
        return {"r": r, "mae": float(np.abs(truth - reading).mean() * span)}
    return {"accuracy": float((truth == reading).mean())}


def requested_values(spec: Mapping[str, Any], count: int, seed: int) -> np.ndarray:
    """Values to request of `count` samples: spread evenly over the training range
    (continuous, encoded 0 .. 1) or every class in turn (categorical), in a seeded order."""
    if spec["kind"] == "continuous":
        values = np.linspace(0.0, 1.0, count)
    else:
        values = np.arange(count) % len(spec["classes"])
    return np.random.default_rng(seed).permutation(values).astype(np.float32)


EDGE_SHARE = 0.1  # the top and bottom tenth of a continuous covariate's range


def plausible_shares(spec: Mapping[str, Any], requested: np.ndarray, samples: np.ndarray,
                     ranges: tuple[np.ndarray, np.ndarray]
                     ) -> dict[str, float]:
    """{"of all": share plausible, and for a continuous covariate "lowest tenth" and
    "highest tenth": the share among samples requested there (encoded 0 .. 1)."""
    ok, _ = realism.plausible(samples, ranges)
    shares = {"of all": float(ok.mean())}
    if spec["kind"] == "continuous":
        for where, chosen in (("lowest tenth", requested <= EDGE_SHARE),
                              ("highest tenth", requested >= 1.0 - EDGE_SHARE)):
            if chosen.any():
                shares[where] = float(ok[chosen].mean())
    return shares


def judge_requests(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                   specs: Sequence[Mapping[str, Any]], column: int, ruler: keras.Model,
                   count: int, seed: int, ranges: tuple[np.ndarray, np.ndarray],
                   prior: keras.Model | None) -> dict[str, Any]:
    """Samples `count` slices requested at spread values of covariate `column` alone (the others
    not given; slice positions drawn as the training slices have them), and judges them: the
    ruler's agreement with the requests ("samples"), with the requests shuffled ("shuffled",
    the control) and the share of them that is anatomically plausible ("plausible",
    `plausible_shares`). The run's `covariate_guidance` in `values` guides them."""
    spec = specs[column]
    positions = values["num_slice_positions"]
    requested = requested_values(spec, count, seed)
    request_rows = np.full((count, len(specs)), np.nan, np.float32)
    request_rows[:, column] = requested
    slice_index = generate.draw_slice_positions(output_dir, positions, count, seed)
    samples, _ = generate.generate(values, vqvae, output_dir, count, slice_index=slice_index,
                                   seed=seed, covariates=request_rows, prior=prior)
    reading = measure(ruler, spec, samples, slice_index)
    return {"samples": agreement(spec, requested, reading),
            "shuffled": agreement(spec, np.random.default_rng(seed + 1).permutation(requested),
                                  reading),
            "plausible": plausible_shares(spec, requested, samples, ranges)}


def covariate_report(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                     train: SliceSet, held_out: SliceSet, train_covariates: np.ndarray,
                     held_out_covariates: np.ndarray, specs: Sequence[Mapping[str, Any]],
                     count: int, seed: int, prior: keras.Model | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Trains a ruler per covariate on the training slices, and prints and returns its agreement
    on held-out real slices (the ceiling) and its judgement of `count` samples requested at
    spread values of that covariate alone (`judge_requests`): agreement, the shuffled control,
    and how many are anatomically plausible, overall and for requests in the top and bottom
    tenth of a continuous covariate's range, where the training subjects are fewest. `prior`:
    the run's, loaded once (default: loaded here)."""
    prior = run_folder.load_prior(output_dir) if prior is None else prior
    ranges = realism.plausibility_ranges(train.images)
    rows = {}
    print(f"\nCovariates: rulers trained on {len(train)} real training slices; {count} samples "
          f"per covariate, the others not given")
    for column, spec in enumerate(specs):
        ruler, real = ruler_ceiling(train, held_out, train_covariates[:, column],
                                    held_out_covariates[:, column], spec,
                                    values["num_slice_positions"], seed=values["seed"])
        judged = judge_requests(values, vqvae, output_dir, specs, column, ruler, count, seed,
                                ranges, prior)
        rows[spec["name"]] = dict(judged, real=real)
        print_judgement(spec, real, judged)
    return rows


def print_judgement(spec: Mapping[str, Any], real: Mapping[str, float],
                    judged: Mapping[str, Any]) -> None:
    """The lines a covariate's judgement prints: the ruler on real slices, on samples and on the
    shuffled control; the samples' plausibility."""
    sampled, control = judged["samples"], judged["shuffled"]
    for name in real:
        ratio = f" ({sampled[name] / real[name]:.2f}x)" if real[name] else ""
        print(f"  {spec['name']} {name}: held-out real {real[name]:.3f}, samples "
              f"{sampled[name]:.3f}{ratio}, shuffled control {control[name]:.3f}")
    print(f"  {spec['name']} samples anatomically plausible: " + ", ".join(
        f"{share:.1%} {where}" for where, share in judged["plausible"].items()), flush=True)
