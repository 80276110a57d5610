"""The two training stages: the VQ-VAE on the slices, then the prior on its frozen code grids,
each a Keras `fit` with checkpoints of the best and the latest epoch, early stopping, a CSV log
and the NaN guard, resumable from its last epoch."""
from __future__ import annotations

import contextlib
import math
import pathlib
import sys
from typing import Any, Mapping

import keras
import numpy as np

from brainvq import config
from brainvq.config.schema import PriorConfig, TrainingConfig
from brainvq.data import augmentation, covariates, input_pipeline, pose
from brainvq.hints import Callbacks, PathLike, Splits, Values
from brainvq.losses import perceptual
from brainvq.models import build, prior_inputs
from brainvq.output import figures
from brainvq.runs import run_folder
from brainvq.runs.run_folder import (
    PRIOR_FILE,
    SNAPSHOTS_DIR,
    VQVAE_FILE,
    RunError,
    epochs_done,
    read_state,
)
from brainvq.training import callbacks
from brainvq.training.code_cache import code_dataset, encode_splits, measured_poses
from brainvq.training.slab_codes import slab_code_splits


class TrainingFailed(RuntimeError):
    """Training stopped on a non-finite loss; the message names the stage and epoch."""


def plot_training_curves(output_dir: PathLike, stage: str, images_dir: PathLike
                         ) -> pathlib.Path | None:
    """Loss curves (linear and log scale) of a stage's CSV log, as `images/<stage>_loss.png`."""
    log = pathlib.Path(output_dir) / f"{stage}_log.csv"
    if log.is_file() and len(log.read_text().splitlines()) > 1:
        return figures.plot_loss_curves(log, pathlib.Path(images_dir) / f"{stage}_loss.png")
    return None


def trim_log(path: PathLike, epochs: int) -> None:
    """Drops CSV log rows of epochs >= `epochs` (logged, but not checkpointed, before a kill)."""
    path = pathlib.Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < epochs]
    path.write_text("".join(kept))


def fit_stage(model: keras.Model, stage: str, train_data: Any, validation_data: Any,
              values: Values, epochs: int, batch_size: int, output_dir: PathLike,
              checkpoint_file: str, resume: bool, extra_callbacks: Callbacks = (),
              patience: int = 0, done: int | None = None,
              record: Mapping[str, Any] | None = None) -> keras.callbacks.History:
    """Runs `model.fit` with checkpointing (latest and best epoch), early stopping after
    `patience` epochs without a better validation loss (0: never), CSV logging and the NaN
    guard; returns the history.

    With `resume`, training continues after epoch `done` (default: the epochs the state file
    records); `record` is stored in the stage's state (fingerprints of what it is trained on).
    """
    output_dir = pathlib.Path(output_dir)
    if done is None:
        done = epochs_done(output_dir, stage) if resume else 0
    log_path = output_dir / f"{stage}_log.csv"
    if done:
        trim_log(log_path, done)
    else:  # a fresh start of this stage forgets an earlier run's progress (not other stages')
        state = read_state(output_dir)
        if state.pop(stage, None) is not None:
            run_folder.write_state(output_dir, state)
    nan_guard = callbacks.StopOnNonFinite(stage)
    fit_callbacks = [
        nan_guard,
        callbacks.Throughput(batch_size),
        *extra_callbacks,
        keras.callbacks.CSVLogger(str(log_path), append=done > 0),
        *callbacks.checkpoint_callbacks(output_dir, checkpoint_file, stage, patience, record),
    ]
    if done >= epochs:
        print(f"{stage}: all {epochs} epochs already done in {output_dir}")
        return None
    if done and read_state(output_dir).get(stage, {}).get("stopped_early"):
        print(f"{stage}: stopped early after epoch {done} (no better validation loss for "
              f"{patience} epochs) in {output_dir}")
        return None
    if done:
        print(f"{stage}: resuming after epoch {done} of {epochs}")
    steps = values["steps_per_epoch"] or None
    model.run_eagerly = values["run_eagerly"]  # a resumed model keeps its own otherwise
    # shuffle=False: the input pipeline shuffles (Keras would warn it ignores shuffle=True).
    history = model.fit(train_data, validation_data=validation_data, epochs=epochs,
                        initial_epoch=done, steps_per_epoch=steps, callbacks=fit_callbacks,
                        shuffle=False, verbose="auto" if sys.stdout.isatty() else 2)
    if nan_guard.failure:
        kept = output_dir / checkpoint_file
        raise TrainingFailed(
            nan_guard.failure + (f"; the last good checkpoint is kept at {kept}"
                                 if kept.exists() else "; no checkpoint had been saved yet")
            + ". Lower --learning-rate, or check the data for corrupt slices.")
    return history


def load_for_resume(output_dir: PathLike, stage: str, values: Values,
                    model_values: Values | None = None) -> tuple[keras.Model | None, int]:
    """The checkpoint to resume `stage` from, and the epochs it holds: the latest epoch's, or,
    when that file is corrupt, the one it replaced, or the best epoch's (each fallback is
    printed), checked against `model_values` (default: the run's values, a prior's as
    `config.prior_values` gives them). (None, 0) when the stage has no checkpoint yet."""
    saved = config.load(output_dir)
    config.check_compatible(saved, values, output_dir)
    if model_values is None:
        model_values = config.prior_values(values) if stage in ("prior", "volume") else values
    candidates = run_folder.resume_candidates(output_dir, stage)
    recorded = read_state(output_dir).get(stage, {}).get("last_fingerprint")
    last_name = run_folder.last_checkpoint_name(run_folder.STAGE_FILES[stage])
    for number, (path, epochs) in enumerate(candidates):
        try:
            model = run_folder.load_checkpoint(path)
        except run_folder.CorruptCheckpoint as error:
            following = candidates[number + 1][0] if number + 1 < len(candidates) else None
            print(f"warning: {error}; " + (f"resuming from {following} instead"
                                            if following else "no other checkpoint is left"),
                  file=sys.stderr)
            continue
        if recorded and path.name == last_name and run_folder.file_fingerprint(path) != recorded:
            raise RunError(
                f"{path} is not the checkpoint {pathlib.Path(output_dir) / run_folder.STATE_FILE} "
                f"records for the {stage} stage (its sha256 differs: a file of another run, or "
                f"a state file copied from one): put back the run's own files, or start the "
                f"stage again with --overwrite")
        config.check_model(model, model_values, path)
        return model, epochs
    if candidates:
        raise RunError(f"no loadable {stage} checkpoint in {output_dir}: start this stage "
                       f"again with --overwrite")
    return None, 0


def train_vqvae(values: Values, splits: Splits, output_dir: PathLike, resume: bool = False,
                strategy: Any = None, extra_callbacks: Callbacks = ()) -> keras.Model:
    """Fits the VQ-VAE on splits["train"], validating on splits["validate"]."""
    output_dir = pathlib.Path(output_dir)
    checkpoint = output_dir / VQVAE_FILE
    training = TrainingConfig.from_values(values)
    batch_size = training.batch_size
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model, done = load_for_resume(output_dir, "vqvae", values) if resume else (None, 0)
        if model is None:
            model = build.vqvae_from_hyperparameters(values)
            model.compile(optimizer=build.vqvae_optimizer(values))
        perceptual.attach_feature_network(model, values)
    train_data = input_pipeline.make_dataset(splits["train"], batch_size, shuffle=True,
                                      seed=training.seed, drop_remainder=bool(strategy),
                                      repeat=bool(training.steps_per_epoch))
    validation_data = input_pipeline.make_dataset(splits["validate"], batch_size, shuffle=False)
    validation = splits["validate"]
    shown = np.linspace(0, len(validation) - 1, min(6, len(validation))).round().astype(int)
    frames = callbacks.ProgressFrames(validation.images[shown], output_dir / "progress",
                                      pathlib.Path(values["images_dir"]) / "training_progress.gif")
    fit_stage(model, "vqvae", train_data, validation_data, values, training.epochs, batch_size,
              output_dir, VQVAE_FILE, resume, [frames, *extra_callbacks], training.patience,
              done=done, record={"data_fingerprint": run_folder.data_fingerprint(splits)})
    report_best(output_dir, "vqvae")
    plot_training_curves(output_dir, "vqvae", values["images_dir"])
    return run_folder.load_checkpoint(checkpoint) if checkpoint.exists() else model


def frozen_vqvae(output_dir: PathLike, values: Values) -> keras.Model:
    """The run's trained VQ-VAE, which a prior stage trains over, checked against `values`.

    Raises:
        RunError: there is none yet (the message names the command that trains it).
    """
    vqvae_path = pathlib.Path(output_dir) / VQVAE_FILE
    if not vqvae_path.is_file():
        raise RunError(f"{vqvae_path} not found: train the VQ-VAE first "
                       f"(`python train.py --stage vqvae --output-dir {output_dir}`)")
    vqvae = run_folder.load_checkpoint(vqvae_path)
    config.check_model(vqvae, values, vqvae_path)
    return vqvae


def prior_codes(vqvae: keras.Model, splits: Splits, output_dir: PathLike, values: Values
                ) -> dict:
    """What the prior stages train on: the VQ-VAE's slice codes (`encode_splits`), or with
    `slab_depth` the slab codes of each stack (`slab_code_splits`: its "case_id" entry holds
    each row's subject)."""
    if not values.get("slab_depth"):
        return encode_splits(vqvae, splits, output_dir, values)
    codes = slab_code_splits(vqvae, splits, output_dir, values)
    codes["augmentation"] = np.zeros((len(codes["train_augmented"][0]),
                                      len(augmentation.AUGMENTATION_PARAMETERS)), np.float32)
    return codes


def train_prior(values: Values, splits: Splits, output_dir: PathLike, resume: bool = False,
                strategy: Any = None, extra_callbacks: Callbacks = ()
                ) -> tuple[keras.Model, float]:
    """Fits the PixelCNN prior on the frozen VQ-VAE's code grids; returns the prior and the
    test-split negative log-likelihood in bits per code."""
    output_dir = pathlib.Path(output_dir)
    settings = PriorConfig.from_values(values)
    vqvae_path = output_dir / VQVAE_FILE
    vqvae = frozen_vqvae(output_dir, values)
    if resume and read_state(output_dir).get("prior"):
        run_folder.check_prior_matches_vqvae(output_dir)
    data_fingerprint = run_folder.data_fingerprint(splits)
    covariate_specs, covariate_values = [], {}
    if values.get("condition_on"):
        splits, covariate_specs, covariate_values = covariates.for_splits(values, splits)
        copies = 1 + settings.augment_copies  # the augmented grids: `copies` passes
        covariate_values["train_augmented"] = np.tile(covariate_values["train"], (copies, 1))
    codes = prior_codes(vqvae, splits, output_dir, values)
    held_out = {}  # the held-out grids' augmentation input: none, or their measured poses
    slice_poses = None  # the training slices' (position, offset, tilt): --pose-spread draws them
    if settings.pose_condition and settings.augment_condition:
        poses = measured_poses(splits, output_dir, values)
        codes["augmentation"] = pose.with_poses(codes["augmentation"], poses["train_augmented"])
        held_out = {name: pose.with_poses(None, poses[name]) for name in ("validate", "test")}
        positions, count = codes["train"][1], len(codes["train"][1])
        slice_poses = pose.recorded_poses(positions, poses["train_augmented"][:count])
    pool = pooled(codes, covariate_values.get("train_augmented"), settings.original_weight)
    checkpoint = output_dir / PRIOR_FILE
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        prior, done = load_for_resume(output_dir, "prior", values) if resume else (None, 0)
        if prior is None:
            prior = build.prior_from_hyperparameters(values, vqvae.grid_size,
                                                     covariates=covariate_specs)
            if settings.init:
                initialise_from(prior, settings.init)
            compile_prior(prior, values)
    batch_size = settings.batch_size
    # The augmented grids widen the pool an epoch draws from, not the epoch: an epoch stays one
    # pass's worth of the real training grids, so augmentation costs no extra training time.
    steps = values["steps_per_epoch"] or math.ceil(len(codes["train"][0]) / batch_size)
    told = getattr(prior, "augmentation_inputs", 0)  # the prior is told the augmentation
    train_data = code_dataset(pool["codes"], pool["slices"], batch_size, shuffle=True,
                              seed=values["seed"], repeat=True, covariates=pool["covariates"],
                              augmentation=pool["augmentation"] if told else None)
    validation_data = code_dataset(*codes["validate"], batch_size, shuffle=False,
                                   covariates=covariate_values.get("validate"),
                                   augmentation=held_out.get("validate") if told else None)
    positions = np.bincount(codes["train"][1], minlength=values["num_slice_positions"])
    record = {"data_fingerprint": data_fingerprint, "covariates": covariate_specs,
              "vqvae_fingerprint": run_folder.file_fingerprint(vqvae_path),
              "slice_position_counts": positions.tolist()}  # unconditional samples draw these
    if slice_poses is not None:
        record["slice_poses"] = slice_poses
    if covariate_specs:  # and, with --unconditional-covariates drawn, these
        record["subject_covariates"] = covariates.subject_rows(
            splits["train"].case_id, covariate_values["train"]).tolist()
    if settings.snapshot_every:  # after the averaged weights are swapped in
        extra_callbacks = [callbacks.WeightSnapshots(output_dir / SNAPSHOTS_DIR, "prior",
                                                     settings.snapshot_every),
                           *extra_callbacks]
    if getattr(prior.optimizer, "use_ema", False):  # as built, or as the checkpoint's was
        extra_callbacks = [callbacks.AveragedWeights(resumed=done > 0),
                           *extra_callbacks]
    fit_stage(prior, "prior", train_data, validation_data, dict(values, steps_per_epoch=steps),
              settings.epochs, batch_size, output_dir, PRIOR_FILE, resume, extra_callbacks,
              settings.patience, done=done, record=record)
    report_best(output_dir, "prior")
    plot_training_curves(output_dir, "prior", values["images_dir"])
    if checkpoint.exists():
        prior = run_folder.load_checkpoint(checkpoint)
    prior.run_eagerly = values["run_eagerly"]
    test = prior.evaluate(code_dataset(*codes["test"], batch_size, shuffle=False,
                                       covariates=covariate_values.get("test"),
                                       augmentation=held_out.get("test") if told else None),
                          verbose=0, return_dict=True)
    return prior, float(test["bits_per_code"])


def pooled(codes: Mapping[str, Any], covariate_rows: np.ndarray | None,
           original_weight: int = 1) -> dict[str, np.ndarray | None]:
    """The pool the prior's training batches are drawn from: the training grids as they are
    `original_weight` times, then their augmented copies once ({"codes", "slices",
    "covariates" (None without), "augmentation"})."""
    grids, slices = codes["train_augmented"]
    augmentation = codes["augmentation"]
    originals = len(codes["train"][0])
    repeat = np.concatenate([np.tile(np.arange(originals), original_weight),
                             np.arange(originals, len(grids))])
    return {"codes": grids[repeat], "slices": slices[repeat], "augmentation": augmentation[repeat],
            "covariates": None if covariate_rows is None else covariate_rows[repeat]}


def initialise_from(prior: keras.Model, source: PathLike) -> None:
    """Copies into `prior` the weights of every layer it shares (by name, with the same shapes)
    with the prior checkpoint `source` (a .keras file, or a run folder holding prior.keras), and
    prints what it left at its initial values.

    Raises:
        RunError: `source` is no prior checkpoint, or shares no layer with `prior`.
    """
    path = pathlib.Path(source)
    if path.is_dir():
        path = path / PRIOR_FILE
    if not path.is_file():
        raise RunError(f"--prior-init {source}: no prior checkpoint there (give a "
                       f"prior.keras file or a run folder holding one)")
    trained = run_folder.load_checkpoint(path, compile=False)
    by_name = {layer.name: layer for layer in getattr(trained, "layers", [])}
    copied, kept = [], []
    for layer in prior.layers:
        source_layer = by_name.get(layer.name)
        weights = source_layer.get_weights() if source_layer is not None else None
        if weights and [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(weights)
            copied.append(layer.name)
        elif layer.weights:
            kept.append(layer.name)
    if not copied:
        raise RunError(f"--prior-init {source}: {path} shares no layer with this prior")
    print(f"prior: started from {path} ({len(copied)} layers"
          + (f"; new: {', '.join(kept)})" if kept else ")"))


def prior_optimizer(values: Values) -> keras.optimizers.Optimizer:
    """AdamW with the prior's learning rate and weight decay (plain Adam when the decay is 0),
    keeping a moving average of the weights when `prior_weight_averaging` > 0."""
    settings = PriorConfig.from_values(values)
    averaging = settings.weight_averaging
    options = {"use_ema": True, "ema_momentum": averaging} if averaging > 0 else {}
    if settings.weight_decay > 0:
        return keras.optimizers.AdamW(settings.learning_rate, weight_decay=settings.weight_decay,
                                      **options)
    return keras.optimizers.Adam(settings.learning_rate, **options)


def compile_prior(prior: keras.Model, values: Values) -> keras.Model:
    """`prior` compiled for training: cross-entropy over its logits, bits a code as the metric,
    `prior_optimizer(values)`; returns it."""
    prior.compile(optimizer=prior_optimizer(values),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[prior_inputs.BitsPerCode()])
    return prior


def report_best(output_dir: PathLike, stage: str) -> None:
    entry = read_state(output_dir).get(stage, {})
    if "best_epoch" in entry:
        print(f"{stage}: kept the best epoch, {entry['best_epoch']} of {entry['epochs_done']} "
              f"({entry['monitor']} {entry['best_value']:.4f})")
