"""The training callbacks: checkpoints of the latest and the best epoch with early stopping
(Keras's `ModelCheckpoint` and `EarlyStopping`, with atomic saves and resumable state), the NaN
guard (`TerminateOnNaN`), throughput, the moving average of the weights, and the
training-progress frames."""
from __future__ import annotations

import math
import pathlib
import time
from typing import Any, Mapping

import keras
import numpy as np

from brainvq.hints import PathLike
from brainvq.output import figures
from brainvq.runs import run_folder


def checkpoint_callbacks(folder: PathLike, filename: str, stage: str, patience: int = 0,
                         record: Mapping[str, Any] | None = None) -> list[keras.callbacks.Callback]:
    """The callbacks that keep a stage's checkpoints and its state, in the order they must run.

    After every epoch with finite losses the whole model (weights, optimizer, EMA codebook) is
    saved as `<stage>_last.keras` (what --resume continues from) and, when `val_loss` is the best
    so far, as `filename` (the checkpoint users get): `VerifiedCheckpoint`s, Keras's
    `ModelCheckpoint` with atomic, verified writes. With `patience` > 0, `ResumableEarlyStopping`
    stops training once that many epochs have passed without a better `val_loss`. `RunState`
    writes the epochs done, the best epoch, its value and `record` (fingerprints of what the stage
    was trained on) to the run's state file. A resumed stage continues from that file: the same
    best value to beat and the same epochs waited.

    Args:
        folder: the run folder.
        filename: the best checkpoint's name (`vqvae.keras` or `prior.keras`).
        stage: "vqvae" or "prior", the key in the state file.
        patience: epochs without improvement before stopping (0: never).
        record: extra entries for the stage's state (e.g. fingerprints).
    """
    folder = pathlib.Path(folder)
    entry = run_folder.read_state(folder).get(stage, {})
    best_value = entry.get("best_value")
    latest = VerifiedCheckpoint(folder / run_folder.last_checkpoint_name(filename))
    best = VerifiedCheckpoint(folder / filename, save_best_only=True, best=best_value)
    stopping = []
    if patience:
        waited = entry.get("epochs_done", 0) - entry.get("best_epoch", 0)
        stopping = [ResumableEarlyStopping(patience, best=best_value, waited=waited)]
    return [latest, best, *stopping,
            RunState(folder, stage, best, patience, record, latest=latest.filepath)]


def _finite(logs: Mapping[str, Any]) -> bool:
    return all(math.isfinite(float(value)) for value in (logs or {}).values())


class VerifiedCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's `ModelCheckpoint` (the whole model, every epoch or only the best `val_loss`), whose
    saves are atomic and verified: written under a temporary name, checked complete and renamed
    into place, keeping the file they replace as `*.previous.keras`, so a kill during a save
    leaves a good checkpoint. An epoch with a non-finite loss is never saved.

    Args:
        filepath: the `.keras` file.
        save_best_only: save only when `val_loss` (or, with no validation data, `loss`) is
            lower than every epoch's before.
        best: the best `val_loss` so far (a resumed run's), or None.
    """

    def __init__(self, filepath: PathLike, save_best_only: bool = False,
                 best: float | None = None) -> None:
        super().__init__(str(filepath), monitor="val_loss", save_best_only=save_best_only,
                         mode="min", initial_value_threshold=best)
        self.best = best
        self.improved = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.improved = False
        if not _finite(logs):
            return
        if self.save_best_only:
            # Without validation data (a bare `fit`), the training loss is what there is.
            self.monitor = "val_loss" if "val_loss" in logs else "loss"
            current = logs.get(self.monitor)
            if current is None or (self.best is not None and not current < self.best):
                return
            self.best, self.improved = float(current), True
        run_folder.save_atomically(self.model, self.filepath)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's `EarlyStopping` on `val_loss` that a resumed run continues: it starts from the
    best value and the epochs already waited that the run's state recorded.

    Args:
        patience: epochs without a better `val_loss` before stopping.
        best: the best `val_loss` so far, or None.
        waited: epochs since that best one.
    """

    def __init__(self, patience: int, best: float | None = None, waited: int = 0) -> None:
        super().__init__(monitor="val_loss", patience=patience, mode="min")
        self.resumed_best, self.resumed_wait = best, max(int(waited), 0)

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.best, self.wait = self.resumed_best, self.resumed_wait


class RunState(keras.callbacks.Callback):
    """Writes a stage's progress to the run's state file after every epoch with finite losses:
    epochs done, the best epoch and its `val_loss` (from `best`, the best-epoch checkpoint),
    `record`, and whether early stopping ended the stage."""

    def __init__(self, folder: PathLike, stage: str, best: float | None, patience: int = 0,
                 record: Mapping[str, Any] | None = None, latest: PathLike | None = None) -> None:
        super().__init__()
        self.folder, self.stage, self.best = pathlib.Path(folder), stage, best
        self.patience, self.record = patience, dict(record or {})
        self.latest = latest  # the latest epoch's checkpoint, whose sha256 is recorded

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not _finite(logs):
            return
        state = run_folder.read_state(self.folder)
        entry = state.get(self.stage, {})
        entry.update(self.record)
        if self.best.improved:
            entry.update(best_epoch=epoch + 1, best_value=self.best.best,
                         monitor=self.best.monitor)
        entry["epochs_done"] = epoch + 1
        if self.latest is not None:  # --resume checks that it continues this very file
            entry["last_fingerprint"] = run_folder.file_fingerprint(self.latest)
        if self.model.stop_training:
            entry["stopped_early"] = True
            print(f"{self.stage}: no better {entry['monitor']} for {self.patience} epochs; "
                  f"stopping (best epoch {entry['best_epoch']}, {entry['monitor']} "
                  f"{entry['best_value']:.4f})")
        state[self.stage] = entry
        run_folder.write_state(self.folder, state)


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Validates and saves the moving average of the weights (Polyak averaging).

    For an optimizer built with `use_ema=True`: Keras's `SwapEMAWeights(swap_on_epoch=True)`
    swaps the averaged weights into the model for validation and at the end of each epoch (so
    the checkpoint callbacks after this one save them), and the training weights back at the
    start of the next epoch. A checkpoint saved so holds the averaged weights as the model's and
    the training weights in the optimizer's average slots; `resumed=True` says the model starts
    as such a checkpoint, so the first epoch swaps the training weights back in before training,
    and a resumed run continues as an uninterrupted one would.

    Args:
        resumed: whether the model was loaded from a checkpoint this callback saved.
    """

    def __init__(self, resumed: bool = False) -> None:
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = bool(resumed)


class WeightSnapshots(keras.callbacks.Callback):
    """Keeps the model's weights of every `every`-th epoch as `<stage>_epoch_NNN.weights.h5`
    in `folder` (weights only, a few MB; placed after `AveragedWeights`, the averaged ones), so
    that a checkpoint can be chosen afterwards by what its samples look like. Written under a
    temporary name and renamed, so a kill never leaves half a file."""

    def __init__(self, folder: PathLike, stage: str, every: int = 1) -> None:
        super().__init__()
        self.folder, self.stage, self.every = pathlib.Path(folder), stage, max(int(every), 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not _finite(logs) or (epoch + 1) % self.every:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.stage}_epoch_{epoch + 1:03d}.weights.h5"
        partial = path.with_name(f"partial.{path.name}")
        self.model.save_weights(partial)
        partial.replace(path)


class StopOnNonFinite(keras.callbacks.TerminateOnNaN):
    """Keras's `TerminateOnNaN`, remembering where the loss stopped being finite (the stage, the
    epoch and the batch) for the error the run ends with."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.epoch = 0
        self.failure = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.failure is None:
            self.failure = (f"{self.stage} stage: loss became {float(loss)} at epoch "
                            f"{self.epoch + 1}, batch {batch + 1}")
        super().on_batch_end(batch, logs)


class Throughput(keras.callbacks.Callback):
    """Adds `images_per_second` (training images seen per wall-clock second) to the logs."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start, self.batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.batches += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            seconds = time.perf_counter() - self.start
            logs["images_per_second"] = self.batches * self.batch_size / max(seconds, 1e-9)


class ProgressFrames(keras.callbacks.Callback):
    """Reconstructs fixed validation slices after every epoch and, when training ends,
    assembles the frames into an animated GIF of training progress."""

    def __init__(self, images: np.ndarray, frames_dir: PathLike, gif_path: PathLike) -> None:
        super().__init__()
        self.images = images
        self.frames_dir = pathlib.Path(frames_dir)
        self.gif_path = gif_path

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.frames_dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        reconstructions = np.clip(self.model.predict(self.images, verbose=0), 0.0, 1.0)
        figures.plot_image_grid(
            np.concatenate([self.images, reconstructions]),
            self.frames_dir / f"epoch_{epoch + 1:04d}.png", columns=len(self.images),
            title=f"epoch {epoch + 1}: validation slices (top), reconstructions (bottom)")

    def on_train_end(self, logs: dict | None = None) -> None:
        frames = sorted(self.frames_dir.glob("epoch_*.png"))
        if frames:
            figures.make_gif(frames, self.gif_path, duration_ms=500)
