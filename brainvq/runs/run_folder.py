"""Everything about a run folder: its files, atomic and verified saves, the training state, the
lock that keeps a second writer out, fingerprints of what each stage was trained on, and loading
a trained run. train.py, predict.py, similarity.py and benchmark.py share it instead of
importing one another.

A run folder (`--output-dir`) holds:

    hyperparameters.json     the values the run was trained with
    vqvae.keras              the VQ-VAE's best validation epoch (what predict.py loads)
    vqvae_last.keras         its latest epoch (what --resume continues from)
    prior.keras, prior_last.keras   the same for the PixelCNN prior
    *.previous.keras         the checkpoint each of those replaced, kept until the new one is
                             complete and verified (a corrupt checkpoint falls back to it)
    training_state.json      per stage: epochs done, best epoch, fingerprints of its data
                             (and, for the prior, of the VQ-VAE it was trained over, and how
                             many training slices each slice position has)
    codes.npz                the cached code grids; vqvae_log.csv, prior_log.csv; progress/
    .lock                    while a train.py process writes the folder: its pid and command
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from brainvq import config
from brainvq.hints import PathLike, Values
from brainvq.runs.checkpoints import (  # noqa: F401 (run_folder's names, as before)
    CorruptCheckpoint,
    RunError,
    copy_atomically,
    json_text,
    last_checkpoint_name,
    load_checkpoint,
    load_for_inference,
    previous_name,
    save_atomically,
    verify_checkpoint,
    write_json_atomically,
)
from brainvq.runs.fingerprints import (  # noqa: F401
    codebook_fingerprint,
    data_fingerprint,
    file_fingerprint,
)

if TYPE_CHECKING:
    import keras

VQVAE_FILE = "vqvae.keras"
PRIOR_FILE = "prior.keras"
CODES_FILE = "codes.npz"
SNAPSHOTS_DIR = "snapshots"  # a prior's weights every few epochs (--prior-snapshot-every)
STATE_FILE = "training_state.json"
LOCK_FILE = ".lock"
MODEL_CARD_FILE = "MODEL_CARD.md"  # a shipped model's card (pretrained.py)
FILES_KEY = "files"  # in a shipped model's training_state.json: sha256 of each shipped file
VOLUME_PRIOR_FILE = "volume_prior.keras"  # the prior of a slice given the slice below it
SLAB_FILE = "slab_autoencoder.keras"  # slice codes <-> slab codes (--slab-depth)
CONTEXT_FILE = "slice_context.keras"  # a stack's latents refined along its slices
VOLUME_VQVAE_FILE = "volume_vqvae.keras"  # whole stacks as 3D code grids (--volume-latent 3d)
STAGE_FILES = {"vqvae": VQVAE_FILE, "context": CONTEXT_FILE, "slab": SLAB_FILE,
               "prior": PRIOR_FILE, "volume_vqvae": VOLUME_VQVAE_FILE,
               "volume": VOLUME_PRIOR_FILE}


# ---------------------------------------------------------------------------------------------
# Training state
# ---------------------------------------------------------------------------------------------

def read_state(folder: PathLike) -> dict[str, Any]:
    """The training state file: {stage: {"epochs_done": N, ...}} ({} before the first epoch)."""
    path = pathlib.Path(folder) / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is not valid JSON ({error}); delete it and train with "
                       f"--overwrite, or restore it") from None


def write_state(folder: PathLike, state: Mapping[str, Any]) -> None:
    write_json_atomically(pathlib.Path(folder) / STATE_FILE, state)


def epochs_done(folder: PathLike, stage: str = "vqvae") -> int:
    """How many epochs of `stage` the latest checkpoint in `folder` holds."""
    return read_state(folder).get(stage, {}).get("epochs_done", 0)


def resume_candidates(folder: PathLike, stage: str) -> list[tuple[pathlib.Path, int]]:
    """Checkpoints --resume may continue from, newest first: [(path, epochs it holds)]."""
    folder = pathlib.Path(folder)
    entry = read_state(folder).get(stage, {})
    filename = STAGE_FILES[stage]
    last = folder / last_checkpoint_name(filename)
    done = entry.get("epochs_done", 0)
    candidates = [(last, done), (previous_name(last), done - 1),
                  (folder / filename, entry.get("best_epoch", done))]
    return [(path, epochs) for path, epochs in candidates if path.exists() and epochs > 0]


def stage_files(folder: PathLike, stage: str) -> list[pathlib.Path]:
    """The files of `stage` in `folder` that exist."""
    folder = pathlib.Path(folder)
    filename = STAGE_FILES[stage]
    names = [filename, last_checkpoint_name(filename), f"{stage}_log.csv"]
    paths = [folder / name for name in names]
    paths += [previous_name(path) for path in paths[:2]]
    return [path for path in paths if path.exists()]


def has_stage(folder: PathLike, stage: str) -> bool:
    """Whether `folder` holds a finished or partial `stage` (checkpoints, log or state)."""
    return bool(stage_files(folder, stage)) or stage in read_state(folder)


def clear_stage(folder: PathLike, stage: str) -> None:
    """Removes a stage's checkpoints, log and state (for --overwrite)."""
    for path in stage_files(folder, stage):
        path.unlink()
    state = read_state(folder)
    if state.pop(stage, None) is not None:
        write_state(folder, state)
    if stage == "vqvae":
        (pathlib.Path(folder) / CODES_FILE).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------


def check_prior_matches_vqvae(folder: PathLike, stage: str = "prior") -> None:
    """Raises RunError when the prior of `stage` ("prior" or "volume") was trained over another
    VQ-VAE than the one in `folder` now (its codes would be decoded by a decoder that never made
    them)."""
    folder = pathlib.Path(folder)
    record = read_state(folder).get(stage, {})
    source, recorded = VQVAE_FILE, record.get("vqvae_fingerprint")
    if "volume_codebook_fingerprint" in record:  # a prior over the volume VQ-VAE's 3D codes:
        source, recorded = VOLUME_VQVAE_FILE, record["volume_codebook_fingerprint"]
    if recorded is None:
        return  # a run from before fingerprints: nothing to compare
    if source == VOLUME_VQVAE_FILE:  # its encoder and codebook (a decoder may be tuned)
        path = folder / source
        now = codebook_fingerprint(load_for_inference(path)) if path.is_file() else None
    else:
        now = file_fingerprint(folder / source)
    if recorded != now:
        raise RunError(
            f"{folder / STAGE_FILES[stage]} was trained over another VQ-VAE than "
            f"{folder / source} (the VQ-VAE was retrained since): its codes belong to "
            f"another codebook. Retrain it: python train.py --stage {stage} --overwrite "
            f"--output-dir {folder}")


def is_shipped(folder: PathLike) -> bool:
    """Whether `folder` is a shipped model (pretrained.py): a model card and recorded hashes."""
    folder = pathlib.Path(folder)
    return (folder / MODEL_CARD_FILE).is_file() and FILES_KEY in read_state(folder)


def verify_shipped(folder: PathLike) -> None:
    """Raises RunError naming each file of a shipped model that is missing or whose bytes differ
    from the sha256 recorded when it was exported (a damaged download, an edited file)."""
    folder = pathlib.Path(folder)
    for name, digest in sorted(read_state(folder).get(FILES_KEY, {}).items()):
        path = folder / name
        actual = file_fingerprint(path)
        if actual is None:
            raise RunError(f"{path} is missing from the shipped model {folder}: restore the "
                           f"folder (e.g. `git checkout -- {folder}`)")
        if actual != digest:
            raise RunError(f"{path} is damaged: its sha256 differs from the one recorded when "
                           f"the model was exported. Restore it (e.g. `git checkout -- {path}`) "
                           f"or download the model again")


PATH_KEYS = ("data_dir", "covariates")  # the paths a run records (relative: to the run folder)


def run_paths(values: Values, folder: PathLike) -> Values:
    """`values` with each path a run records (`PATH_KEYS`) resolved: an absolute one as saved;
    a relative one relative to the run folder `folder` when it exists there, else kept as saved
    (relative to where the run was trained, as runs saved before this rule kept it)."""
    values = dict(values)
    for key in PATH_KEYS:
        path = values.get(key)
        if path and not os.path.isabs(path):
            beside_run = os.path.normpath(os.path.join(folder, path))
            values[key] = beside_run if os.path.exists(beside_run) else path
    return values


# ---------------------------------------------------------------------------------------------
# Output locations
# ---------------------------------------------------------------------------------------------

def check_writable(folder: PathLike, flag: str) -> None:
    """Raises RunError unless `folder` exists (or can be created) and accepts files."""
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise RunError(f"{flag} {folder} is not writable ({error.strerror or error}): choose "
                       f"another {flag}") from None


# ---------------------------------------------------------------------------------------------
# Loading a trained run
# ---------------------------------------------------------------------------------------------

def check_run_dir(output_dir: PathLike) -> pathlib.Path:
    """`output_dir` as a Path; RunError, naming it, when it is a file or does not exist."""
    output_dir = pathlib.Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RunError(f"--output-dir {output_dir} is a file, not a run folder: point "
                       f"--output-dir at the folder train.py wrote")
    if not output_dir.is_dir():
        raise RunError(f"run folder {output_dir} does not exist: train one with "
                       f"`python train.py --output-dir {output_dir}`, or point --output-dir at "
                       f"a folder train.py wrote")
    return output_dir


def load_run(output_dir: PathLike, overrides: Mapping[str, Any] | None = None
             ) -> tuple[Values, keras.Model]:
    """Loads a finished run: its hyperparameters and its VQ-VAE.

    Args:
        output_dir: the folder train.py wrote.
        overrides: values given on the command line; an architecture value that differs from
            the saved one is refused with a message naming both.

    Returns:
        (values, vqvae): the run's hyperparameters (updated with non-architecture overrides)
        and the loaded `VQVAETrainer`.
    """
    output_dir = check_run_dir(output_dir)
    if (output_dir / MODEL_CARD_FILE).is_file() and not (output_dir / STATE_FILE).is_file():
        raise RunError(f"{output_dir / STATE_FILE} is missing from the shipped model "
                       f"{output_dir} (it records the model's file hashes, slice positions and "
                       f"subjects): restore the folder (e.g. `git checkout -- {output_dir}`) "
                       f"or download the model again")
    if is_shipped(output_dir):
        verify_shipped(output_dir)
    values = config.load(output_dir)
    values = run_paths(values, output_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config.check_compatible(values, {**values, **overrides}, output_dir)
    recorded_by_name = not values.get("data_dir")  # a shipped model: --data-dir points at it
    values.update(overrides)
    if (recorded_by_name and values["data_dir"] and values.get("covariates")
            and not overrides.get("covariates")):
        # its covariates file, recorded by its path inside the data folder
        values["covariates"] = os.path.join(values["data_dir"], values["covariates"])
    checkpoint = output_dir / VQVAE_FILE
    if not checkpoint.is_file():
        raise RunError(f"{checkpoint} not found: train one with "
                       f"`python train.py --stage vqvae --output-dir {output_dir}`")
    vqvae = load_for_inference(checkpoint)  # to encode and decode: no optimizer
    config.check_model(vqvae, values, checkpoint)
    return values, vqvae


def check_stack_run(values: Mapping[str, Any], output_dir: PathLike) -> None:
    """Raises RunError unless the run was cut as whole stacks (what --volumes needs)."""
    if values.get("slice_spacing", 0) <= 0:
        raise RunError(f"--volumes needs a run cut as whole stacks, and {output_dir} was trained "
                       f"on slices placed one by one: train one with --slice-spacing 2 "
                       f"--slices-per-volume 64 --num-slice-positions 64")


def script_errors() -> tuple[type[Exception], ...]:
    """The errors a script (predict.py, similarity.py, benchmark.py) reports in one line, with
    no traceback: what a user's flags, data or files got wrong."""
    from brainvq import errors

    return (RunError, errors.DatasetError, config.IncompatibleCheckpoint,
            config.InvalidHyperparameters, errors.OutputBlocked, FileNotFoundError)


def slice_position_counts(folder: PathLike, num_slice_positions: int) -> np.ndarray | None:
    """How many training slices each slice position had, as the prior stage recorded it (or,
    for a run trained before that record, as its cached code grids hold them); None when
    neither is there."""
    counts = read_state(folder).get("prior", {}).get("slice_position_counts")
    if counts is None:
        codes = pathlib.Path(folder) / CODES_FILE
        try:
            with np.load(codes) as arrays:
                counts = np.bincount(arrays["train_slices"], minlength=num_slice_positions)
        except (OSError, KeyError, ValueError):
            return None
    return np.asarray(counts, np.float64)[:num_slice_positions]


def check_unconditional_covariates(folder: PathLike, values: Mapping[str, Any]) -> None:
    """Refuses, before any work, `unconditional_covariates` "drawn" for a run whose prior (or
    volume prior) was trained on covariates but records no training subjects' rows; a prior
    without covariates draws none, so it passes."""
    if values.get("unconditional_covariates", "null") != "drawn":
        return
    for stage, record in read_state(folder).items():
        if stage in ("prior", "volume") and record.get("covariates"):
            subject_covariates(folder, stage)


def subject_covariates(folder: PathLike, stage: str = "prior") -> np.ndarray:
    """[S, C] float32: the training subjects' covariates rows as the `stage` ("prior" or
    "volume") recorded them.

    Raises:
        RunError: the stage recorded none (trained without covariates, or before they were
            recorded), with the flag that samples without them.
    """
    rows = read_state(folder).get(stage, {}).get("subject_covariates")
    if not rows:
        raise RunError(f"{folder}'s {stage} records no training subjects' covariates (trained "
                       f"without covariates, or before they were recorded): sample with "
                       f"--unconditional-covariates null")
    return np.asarray(rows, np.float32)


def load_prior(output_dir: PathLike, stage: str = "prior", shared: bool = True) -> keras.Model:
    """The run's prior (`stage` "volume": its volume prior), after checking it was trained over
    the run's current VQ-VAE; `shared` as `load_for_inference`."""
    output_dir = pathlib.Path(output_dir)
    checkpoint = output_dir / STAGE_FILES[stage]
    if not checkpoint.is_file():
        hint = (" (a volume prior needs a run cut as stacks: --slice-spacing 2 "
                "--slices-per-volume 64 --num-slice-positions 64)" if stage == "volume" else "")
        raise RunError(f"{checkpoint} not found: train it with `python train.py --stage {stage} "
                       f"--output-dir {output_dir}`{hint}")
    check_prior_matches_vqvae(output_dir, stage)
    return load_for_inference(checkpoint, shared)


def slice_poses(folder: PathLike) -> np.ndarray:
    """[M, 3] float32: the training slices' (slice position, centroid offset in pixels, tilt in
    degrees), as a prior trained with `prior_pose_condition` recorded them.

    Raises:
        RunError: none recorded (a prior trained without the pose condition, or before the
            poses were recorded), with the flag that samples without them.
    """
    rows = read_state(folder).get("prior", {}).get("slice_poses")
    if not rows:
        raise RunError(f"{folder}'s prior records no training slices' poses (trained without "
                       f"--prior-pose-condition, or before they were recorded): sample with "
                       f"--pose-spread 0")
    return np.asarray(rows, np.float32).reshape(-1, 3)
