"""Train the VQ-VAE, then the PixelCNN prior over its frozen code grids.

    python train.py                       # both stages on the default data (demo if no OASIS)
    python train.py --stage vqvae --data-dir /data/keras_png_slices_data --image-size 256
    python train.py --resume              # continue an interrupted run from its last checkpoint

Everything lands in --output-dir: `vqvae.keras`, `prior.keras`, `hyperparameters.json`,
`vqvae_log.csv`, `prior_log.csv` and `codes.npz` (the cached code grids of every split).
"""
import hashlib
import json
import math
import os
import pathlib
import shlex
import sys

import numpy as np

import console
import errors
import hyperparameters
import runs

from runs import (CODES_FILE, PRIOR_FILE, STATE_FILE, VQVAE_FILE,  # noqa: F401 (re-exported)
                  epochs_done, last_checkpoint_name, read_state)


def plot_training_curves(output_dir, stage, images_dir):
    """Loss curves (linear and log scale) of a stage's CSV log, as `images/<stage>_loss.png`."""
    import figures

    log = pathlib.Path(output_dir) / f"{stage}_log.csv"
    if log.is_file() and len(log.read_text().splitlines()) > 1:
        return figures.plot_loss_curves(log, pathlib.Path(images_dir) / f"{stage}_loss.png")
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
         checkpoint_file, resume, extra_callbacks=(), patience=0, done=None, record=None):
    """Runs `model.fit` with checkpointing (latest and best epoch), early stopping after
    `patience` epochs without a better validation loss (0: never), CSV logging and the NaN
    guard; returns the history.

    With `resume`, training continues after epoch `done` (default: the epochs the state file
    records); `record` is stored in the stage's state (fingerprints of what it is trained on).
    """
    import keras

    import callbacks as training_callbacks

    output_dir = pathlib.Path(output_dir)
    if done is None:
        done = epochs_done(output_dir, stage) if resume else 0
    log_path = output_dir / f"{stage}_log.csv"
    if done:
        trim_log(log_path, done)
    else:  # a fresh start of this stage forgets an earlier run's progress (not other stages')
        state = read_state(output_dir)
        if state.pop(stage, None) is not None:
            runs.write_state(output_dir, state)
    nan_guard = training_callbacks.StopOnNonFinite(stage)
    callbacks = [
        nan_guard,
        training_callbacks.Throughput(batch_size),
        *extra_callbacks,
        keras.callbacks.CSVLogger(str(log_path), append=done > 0),
        training_callbacks.AtomicCheckpoint(output_dir, checkpoint_file, stage, patience, record),
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
                        initial_epoch=done, steps_per_epoch=steps, callbacks=callbacks,
                        shuffle=False, verbose="auto" if sys.stdout.isatty() else 2)
    if nan_guard.failure:
        kept = output_dir / checkpoint_file
        raise TrainingFailed(
            nan_guard.failure + (f"; the last good checkpoint is kept at {kept}"
                                 if kept.exists() else "; no checkpoint had been saved yet")
            + ". Lower --learning-rate, or check the data for corrupt slices.")
    return history


def _load_for_resume(output_dir, stage, values):
    """The checkpoint to resume `stage` from, and the epochs it holds: the latest epoch's, or,
    when that file is corrupt, the one it replaced, or the best epoch's (each fallback is
    printed). (None, 0) when the stage has no checkpoint yet."""
    saved = hyperparameters.load(output_dir)
    hyperparameters.check_compatible(saved, values, output_dir)
    candidates = runs.resume_candidates(output_dir, stage)
    for number, (path, epochs) in enumerate(candidates):
        try:
            model = runs.load_checkpoint(path)
        except runs.CorruptCheckpoint as error:
            following = candidates[number + 1][0] if number + 1 < len(candidates) else None
            print(f"warning: {error}; " + (f"resuming from {following} instead"
                                            if following else "no other checkpoint is left"),
                  file=sys.stderr)
            continue
        hyperparameters.check_model(model, values, path)
        return model, epochs
    if candidates:
        raise runs.RunError(f"no loadable {stage} checkpoint in {output_dir}: start this stage "
                            f"again with --overwrite")
    return None, 0


def train_vqvae(values, splits, output_dir, resume=False, strategy=None, extra_callbacks=()):
    """Fits the VQ-VAE on splits["train"], validating on splits["validate"]."""
    import dataset
    import modules
    import perceptual

    import callbacks

    output_dir = pathlib.Path(output_dir)
    checkpoint = output_dir / VQVAE_FILE
    batch_size = values["batch_size"]
    scope = strategy.scope() if strategy else _null_scope()
    with scope:
        model, done = _load_for_resume(output_dir, "vqvae", values) if resume else (None, 0)
        if model is None:
            model = modules.vqvae_from_hyperparameters(values)
            model.compile(optimizer=modules.vqvae_optimizer(values))
        perceptual.attach_feature_network(model, values)
    train_data = dataset.make_dataset(splits["train"], batch_size, shuffle=True,
                                      seed=values["seed"], drop_remainder=bool(strategy),
                                      repeat=bool(values["steps_per_epoch"]))
    validation_data = dataset.make_dataset(splits["validate"], batch_size, shuffle=False)
    validation = splits["validate"]
    shown = np.linspace(0, len(validation) - 1, min(6, len(validation))).round().astype(int)
    frames = callbacks.ProgressFrames(validation.images[shown], output_dir / "progress",
                                      pathlib.Path(values["images_dir"]) / "training_progress.gif")
    _fit(model, "vqvae", train_data, validation_data, values, values["epochs"], batch_size,
         output_dir, VQVAE_FILE, resume, [frames, *extra_callbacks], values["patience"],
         done=done, record={"data_fingerprint": runs.data_fingerprint(splits)})
    _report_best(output_dir, "vqvae")
    plot_training_curves(output_dir, "vqvae", values["images_dir"])
    return runs.load_checkpoint(checkpoint) if checkpoint.exists() else model


def _fingerprint(vqvae_path, splits, values):
    """A hash of everything the cached code grids depend on: the VQ-VAE checkpoint's bytes, the
    images and slice indices of every split, and the augmentation settings."""
    digest = hashlib.sha256(str(runs.file_fingerprint(vqvae_path)).encode())
    for name in ("train", "validate", "test"):
        digest.update(np.ascontiguousarray(splits[name].images).tobytes())
        digest.update(np.asarray(splits[name].slice_index, np.int64).tobytes())
    settings = [values.get(key) for key in ("prior_augment_copies", "prior_augment_shift", "seed")]
    # Appended only when set, so caches written before these two settings existed stay valid.
    settings += [values[key] for key in ("prior_augment_rotation", "prior_augment_scale")
                 if values.get(key)]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def encode_splits(vqvae, splits, output_dir, values=None):
    """Code grids of every split, computed once with the frozen VQ-VAE and cached on disk.

    With `prior_augment_copies` > 0 the training split is also encoded that many more times,
    flipped left-right, shifted and optionally rotated and scaled (`dataset.flip_and_shift`):
    code grids that the VQ-VAE gives for slightly different real slices, valid training data
    for the prior, under
    "train_augmented" (the original grids first). The cache (`codes.npz`) is reused only while
    its fingerprint (the VQ-VAE checkpoint's bytes, every split's images and slice indices,
    the augmentation settings) matches; otherwise it is rebuilt.

    Returns:
        {split: (code_indices [N, g, g] int32, slice_index [N] int32)} for "train",
        "validate", "test" and "train_augmented".
    """
    import dataset
    import inference

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
        encoded[name] = (inference.encode_all(vqvae, splits[name].images,
                                              what=f"{name} slices"),
                         np.asarray(splits[name].slice_index, np.int32))
    codes, slices = encoded["train"]
    copies = values["prior_augment_copies"]
    if copies:
        images = dataset.flip_and_shift(splits["train"].images, copies,
                                        values["prior_augment_shift"], seed=values["seed"],
                                        max_rotation=values["prior_augment_rotation"],
                                        max_scale=values["prior_augment_scale"])
        augmented = inference.encode_all(vqvae, images, what="augmented training slices")
        codes = np.concatenate([codes, augmented])
        slices = np.concatenate([slices, np.tile(slices, copies)])
    encoded["train_augmented"] = (codes, slices)
    for name in names:
        arrays[f"{name}_codes"], arrays[f"{name}_slices"] = encoded[name]
    partial = cache.with_name("codes.partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, cache)
    return encoded


def code_dataset(codes, slices, batch_size, shuffle, seed=0, repeat=False):
    """Batches of ((code grids, slice index), code grids) for fitting the prior."""
    import input_pipeline

    return input_pipeline.batches(((codes, slices), codes), batch_size, shuffle, seed=seed,
                                  repeat=repeat)


def train_prior(values, splits, output_dir, resume=False, strategy=None, extra_callbacks=()):
    """Fits the PixelCNN prior on the frozen VQ-VAE's code grids; returns the prior and the
    test-split negative log-likelihood in bits per code."""
    import keras

    import modules

    output_dir = pathlib.Path(output_dir)
    vqvae_path = output_dir / VQVAE_FILE
    if not vqvae_path.is_file():
        raise runs.RunError(f"{vqvae_path} not found: train the VQ-VAE first "
                            f"(`python train.py --stage vqvae --output-dir {output_dir}`)")
    vqvae = runs.load_checkpoint(vqvae_path)
    hyperparameters.check_model(vqvae, values, vqvae_path)
    if resume and read_state(output_dir).get("prior"):
        runs.check_prior_matches_vqvae(output_dir)
    codes = encode_splits(vqvae, splits, output_dir, values)
    checkpoint = output_dir / PRIOR_FILE
    scope = strategy.scope() if strategy else _null_scope()
    with scope:
        prior, done = _load_for_resume(output_dir, "prior", values) if resume else (None, 0)
        if prior is None:
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
    positions = np.bincount(codes["train"][1], minlength=values["num_slice_positions"])
    record = {"data_fingerprint": runs.data_fingerprint(splits),
              "vqvae_fingerprint": runs.file_fingerprint(vqvae_path),
              "slice_position_counts": positions.tolist()}  # unconditional samples draw these
    if getattr(prior.optimizer, "use_ema", False):  # as built, or as the checkpoint's was
        import callbacks as training_callbacks

        extra_callbacks = [training_callbacks.AveragedWeights(resumed=done > 0),
                           *extra_callbacks]
    _fit(prior, "prior", train_data, validation_data, dict(values, steps_per_epoch=steps),
         values["prior_epochs"], batch_size, output_dir, PRIOR_FILE, resume, extra_callbacks,
         values["prior_patience"], done=done, record=record)
    _report_best(output_dir, "prior")
    plot_training_curves(output_dir, "prior", values["images_dir"])
    if checkpoint.exists():
        prior = runs.load_checkpoint(checkpoint)
    prior.run_eagerly = values["run_eagerly"]
    test = prior.evaluate(code_dataset(*codes["test"], batch_size, shuffle=False), verbose=0,
                          return_dict=True)
    return prior, float(test["bits_per_code"])


def prior_optimizer(values):
    """AdamW with the prior's learning rate and weight decay (plain Adam when the decay is 0),
    keeping a moving average of the weights when `prior_weight_averaging` > 0."""
    import keras

    averaging = values["prior_weight_averaging"]
    options = {"use_ema": True, "ema_momentum": averaging} if averaging > 0 else {}
    if values["prior_weight_decay"] > 0:
        return keras.optimizers.AdamW(values["prior_learning_rate"],
                                      weight_decay=values["prior_weight_decay"], **options)
    return keras.optimizers.Adam(values["prior_learning_rate"], **options)


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
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"error: --strategy {name} needs the TensorFlow backend (it is "
                         f"tf.distribute); this run uses {keras.backend.backend()}: set "
                         f"KERAS_BACKEND=tensorflow, or leave --strategy none")
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
    policy = "mixed_float16" if has_gpu() else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def has_gpu():
    """Whether the Keras backend sees a GPU (TensorFlow, JAX or PyTorch)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def parse_args(argv=None):
    parser = hyperparameters.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=("vqvae", "prior", "all"), default="all",
                        help="which stage to train (default: all = vqvae then prior)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in --output-dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the stages being trained (and, for the VQ-VAE, the prior "
                             "trained over it) in an --output-dir that already holds them")
    parser.add_argument("--export", metavar="DIR", default=None,
                        help="train nothing: write the trained run in --output-dir as a shipped "
                             "model folder DIR (both models without optimizer state, "
                             "hyperparameters, state with file hashes, logs, MODEL_CARD.md); "
                             "with --overwrite it replaces a model there")
    console.add_verbose_flag(parser)
    hyperparameters.add_arguments(parser)
    return parser.parse_args(argv)


def stages_of(stage):
    return ("vqvae", "prior") if stage == "all" else (stage,)


def check_run_folder(output_dir, stages, values, resume, overwrite):
    """Refuses, before anything in the folder is written, a run that would overwrite or mix
    work: a stage already there without --resume or --overwrite, a VQ-VAE retrained under a
    prior that would go stale, a prior stage without a VQ-VAE, and hyperparameters that do not
    match the checkpoints kept.

    Returns:
        The stages --overwrite will clear.
    """
    output_dir = pathlib.Path(output_dir)
    if resume and overwrite:
        raise runs.RunError("--resume and --overwrite exclude each other: --resume continues the "
                            "run in --output-dir, --overwrite replaces it")
    existing = [stage for stage in ("vqvae", "prior") if runs.has_stage(output_dir, stage)]
    affected = list(stages) + (["prior"] if "vqvae" in stages and "prior" not in stages else [])
    clashes = [stage for stage in affected if stage in existing]
    if clashes and not (resume or overwrite):
        files = ", ".join(path.name for stage in clashes
                          for path in runs.stage_files(output_dir, stage)) or STATE_FILE
        raise runs.RunError(
            f"{output_dir} already holds a trained {' and '.join(clashes)} stage ({files}); "
            f"nothing was changed. Continue it with --resume, replace it with --overwrite, or "
            f"train into another --output-dir")
    saved_file = output_dir / hyperparameters.HYPERPARAMETERS_FILE
    keeps_vqvae = "vqvae" not in stages or resume
    if keeps_vqvae and saved_file.exists():
        saved = hyperparameters.load(output_dir)
        keys = None if resume else hyperparameters.VQVAE_KEYS
        hyperparameters.check_compatible(saved, values, output_dir, keys=keys)
        changes = hyperparameters.resume_changes(saved, values) if resume else ()
        if "vqvae" not in stages:  # the prior stage neither uses nor records them
            changes = [change for change in changes
                       if change[0] not in hyperparameters.VQVAE_TRAINING_KEYS]
        for key, before, now in changes:
            # --resume starts from the defaults and the flags given, not from the saved values
            print(f"warning: --resume continues {output_dir} with {key} = {now!r}; it was "
                  f"trained with {before!r} (pass --{key.replace('_', '-')} {before} to keep "
                  f"it)", file=sys.stderr)
    if resume and stages == ("vqvae",) and runs.has_stage(output_dir, "prior") \
            and vqvae_trains_on(output_dir, values):
        raise runs.RunError(
            f"training the VQ-VAE in {output_dir} on (to --epochs {values['epochs']}) would "
            f"leave its prior trained over the earlier VQ-VAE, whose codes the new one no longer "
            f"makes; nothing was changed. Either train both on (the prior is retrained over the "
            f"new VQ-VAE): python train.py --resume --epochs {values['epochs']} --output-dir "
            f"{shlex.quote(str(output_dir))}; or keep this VQ-VAE and train only the prior on: "
            f"python train.py --stage prior --resume --prior-epochs N --output-dir "
            f"{shlex.quote(str(output_dir))}")
    if "vqvae" not in stages and not (output_dir / VQVAE_FILE).is_file():
        raise runs.RunError(f"{output_dir / VQVAE_FILE} not found: train the VQ-VAE first "
                            f"(`python train.py --stage vqvae --output-dir {output_dir}`)")
    return clashes if overwrite else []


def vqvae_trains_on(output_dir, values):
    """Whether a resumed VQ-VAE stage would train more epochs (and so replace `vqvae.keras`)."""
    entry = read_state(output_dir).get("vqvae", {})
    return (entry.get("epochs_done", 0) < values["epochs"]
            and not entry.get("stopped_early", False))


def record_of(values, output_dir, stages):
    """The hyperparameters to save in `output_dir`: `values`, except that a prior stage over a
    VQ-VAE already there keeps how that VQ-VAE was trained (its epochs, learning rate, losses:
    `VQVAE_TRAINING_KEYS`) as the folder recorded them, not this command's defaults."""
    saved_file = pathlib.Path(output_dir) / hyperparameters.HYPERPARAMETERS_FILE
    if "vqvae" in stages or not saved_file.is_file():
        return values
    saved = hyperparameters.load(output_dir)
    return dict(values, **{key: saved[key] for key in hyperparameters.VQVAE_TRAINING_KEYS})


def check_same_data(output_dir, stages, splits, resume, data_dir):
    """With --resume, refuses a stage whose recorded data differ from the data loaded now."""
    if not resume:
        return
    state = read_state(output_dir)
    current = runs.data_fingerprint(splits)
    for stage in stages:
        recorded = state.get(stage, {}).get("data_fingerprint")
        if recorded is not None and recorded != current:
            raise runs.RunError(
                f"the {stage} stage in {output_dir} was trained on other data than "
                f"--data-dir {data_dir} gives now (another file list or split): resume with "
                f"the same --data-dir and --seed, or start again with --overwrite")


def interrupted_message(output_dir, stages, command):
    """The one line Ctrl-C ends with: where the last checkpoint is and how to continue."""
    for stage in reversed(stages):
        done = epochs_done(output_dir, stage)
        if done:
            last = pathlib.Path(output_dir) / last_checkpoint_name(runs.STAGE_FILES[stage])
            break
    else:
        return (f"interrupted before the first checkpoint; nothing to resume in {output_dir} "
                f"(rerun the same command)")
    resume = command if "--resume" in command else command + " --resume"
    return (f"interrupted: the last checkpoint is {last} ({stage} stage, epoch {done}); "
            f"continue with: {resume}")


def main(argv=None):
    args = parse_args(argv)
    command = "python train.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        values = run_values(args)
    except (runs.RunError, hyperparameters.InvalidHyperparameters, FileNotFoundError) as failure:
        sys.exit(f"error: {failure}")
    if hyperparameters.combination_problem(values):
        sys.exit(f"error: {hyperparameters.combination_problem(values)}")
    console.quiet_start(args.verbose)
    output_dir = pathlib.Path(values["output_dir"])
    if args.export is not None:
        return export(output_dir, args.export, args.overwrite)
    stages = stages_of(args.stage)
    try:
        runs.check_writable(output_dir, "--output-dir")
        runs.check_writable(values["images_dir"], "--images-dir")
        with runs.RunLock(output_dir):
            _train(args, values, output_dir, stages, command)
    except (TrainingFailed, hyperparameters.IncompatibleCheckpoint,
            hyperparameters.InvalidHyperparameters, runs.RunError, errors.DatasetError,
            errors.WeightsUnavailable, errors.OutputBlocked) as failure:
        sys.exit(f"error: {failure}")


def run_values(args):
    """The values this command trains with: the defaults and the flags given; with --resume,
    the run's saved values and the flags given (so only a flag given can differ). A data folder
    that exists, and the figures folder, are recorded as absolute paths, so the run finds them
    from any directory (a resumed run keeps the data path it recorded: its data fingerprint
    holds the paths as given)."""
    values = hyperparameters.resolve(args)
    output_dir = pathlib.Path(values["output_dir"])
    if args.resume and args.export is None:
        if not (output_dir / hyperparameters.HYPERPARAMETERS_FILE).is_file():
            what = "does not exist" if not output_dir.exists() else "holds no run"
            raise runs.RunError(f"nothing to resume: {output_dir} {what}. Drop --resume to "
                                f"start a run there, or point --output-dir at a run folder")
        saved = hyperparameters.load(output_dir)
        saved["data_dir"] = runs.data_dir_for(saved, output_dir)
        if not os.path.isabs(saved["images_dir"] or ""):  # relative to where it was trained
            saved["images_dir"] = ""  # -> the run's own figures folder
        values = hyperparameters.resolve(args, base=dict(saved, output_dir=str(output_dir)))
    else:
        data_dir = values["data_dir"]
        if data_dir != hyperparameters.DEFAULTS["data_dir"] and os.path.exists(data_dir):
            values["data_dir"] = os.path.abspath(data_dir)
    values["images_dir"] = os.path.abspath(values["images_dir"])
    return values


def export(output_dir, destination, overwrite):
    """--export: the run in `output_dir` written as a shipped model folder (pretrained.py)."""
    import pretrained

    try:
        written = pretrained.export(output_dir, destination, overwrite=overwrite)
    except (runs.RunError, hyperparameters.InvalidHyperparameters, FileNotFoundError) as failure:
        sys.exit(f"error: {failure}")
    size = sum(path.stat().st_size for path in written) / 1e6
    print(f"exported {output_dir} to {destination} ({size:.1f} MB): "
          + ", ".join(path.name for path in written))


def check_data_flags(args, values):
    """Refuses flags that only NIfTI volumes use (cutting, cropping, the subject split) when
    the data are slices already cut, so that no ignored value is recorded as if it was used."""
    import dataset

    layout = dataset.data_layout(values["data_dir"])
    given = hyperparameters.given_flags(args)
    ignored = [key for key in dataset.VOLUME_ONLY_KEYS if key in given]
    if layout != "nifti-volumes" and ignored:
        flags = ", ".join("--" + key.replace("_", "-") for key in ignored)
        held = {"demo": "the embedded demo data", "png": "slices in the OASIS PNG layout",
                "nifti-slices": "2D NIfTI slices"}[layout]
        raise runs.RunError(f"{flags} only apply to a folder of 3D NIfTI volumes, and "
                            f"{values['data_dir']} holds {held}, already cut and split: drop "
                            f"{flags}")


def _train(args, values, output_dir, stages, command):
    """Everything main() does once the folder is locked."""
    check_data_flags(args, values)
    clear = check_run_folder(output_dir, stages, values, args.resume, args.overwrite)
    import keras

    import dataset

    keras.utils.set_random_seed(values["seed"])
    strategy = make_strategy(values["strategy"])
    policy = set_precision(values["mixed_precision"])
    if strategy is not None or policy != "float32":
        replicas = strategy.num_replicas_in_sync if strategy else 1
        print(f"strategy: {values['strategy']} ({replicas} replica(s)), precision: {policy}")
    splits, description = dataset.load_splits_for(values)
    print(description)
    check_same_data(output_dir, stages, splits, args.resume, values["data_dir"])
    for stage in clear:
        runs.clear_stage(output_dir, stage)
        print(f"--overwrite: removed the earlier {stage} stage from {output_dir}")
    hyperparameters.save(record_of(values, output_dir, stages), output_dir)
    try:
        if "vqvae" in stages:
            train_vqvae(values, splits, output_dir, resume=args.resume, strategy=strategy)
            print(f"VQ-VAE saved to {output_dir / VQVAE_FILE}, log in "
                  f"{output_dir / 'vqvae_log.csv'}")
        if "prior" in stages:
            resume_prior = args.resume
            if args.resume and "vqvae" in stages and read_state(output_dir).get("prior"):
                try:
                    runs.check_prior_matches_vqvae(output_dir)
                except runs.RunError:
                    runs.clear_stage(output_dir, "prior")
                    resume_prior = False
                    print("the VQ-VAE trained on, so the prior trained over the earlier one is "
                          "trained again over the new one, from its first epoch")
            _, test_bits = train_prior(values, splits, output_dir, resume=resume_prior,
                                       strategy=strategy)
            print(f"prior saved to {output_dir / PRIOR_FILE}, log in "
                  f"{output_dir / 'prior_log.csv'}; test-split NLL {test_bits:.3f} bits per "
                  f"code (uniform: {math.log2(values['num_codes']):.1f})")
    except KeyboardInterrupt:
        sys.exit(interrupted_message(output_dir, stages, command))


if __name__ == "__main__":
    main()
