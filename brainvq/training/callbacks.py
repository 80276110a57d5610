"""The training callbacks: checkpoints (latest and best epoch, early stop), the NaN guard,
throughput, and the training-progress frames."""
import math
import pathlib
import time

import keras
import numpy as np

from brainvq.evaluation import figures
from brainvq.runs import folder as runs


class AtomicCheckpoint(keras.callbacks.Callback):
    """Keeps the latest and the best epoch of a stage, and stops early.

    After every epoch with finite losses the whole model (weights, optimizer, EMA codebook) is
    saved as `<stage>_last.keras` (what --resume continues from); when the monitored validation
    value is the best so far, that file is also copied to `filename` (the checkpoint users get).
    Both are written under a temporary name, verified complete and renamed into place, keeping
    the file they replace as `*.previous.keras`, so a kill during a save leaves good checkpoints.
    The epochs done, the best epoch, its value and `record` (fingerprints of what the stage was
    trained on) go to the run's state file, written the same way. With `patience` > 0 training
    stops once that many epochs have passed without a better value.

    Args:
        folder: the run folder.
        filename: the best checkpoint's name (`vqvae.keras` or `prior.keras`).
        stage: "vqvae" or "prior", the key in the state file.
        patience: epochs without improvement before stopping (0: never).
        record: extra entries for the stage's state (e.g. fingerprints).
    """

    def __init__(self, folder, filename, stage, patience=0, record=None):
        super().__init__()
        self.folder = pathlib.Path(folder)
        self.filename = filename
        self.stage = stage
        self.patience = int(patience)
        self.record = dict(record or {})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(float(v)) for v in logs.values()):
            return  # never overwrite a good checkpoint with a broken one
        last = self.folder / runs.last_checkpoint_name(self.filename)
        runs.save_atomically(self.model, last)
        state = runs.read_state(self.folder)
        entry = state.get(self.stage, {})
        entry.update(self.record)
        monitor = "val_loss" if "val_loss" in logs else "loss"
        value = float(logs[monitor])
        if entry.get("best_value") is None or value < entry["best_value"]:
            runs.copy_atomically(last, self.folder / self.filename)
            entry.update(best_epoch=epoch + 1, best_value=value, monitor=monitor)
        entry["epochs_done"] = epoch + 1
        if self.patience and epoch + 1 - entry["best_epoch"] >= self.patience:
            entry["stopped_early"] = True
            self.model.stop_training = True
            print(f"{self.stage}: no better {monitor} for {self.patience} epochs; stopping "
                  f"(best epoch {entry['best_epoch']}, {monitor} {entry['best_value']:.4f})")
        state[self.stage] = entry
        runs.write_state(self.folder, state)


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

    def __init__(self, resumed=False):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = bool(resumed)


class StopOnNonFinite(keras.callbacks.TerminateOnNaN):
    """Keras's `TerminateOnNaN`, remembering where the loss stopped being finite (the stage, the
    epoch and the batch) for the error the run ends with."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage
        self.epoch = 0
        self.failure = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.failure is None:
            self.failure = (f"{self.stage} stage: loss became {float(loss)} at epoch "
                            f"{self.epoch + 1}, batch {batch + 1}")
        super().on_batch_end(batch, logs)


class Throughput(keras.callbacks.Callback):
    """Adds `images_per_second` (training images seen per wall-clock second) to the logs."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            seconds = time.perf_counter() - self.start
            logs["images_per_second"] = self.batches * self.batch_size / max(seconds, 1e-9)


class ProgressFrames(keras.callbacks.Callback):
    """Reconstructs fixed validation slices after every epoch and, when training ends,
    assembles the frames into an animated GIF of training progress."""

    def __init__(self, images, frames_dir, gif_path):
        super().__init__()
        self.images = images
        self.frames_dir = pathlib.Path(frames_dir)
        self.gif_path = gif_path

    def on_train_begin(self, logs=None):
        self.frames_dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        reconstructions = np.clip(self.model.predict(self.images, verbose=0), 0.0, 1.0)
        figures.plot_image_grid(
            np.concatenate([self.images, reconstructions]),
            self.frames_dir / f"epoch_{epoch + 1:04d}.png", columns=len(self.images),
            title=f"epoch {epoch + 1}: validation slices (top), reconstructions (bottom)")

    def on_train_end(self, logs=None):
        frames = sorted(self.frames_dir.glob("epoch_*.png"))
        if frames:
            figures.make_gif(frames, self.gif_path, duration_ms=500)
