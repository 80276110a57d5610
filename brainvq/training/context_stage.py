"""The slice-context stage (runs cut as stacks, `--context-blocks N`): a `SliceContextRefiner`
(models/slice_context.py) trained to give back the frozen VQ-VAE's unquantized encoder latents
from the quantized ones of a run of neighbouring slices, on every training subject's stack and
its left-right mirror image; the epoch with the best validation loss is kept as
`slice_context.keras`. `predict.py --volumes` and `similarity.py --volumes` then decode every
stack through it."""
from __future__ import annotations

import math
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import keras
import numpy as np
from numpy.typing import ArrayLike

from brainvq.data.stacks import subject_stacks
from brainvq.evaluation import streaks
from brainvq.generation.stacks import decode_stacks
from brainvq.hints import Callbacks, PathLike, Splits, Values
from brainvq.models.slice_context import SliceContextRefiner
from brainvq.progress import progress_bar
from brainvq.runs import run_folder
from brainvq.runs.run_folder import CONTEXT_FILE, VQVAE_FILE, RunError
from brainvq.training import stages

if TYPE_CHECKING:
    from brainvq.data.slice_sets import SliceSet

RUN_LENGTH = 16  # slices in each training example (the refiner is fully convolutional)
BATCH_SIZE = 8
LEARNING_RATE = 1e-3


def stack_images(split: SliceSet, length: int) -> np.ndarray:
    """The split's subjects' stacks [V, length, H, W] (subjects without a whole stack left
    out)."""
    stacks = list(subject_stacks(split, length).values())
    if not stacks:
        return np.zeros((0, length) + split.images.shape[1:3], np.float32)
    return np.stack(stacks).astype(np.float32)


def encoder_latents(vqvae: keras.Model, stacks: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The VQ-VAE's unquantized latents [V, S, g, g, D] (float16) of stacks [V, S, H, W]."""
    flat = np.ascontiguousarray(stacks.reshape((-1,) + stacks.shape[2:])[..., None], np.float32)
    starts = range(0, len(flat), batch_size)
    progress = progress_bar(len(starts), f"encoding {len(flat)} stack slices", minimum=50)
    latents = []
    for start in starts:
        latents.append(keras.ops.convert_to_numpy(
            vqvae.encoder(flat[start:start + batch_size], training=False)).astype(np.float16))
        progress.add(1)
    latents = np.concatenate(latents)
    return latents.reshape(stacks.shape[:2] + latents.shape[1:])


def nearest_codes(vqvae: keras.Model, latents: np.ndarray, batch: int = 16384) -> np.ndarray:
    """The code indices [...] int32 of latents [..., D] (as `VQVAETrainer.encode` picks them)."""
    flat = latents.reshape(-1, latents.shape[-1]).astype(np.float32)
    codes = [keras.ops.convert_to_numpy(vqvae.quantizer.nearest_codes(flat[i:i + batch]))
             for i in range(0, len(flat), batch)]
    return np.concatenate(codes).astype(np.int32).reshape(latents.shape[:-1])


class LatentRuns(keras.utils.PyDataset):
    """Batches of (quantized latents, unquantized latents) [B, L, g, g, D] float32: with
    `run_length`, a random run of that many slices of each stack, stacks shuffled each epoch;
    without, whole stacks in order.

    Args:
        codes: [V, S, g, g] the stacks' code indices.
        latents: [V, S, g, g, D] their unquantized latents.
        codebook: [K, D] the VQ-VAE's codebook (the quantized latents are its rows).
    """

    def __init__(self, codes: np.ndarray, latents: np.ndarray, codebook: ArrayLike, batch_size: int,
                 run_length: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.codes, self.latents, self.codebook = codes, latents, np.asarray(codebook)
        self.batch_size, self.run_length = int(batch_size), run_length
        self.random = np.random.default_rng(seed)
        self.order = (self.random.permutation(len(codes)) if run_length
                      else np.arange(len(codes)))

    def __len__(self) -> int:
        return math.ceil(len(self.codes) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        stacks = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        length = self.codes.shape[1]
        run = min(self.run_length or length, length)
        starts = self.random.integers(0, length - run + 1, len(stacks)) if self.run_length \
            else np.zeros(len(stacks), np.int64)
        codes = np.stack([self.codes[s, t:t + run] for s, t in zip(stacks, starts)])
        latents = np.stack([self.latents[s, t:t + run] for s, t in zip(stacks, starts)])
        return self.codebook[codes].astype(np.float32), latents.astype(np.float32)

    def on_epoch_end(self) -> None:
        if self.run_length:
            self.order = self.random.permutation(len(self.codes))


def refiner_from_values(values: Mapping[str, Any]) -> SliceContextRefiner:
    """An untrained `SliceContextRefiner` of a run's settings (as wide as its VQ-VAE),
    compiled."""
    refiner = SliceContextRefiner(code_dim=values["code_dim"], channels=values["channels"],
                                  blocks=values["context_blocks"])
    refiner.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    return refiner


def train_slice_context(values: Values, splits: Splits, output_dir: PathLike,
                        resume: bool = False, extra_callbacks: Callbacks = ()
                        ) -> tuple[SliceContextRefiner, dict[str, float]]:
    """Fits the refiner on the training stacks and their mirror images, keeping the epoch with
    the best validation loss as `slice_context.keras`; returns it and the test stacks' streak
    indices (`streaks.streak_index`, the mean over stacks): {"real", "codes" (decoded slice by
    slice from their codes), "refined"} (empty without test stacks)."""
    output_dir = pathlib.Path(output_dir)
    vqvae = stages.frozen_vqvae(output_dir, values)
    length = values["slices_per_volume"]
    train, validate = (stack_images(splits[name], length) for name in ("train", "validate"))
    if len(train) == 0 or len(validate) == 0:
        raise RunError(f"no whole stacks of {length} slices among the training or validation "
                       f"subjects: the slice-context stage needs them")
    latents = {"train": np.concatenate([encoder_latents(vqvae, train),
                                        encoder_latents(vqvae, train[..., ::-1])]),
               "validate": encoder_latents(vqvae, validate)}
    codes = {name: nearest_codes(vqvae, array) for name, array in latents.items()}
    codebook = keras.ops.convert_to_numpy(vqvae.quantizer.codebook.value)
    model, done = (stages.load_for_resume(output_dir, "context", values) if resume else (None, 0))
    if model is None:
        model = refiner_from_values(values)
    record = {"data_fingerprint": run_folder.data_fingerprint(splits),
              "vqvae_fingerprint": run_folder.file_fingerprint(output_dir / VQVAE_FILE)}
    stages.fit_stage(
        model, "context",
        LatentRuns(codes["train"], latents["train"], codebook, BATCH_SIZE, RUN_LENGTH,
                   seed=values["seed"]),
        LatentRuns(codes["validate"], latents["validate"], codebook, 2),
        dict(values, steps_per_epoch=0), values["context_epochs"], BATCH_SIZE, output_dir,
        CONTEXT_FILE, resume, extra_callbacks, values["prior_patience"], done=done,
        record=record)
    stages.report_best(output_dir, "context")
    model = run_folder.load_checkpoint(output_dir / CONTEXT_FILE)
    test = stack_images(splits["test"], length)
    if len(test) == 0:
        return model, {}
    test_codes = nearest_codes(vqvae, encoder_latents(vqvae, test))
    decoded = {"real": test, "codes": decode_stacks(vqvae, test_codes),
               "refined": decode_stacks(vqvae, test_codes, refiner=model)}
    return model, {name: _mean_streak_index(stacks) for name, stacks in decoded.items()}


def _mean_streak_index(stacks: np.ndarray) -> float:
    """The mean streak index of the stacks that have a head (NaN when none has)."""
    figures = [streaks.streak_index(stack) for stack in stacks]
    figures = [figure for figure in figures if np.isfinite(figure)]
    return float(np.mean(figures)) if figures else float("nan")
