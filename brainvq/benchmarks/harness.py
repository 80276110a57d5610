"""What every benchmark shares: the machine it ran on, timing, a wall-clock or step budget, the
VQ-VAE trained for it (ours, or the keras-io design as published) and its held-out quality."""
from __future__ import annotations

import argparse
import numbers
import os
import platform
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import keras
import numpy as np

from brainvq.data import input_pipeline, layouts
from brainvq.evaluation import metrics
from brainvq.generation import generate
from brainvq.losses import perceptual
from brainvq.models import build
from brainvq.models.vqvae_trainer import VQVAETrainer

if TYPE_CHECKING:
    from brainvq.data.slice_sets import SliceSet


def machine_description() -> str:
    """One line about where the numbers come from: platform, CPUs, backend, accelerators."""
    backend = keras.backend.backend()
    accelerators = "none"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        accelerators = ", ".join(device.name for device in gpus) or "none"
        backend = f"tensorflow {tf.__version__}"
    elif backend == "jax":
        import jax

        accelerators = ", ".join(str(device) for device in jax.devices()
                                 if device.platform != "cpu") or "none"
        backend = f"jax {jax.__version__}"
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"keras {keras.__version__} on {backend}, accelerators: {accelerators}")


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of `repeats` calls of `function`, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


class Budget(keras.callbacks.Callback):
    """Stops `fit` once `seconds` of training have passed or, with `steps` > 0, after exactly
    that many optimizer steps (a budget that gives the same figure on any machine, busy or
    idle); counts the images seen (`batch_size` per step)."""

    def __init__(self, seconds: float, steps: int = 0, batch_size: int = 1) -> None:
        super().__init__()
        self.seconds, self.budget_steps, self.batch_size = seconds, steps, batch_size

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start, self.images, self.steps = time.perf_counter(), 0, 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.images += self.batch_size
        self.steps += 1
        if self.budget_steps:
            spent = self.steps >= self.budget_steps
        else:
            spent = time.perf_counter() - self.start > self.seconds
        if spent:
            self.model.stop_training = True


STEPS_HELP = ("train for exactly this many optimizer steps (at least 1) instead of --minutes: "
              "the same figure on any machine, busy or idle")


def positive_steps(text: str) -> int:
    """argparse type of --steps: a whole number >= 1 (leave the flag out to use --minutes)."""
    try:
        steps = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if steps < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {steps} (leave --steps out to "
                                         f"train for --minutes)")
    return steps


def seeds_mean(reports: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean over several sampling seeds' reports (dicts) of every number they all have: the
    `mean` row of a benchmark run at several seeds."""
    return {key: float(np.mean([report[key] for report in reports])) for key in reports[0]
            if all(isinstance(report.get(key), numbers.Real)
                   and not isinstance(report.get(key), bool) for report in reports)}


def seeds_spread(reports: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The standard deviation over several sampling seeds' reports of every number they all
    have: the `sd` row beside the `mean` row."""
    numeric = seeds_mean(reports)
    return {key: float(np.std([report[key] for report in reports])) for key in numeric}


def comma_separated(convert: Callable[[str], Any] = str) -> Callable[[str], list]:
    """argparse type of a comma-separated list flag (`--top-ks 0,64`): each item `convert`ed."""
    def parse(text: str) -> list:
        return [convert(item) for item in text.split(",")]

    return parse


# The keras-io vq_vae.py design as published: 128 codes of 16 dimensions (`VQVAETrainer(
# data_variance, latent_dim=16, num_embeddings=128)`), plain VQ loss with beta 0.25, the MSE
# divided by the variance of the training images, no SSIM term, Adam 1e-3, batch 128, the
# codebook initialised at random (no first-batch k-means, no EMA, no dead-code restart).
KERASIO = {"num_codes": 128, "code_dim": 16, "batch_size": 128, "learning_rate": 1e-3,
           "commitment_cost": 0.25}


def quality_model(values: Mapping[str, Any], baseline: bool,
                  train_images: np.ndarray | None = None) -> keras.Model:
    """Our VQ-VAE from `values`, or the keras-io design (which needs `train_images` for the
    variance its MSE is divided by)."""
    if baseline == "kerasio":
        variance = 1.0 if train_images is None else float(np.var(train_images))
        model = VQVAETrainer(
            image_size=values["image_size"], num_codes=KERASIO["num_codes"],
            code_dim=KERASIO["code_dim"], use_ema=False, ssim_weight=0.0,
            architecture="kerasio", commitment_cost=KERASIO["commitment_cost"],
            data_variance=variance)
        model.quantizer.init_from_data = False
        model.build()
        model.compile(optimizer=keras.optimizers.Adam(KERASIO["learning_rate"]))
        return model
    model = build.vqvae_from_hyperparameters(values)
    perceptual.attach_feature_network(model, values)
    model.compile(optimizer=build.vqvae_optimizer(values))
    return model


def train_for_budget(values: Mapping[str, Any], baseline: bool, train: SliceSet, minutes: float,
                     steps: int = 0) -> tuple[keras.Model, int, float]:
    """A VQ-VAE (ours from `values`, or the baseline) trained on `train` for `minutes`, or for
    `steps` optimizer steps when `steps` > 0.

    Returns:
        (model, images_seen, seconds).
    """

    batch_size = KERASIO["batch_size"] if baseline == "kerasio" else values["batch_size"]
    keras.utils.set_random_seed(values["seed"])
    model = quality_model(values, baseline, train.images)
    budget = Budget(minutes * 60.0, steps, batch_size)
    train_data = input_pipeline.make_dataset(train, batch_size, shuffle=True, seed=values["seed"],
                                     repeat=True)
    steps = max(len(train) // batch_size, 1)
    model.fit(train_data, epochs=100000, steps_per_epoch=steps, callbacks=[budget], verbose=0,
              shuffle=False)  # the input pipeline shuffles
    return model, budget.images, time.perf_counter() - budget.start


def reconstruction_quality(model: keras.Model, slices: SliceSet
                           ) -> tuple[dict[str, np.ndarray], int]:
    """Per-image SSIM, PSNR, MS-SSIM and brain SSIM of `model`'s reconstructions of `slices`,
    and the codes it used."""


    reconstructions = np.clip(model.predict(slices.images, batch_size=64, verbose=0), 0, 1)
    per_image = metrics.per_image_metrics(slices.images, reconstructions)
    codes = generate.encode_all(model, slices.images)
    return per_image, len(np.unique(codes))


def subjects(slices: SliceSet, count: int, seed: int, flag: str = "--subjects",
             values: Mapping[str, Any] | None = None) -> SliceSet:
    """The slices of `count` subjects of `slices`, drawn in a seeded order (nested: the first
    8 of 32 are the 8); `flag` names the option in the error for too many."""

    cases = np.unique(slices.case_id)
    if count > len(cases):
        more = "a larger data set"
        if values is not None and layouts.data_layout(values["data_dir"]) == "nifti-volumes":
            more = "--split to give it more (e.g. --split 125,20,20)"
        raise SystemExit(f"error: {flag} {count}: the training subjects here number only "
                         f"{len(cases)}; use {more}.")
    chosen = np.random.default_rng(seed).permutation(cases)[:count]
    return slices.take(np.isin(slices.case_id, chosen))
