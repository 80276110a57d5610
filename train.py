"""Train the VQ-VAE, then the PixelCNN prior over its frozen code grids.

    python train.py                       # both stages on the default data (demo if no OASIS)
    python train.py --stage vqvae --data-dir /data/keras_png_slices_data --image-size 256
    python train.py --resume              # continue an interrupted run from its last checkpoint

Everything lands in --output-dir: `vqvae.keras`, `prior.keras`, `hyperparameters.json`,
`vqvae_log.csv`, `prior_log.csv` and `codes.npz` (the cached code grids of every split).
"""
import argparse
import hashlib
import json
import math
import os
import pathlib
import shutil
import sys
import time

import numpy as np

import hyperparameters

VQVAE_FILE = "vqvae.keras"  # the best validation epoch: what predict.py and similarity.py use
PRIOR_FILE = "prior.keras"
CODES_FILE = "codes.npz"
STATE_FILE = "training_state.json"


def last_checkpoint_name(filename):
    """Where the latest epoch of a stage is kept for --resume: `vqvae.keras` -> `vqvae_last.keras`
    (the file named `filename` holds the best validation epoch)."""
    return filename.replace(".keras", "_last.keras")


# ---------------------------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------------------------

def _callbacks():
    """The training callbacks; defined in a function so importing train.py stays cheap."""
    import keras

    class AtomicCheckpoint(keras.callbacks.Callback):
        """Keeps the latest and the best epoch of a stage, and stops early.

        After every epoch with finite losses the whole model (weights, optimizer, EMA codebook)
        is saved as `<stage>_last.keras` (what --resume continues from); when the monitored
        validation value is the best so far, that file is also copied to `filename` (the
        checkpoint users get). Both are written under a temporary name and renamed into place,
        so a kill during a save leaves the previous checkpoints intact. The epochs done, the best
        epoch and its value go to a small JSON state file, written the same way. With
        `patience` > 0 training stops once that many epochs have passed without a better value.
        """

        def __init__(self, folder, filename, stage, patience=0):
            super().__init__()
            self.folder = pathlib.Path(folder)
            self.filename = filename
            self.stage = stage
            self.patience = int(patience)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if not all(math.isfinite(float(v)) for v in logs.values()):
                return  # never overwrite a good checkpoint with a broken one
            last = self.folder / last_checkpoint_name(self.filename)
            save_atomically(self.model, last)
            state = read_state(self.folder)
            entry = state.get(self.stage, {})
            monitor = "val_loss" if "val_loss" in logs else "loss"
            value = float(logs[monitor])
            if entry.get("best_value") is None or value < entry["best_value"]:
                copy_atomically(last, self.folder / self.filename)
                entry.update(best_epoch=epoch + 1, best_value=value, monitor=monitor)
            entry["epochs_done"] = epoch + 1
            if self.patience and epoch + 1 - entry["best_epoch"] >= self.patience:
                entry["stopped_early"] = True
                self.model.stop_training = True
                print(f"{self.stage}: no better {monitor} for {self.patience} epochs; stopping "
                      f"(best epoch {entry['best_epoch']}, {monitor} {entry['best_value']:.4f})")
            state[self.stage] = entry
            write_json_atomically(self.folder / STATE_FILE, state)

    class StopOnNonFinite(keras.callbacks.Callback):
        """Stops training at the first NaN/Inf loss and remembers where it happened."""

        def __init__(self, stage):
            super().__init__()
            self.stage = stage
            self.epoch = 0
            self.failure = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = float((logs or {}).get("loss", 0.0))
            if not math.isfinite(loss):
                self.failure = (f"{self.stage} stage: loss became {loss} at epoch "
                                f"{self.epoch + 1}, batch {batch + 1}")
                self.model.stop_training = True

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

    return AtomicCheckpoint, StopOnNonFinite, Throughput


def progress_frames_callback(images, frames_dir, gif_path):
    """A callback that reconstructs fixed validation slices after every epoch and, when
    training ends, assembles the frames into an animated GIF of training progress."""
    import keras

    import metrics

    class ProgressFrames(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            pathlib.Path(frames_dir).mkdir(parents=True, exist_ok=True)

        def on_epoch_end(self, epoch, logs=None):
            reconstructions = np.clip(self.model.predict(images, verbose=0), 0.0, 1.0)
            metrics.plot_image_grid(
                np.concatenate([images, reconstructions]),
                pathlib.Path(frames_dir) / f"epoch_{epoch + 1:04d}.png", columns=len(images),
                title=f"epoch {epoch + 1}: validation slices (top), reconstructions (bottom)")

        def on_train_end(self, logs=None):
            frames = sorted(pathlib.Path(frames_dir).glob("epoch_*.png"))
            if frames:
                metrics.make_gif(frames, gif_path, duration_ms=500)

    return ProgressFrames()


def plot_training_curves(output_dir, stage, images_dir):
    """Loss curves (linear and log scale) of a stage's CSV log, as `images/<stage>_loss.png`."""
    import metrics

    log = pathlib.Path(output_dir) / f"{stage}_log.csv"
    if log.is_file() and len(log.read_text().splitlines()) > 1:
        return metrics.plot_loss_curves(log, pathlib.Path(images_dir) / f"{stage}_loss.png")
    return None


def save_atomically(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    path = pathlib.Path(path)
    partial = path.with_name(path.stem + ".partial.keras")
    model.save(partial)
    os.replace(partial, path)


def copy_atomically(source, path):
    """Copies `source` to `path` through a temporary file and a rename."""
    path = pathlib.Path(path)
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    shutil.copyfile(source, partial)
    os.replace(partial, path)


def write_json_atomically(path, data):
    path = pathlib.Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def read_state(folder):
    """The training state file: {stage: {"epochs_done": N}} ({} before the first epoch)."""
    path = pathlib.Path(folder) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def epochs_done(folder, stage="vqvae"):
    """How many epochs of `stage` the latest checkpoint in `folder` holds."""
    return read_state(folder).get(stage, {}).get("epochs_done", 0)


def resume_checkpoint(folder, filename):
    """The checkpoint --resume continues from: the latest epoch's, else (an older run) the
    best one's; None when neither exists."""
    for name in (last_checkpoint_name(filename), filename):
        if (pathlib.Path(folder) / name).exists():
            return pathlib.Path(folder) / name
    return None


def trim_log(path, epochs):
    """Drops CSV log rows of epochs >= `epochs` (logged, but not checkpointed, before a kill)."""
    path = pathlib.Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < epochs]
    path.write_text("".join(kept))


class TrainingFailed(RuntimeError):
    """Training stopped on a non-finite loss; the message names the stage and epoch."""


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------

def _fit(model, stage, train_data, validation_data, values, epochs, batch_size, output_dir,
         checkpoint_file, resume, extra_callbacks=(), patience=0):
    """Runs `model.fit` with checkpointing (latest and best epoch), early stopping after
    `patience` epochs without a better validation loss (0: never), CSV logging and the NaN
    guard; returns the history."""
    import keras

    AtomicCheckpoint, StopOnNonFinite, Throughput = _callbacks()
    output_dir = pathlib.Path(output_dir)
    done = epochs_done(output_dir, stage) if resume else 0
    log_path = output_dir / f"{stage}_log.csv"
    if done:
        trim_log(log_path, done)
    else:  # a fresh start of this stage forgets an earlier run's progress (not other stages')
        state = read_state(output_dir)
        if state.pop(stage, None) is not None:
            write_json_atomically(output_dir / STATE_FILE, state)
    nan_guard = StopOnNonFinite(stage)
    callbacks = [
        nan_guard,
        Throughput(batch_size),
        *extra_callbacks,
        keras.callbacks.CSVLogger(str(log_path), append=done > 0),
        AtomicCheckpoint(output_dir, checkpoint_file, stage, patience),
    ]
    if done >= epochs:
        print(f"{stage}: all {epochs} epochs already done in {output_dir}")
        return None
    if done and read_state(output_dir)[stage].get("stopped_early"):
        print(f"{stage}: stopped early after epoch {done} (no better validation loss for "
              f"{patience} epochs) in {output_dir}")
        return None
    if done:
        print(f"{stage}: resuming after epoch {done} of {epochs}")
    steps = values["steps_per_epoch"] or None
    history = model.fit(train_data, validation_data=validation_data, epochs=epochs,
                        initial_epoch=done, steps_per_epoch=steps, callbacks=callbacks,
                        verbose="auto" if sys.stdout.isatty() else 2)
    if nan_guard.failure:
        kept = output_dir / checkpoint_file
        raise TrainingFailed(
            nan_guard.failure + (f"; the last good checkpoint is kept at {kept}"
                                 if kept.exists() else "; no checkpoint had been saved yet")
            + ". Lower --learning-rate, or check the data for corrupt slices.")
    return history


def _load_for_resume(path, values, output_dir):
    """Loads a checkpoint to resume from after checking its hyperparameters match."""
    import keras

    saved = hyperparameters.load(output_dir)
    hyperparameters.check_compatible(saved, values, output_dir)
    return keras.saving.load_model(path)


def train_vqvae(values, splits, output_dir, resume=False, strategy=None, extra_callbacks=()):
    """Fits the VQ-VAE on splits["train"], validating on splits["validate"]."""
    import keras

    import dataset
    import modules

    output_dir = pathlib.Path(output_dir)
    checkpoint = output_dir / VQVAE_FILE
    batch_size = values["batch_size"]
    scope = strategy.scope() if strategy else _null_scope()
    latest = resume_checkpoint(output_dir, VQVAE_FILE) if resume else None
    with scope:
        if latest is not None:
            model = _load_for_resume(latest, values, output_dir)
        else:
            model = modules.vqvae_from_hyperparameters(values)
            model.compile(optimizer=keras.optimizers.Adam(values["learning_rate"]))
    train_data = dataset.make_tf_dataset(splits["train"], batch_size, shuffle=True,
                                         seed=values["seed"], drop_remainder=bool(strategy),
                                         repeat=bool(values["steps_per_epoch"]))
    validation_data = dataset.make_tf_dataset(splits["validate"], batch_size, shuffle=False)
    validation = splits["validate"]
    shown = np.linspace(0, len(validation) - 1, min(6, len(validation))).round().astype(int)
    frames = progress_frames_callback(validation.images[shown], output_dir / "progress",
                                      pathlib.Path(values["images_dir"]) / "training_progress.gif")
    _fit(model, "vqvae", train_data, validation_data, values, values["epochs"], batch_size,
         output_dir, VQVAE_FILE, resume, [frames, *extra_callbacks], values["patience"])
    _report_best(output_dir, "vqvae")
    plot_training_curves(output_dir, "vqvae", values["images_dir"])
    return keras.saving.load_model(checkpoint) if checkpoint.exists() else model


def _fingerprint(vqvae_path, splits, values):
    """A hash of everything the cached code grids depend on: the VQ-VAE checkpoint's bytes, the
    images and slice indices of every split, and the augmentation settings."""
    digest = hashlib.sha256()
    if pathlib.Path(vqvae_path).exists():
        with open(vqvae_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    for name in ("train", "validate", "test"):
        digest.update(np.ascontiguousarray(splits[name].images).tobytes())
        digest.update(np.asarray(splits[name].slice_index, np.int64).tobytes())
    settings = [values.get(key) for key in ("prior_augment_copies", "prior_augment_shift", "seed")]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def _encode(vqvae, images, batch_size=64):
    """Code grids [N, g, g] int32 of `images`, in batches."""
    import keras

    grids = [keras.ops.convert_to_numpy(vqvae.encode(images[start:start + batch_size]))
             for start in range(0, len(images), batch_size)]
    return np.concatenate(grids).astype(np.int32)


def encode_splits(vqvae, splits, output_dir, values=None):
    """Code grids of every split, computed once with the frozen VQ-VAE and cached on disk.

    With `prior_augment_copies` > 0 the training split is also encoded that many more times,
    flipped left-right and/or shifted (`dataset.flip_and_shift`): code grids that the VQ-VAE
    gives for slightly different real slices, valid training data for the prior, under
    "train_augmented" (the original grids first). The cache (`codes.npz`) is reused only while
    its fingerprint (the VQ-VAE checkpoint's bytes, every split's images and slice indices,
    the augmentation settings) matches; otherwise it is rebuilt.

    Returns:
        {split: (code_indices [N, g, g] int32, slice_index [N] int32)} for "train",
        "validate", "test" and "train_augmented".
    """
    import dataset

    values = dict(hyperparameters.DEFAULTS, **(values or {}))
    names = ("train", "validate", "test", "train_augmented")
    cache = pathlib.Path(output_dir) / CODES_FILE
    fingerprint = _fingerprint(pathlib.Path(output_dir) / VQVAE_FILE, splits, values)
    if cache.is_file():
        with np.load(cache) as stored:
            if "fingerprint" in stored and str(stored["fingerprint"]) == fingerprint:
                return {name: (stored[f"{name}_codes"], stored[f"{name}_slices"])
                        for name in names}
    encoded, arrays = {}, {"fingerprint": np.array(fingerprint)}
    for name in ("train", "validate", "test"):
        encoded[name] = (_encode(vqvae, splits[name].images),
                         np.asarray(splits[name].slice_index, np.int32))
    codes, slices = encoded["train"]
    copies = values["prior_augment_copies"]
    if copies:
        images = dataset.flip_and_shift(splits["train"].images, copies,
                                        values["prior_augment_shift"], seed=values["seed"])
        codes = np.concatenate([codes, _encode(vqvae, images)])
        slices = np.concatenate([slices, np.tile(slices, copies)])
    encoded["train_augmented"] = (codes, slices)
    for name in names:
        arrays[f"{name}_codes"], arrays[f"{name}_slices"] = encoded[name]
    partial = cache.with_name("codes.partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, cache)
    return encoded


def code_dataset(codes, slices, batch_size, shuffle, seed=0, repeat=False):
    """tf.data of ((code grids, slice index), code grids) for fitting the prior."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(((codes, slices), codes)).cache()
    if shuffle:
        data = data.shuffle(len(codes), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        data = data.repeat()
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_prior(values, splits, output_dir, resume=False, strategy=None, extra_callbacks=()):
    """Fits the PixelCNN prior on the frozen VQ-VAE's code grids; returns the prior and the
    test-split negative log-likelihood in bits per code."""
    import keras

    import modules

    output_dir = pathlib.Path(output_dir)
    vqvae_path = output_dir / VQVAE_FILE
    if not vqvae_path.is_file():
        raise FileNotFoundError(f"{vqvae_path} not found: train the VQ-VAE first "
                                f"(`python train.py --stage vqvae --output-dir {output_dir}`)")
    vqvae = keras.saving.load_model(vqvae_path)
    hyperparameters.check_model(vqvae, values, vqvae_path)
    codes = encode_splits(vqvae, splits, output_dir, values)
    checkpoint = output_dir / PRIOR_FILE
    scope = strategy.scope() if strategy else _null_scope()
    latest = resume_checkpoint(output_dir, PRIOR_FILE) if resume else None
    with scope:
        if latest is not None:
            prior = _load_for_resume(latest, values, output_dir)
        else:
            prior = modules.prior_from_hyperparameters(values, vqvae.grid_size)
            prior.compile(optimizer=prior_optimizer(values),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=[modules.BitsPerCode()])
    batch_size = values["prior_batch_size"]
    # The augmented grids widen the pool an epoch draws from, not the epoch: an epoch stays one
    # pass's worth of the real training grids, so augmentation costs no extra training time.
    steps = values["steps_per_epoch"] or math.ceil(len(codes["train"][0]) / batch_size)
    train_data = code_dataset(*codes["train_augmented"], batch_size, shuffle=True,
                              seed=values["seed"], repeat=True)
    validation_data = code_dataset(*codes["validate"], batch_size, shuffle=False)
    _fit(prior, "prior", train_data, validation_data, dict(values, steps_per_epoch=steps),
         values["prior_epochs"], batch_size, output_dir, PRIOR_FILE, resume, extra_callbacks,
         values["prior_patience"])
    _report_best(output_dir, "prior")
    plot_training_curves(output_dir, "prior", values["images_dir"])
    if checkpoint.exists():
        prior = keras.saving.load_model(checkpoint)
    test = prior.evaluate(code_dataset(*codes["test"], batch_size, shuffle=False), verbose=0,
                          return_dict=True)
    return prior, float(test["bits_per_code"])


def prior_optimizer(values):
    """AdamW with the prior's learning rate and weight decay (plain Adam when the decay is 0)."""
    import keras

    if values["prior_weight_decay"] > 0:
        return keras.optimizers.AdamW(values["prior_learning_rate"],
                                      weight_decay=values["prior_weight_decay"])
    return keras.optimizers.Adam(values["prior_learning_rate"])


def _report_best(output_dir, stage):
    entry = read_state(output_dir).get(stage, {})
    if "best_epoch" in entry:
        print(f"{stage}: kept the best epoch, {entry['best_epoch']} of {entry['epochs_done']} "
              f"({entry['monitor']} {entry['best_value']:.4f})")


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_strategy(name):
    """The `tf.distribute` strategy for --strategy (None for a single device)."""
    if name == "none":
        return None
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise SystemExit("error: --strategy multiworker needs TF_CONFIG describing the "
                             "cluster (see the README's section on long runs)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise SystemExit(f"error: unknown --strategy {name!r}; use none, mirrored or multiworker")


def set_precision(mixed):
    """float32, or mixed precision: float16 compute on a GPU, bfloat16 on a CPU."""
    import keras

    if not mixed:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    import tensorflow as tf

    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=("vqvae", "prior", "all"), default="all",
                        help="which stage to train (default: all = vqvae then prior)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in --output-dir")
    hyperparameters.add_arguments(parser)
    return parser.parse_args(argv)


def prepare_output_dir(values, resume):
    """Creates the output folder and saves the run's hyperparameters in it; with `resume`,
    first checks they match the ones the checkpoints there were trained with."""
    output_dir = pathlib.Path(values["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    if resume and (output_dir / hyperparameters.HYPERPARAMETERS_FILE).exists():
        hyperparameters.check_compatible(hyperparameters.load(output_dir), values, output_dir)
    hyperparameters.save(values, output_dir)
    return output_dir


def main(argv=None):
    args = parse_args(argv)
    values = hyperparameters.resolve(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import dataset

    keras.utils.set_random_seed(values["seed"])
    strategy = make_strategy(values["strategy"])
    policy = set_precision(values["mixed_precision"])
    if strategy is not None or policy != "float32":
        replicas = strategy.num_replicas_in_sync if strategy else 1
        print(f"strategy: {values['strategy']} ({replicas} replica(s)), precision: {policy}")
    try:
        output_dir = prepare_output_dir(values, args.resume)
        splits, description = dataset.load_splits_for(values)
        print(description)
        if args.stage in ("vqvae", "all"):
            train_vqvae(values, splits, output_dir, resume=args.resume, strategy=strategy)
            print(f"VQ-VAE saved to {output_dir / VQVAE_FILE}, log in {output_dir / 'vqvae_log.csv'}")
        if args.stage in ("prior", "all"):
            _, test_bits = train_prior(values, splits, output_dir, resume=args.resume,
                                       strategy=strategy)
            print(f"prior saved to {output_dir / PRIOR_FILE}, log in {output_dir / 'prior_log.csv'}; "
                  f"test-split NLL {test_bits:.3f} bits per code "
                  f"(uniform: {math.log2(values['num_codes']):.1f})")
    except (TrainingFailed, hyperparameters.IncompatibleCheckpoint,
            dataset.DatasetError) as failure:
        sys.exit(f"error: {failure}")


if __name__ == "__main__":
    main()
