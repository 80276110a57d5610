"""Shipped models: a trained run exported into a folder a user can load anywhere.

A shipped model folder (`pretrained/<name>/`, made by `python train.py --export DIR`) holds

    vqvae.keras, prior.keras   the best validation epoch of each stage, without optimizer state
    hyperparameters.json       the run's values; no data folder (`data_dir` empty: the data is
                               named in the state, and `--data-dir` points at it), a covariates
                               file by its path inside the data folder
    training_state.json        epochs, best epochs, the training slices' position counts, and
                               the sha256 of every file above (checked on every load)
    vqvae_log.csv, prior_log.csv   the training logs
    MODEL_CARD.md              data, licence, split, held-out figures, intended use, limits

It is read-only to the scripts: predict.py and similarity.py write its figures, the realism
feature network and the metrics CSV under `output/<name>/` (or `--images-dir`), never into it.
"""
from __future__ import annotations

import os
import pathlib
import shutil
from typing import TYPE_CHECKING, Any

from brainvq import config
from brainvq.hints import PathLike, Values
from brainvq.runs import run_folder
from brainvq.runs.run_folder import RunError

if TYPE_CHECKING:
    import keras

SHIPPED_FILES = (run_folder.VQVAE_FILE, run_folder.PRIOR_FILE, "hyperparameters.json")
LOG_FILES = ("vqvae_log.csv", "prior_log.csv", "volume_vqvae_log.csv", "volume_log.csv")
WORK_ROOT = pathlib.Path("output")  # where a shipped model's figures and caches go


def work_dir(output_dir: PathLike, images_dir: PathLike | None = None) -> pathlib.Path:
    """Where the scripts write for the run in `output_dir`: `images_dir` when given; for a
    shipped model `output/<name>`; else the run's own figures folder, `<output_dir>/images`."""
    if images_dir:
        path = pathlib.Path(images_dir)
        for folder in (path, *path.resolve().parents):
            if run_folder.is_shipped(folder):
                raise RunError(f"--images-dir {images_dir} lies in the shipped model "
                               f"{folder}, which the scripts never write: give another "
                               f"folder, or leave --images-dir out "
                               f"({WORK_ROOT / folder.resolve().name})")
        return path
    if run_folder.is_shipped(output_dir):
        return WORK_ROOT / pathlib.Path(output_dir).resolve().name
    return pathlib.Path(output_dir) / "images"


def cache_dir(output_dir: PathLike, images_dir: PathLike) -> pathlib.Path:
    """Where a script may keep what it computes for a run (the realism feature network, the
    metrics CSV): the run folder, except for a shipped model, which is never written."""
    shipped = run_folder.is_shipped(output_dir)
    return pathlib.Path(images_dir) if shipped else pathlib.Path(output_dir)


def same_weights(model: keras.Model, path: PathLike) -> bool:
    """Whether the model file at `path` exists and holds the same architecture and weights as
    `model` (so re-exporting it would only rewrite the same numbers)."""
    import keras
    import numpy as np

    if not pathlib.Path(path).is_file():
        return False
    try:
        shipped = run_folder.load_checkpoint(path, compile=False)
    except Exception:  # a damaged or foreign file is replaced
        return False
    if shipped.get_config() != model.get_config() or len(shipped.weights) != len(model.weights):
        return False
    return all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
               for a, b in zip(shipped.weights, model.weights))


DATA_KEY = "data"  # the state's description of the data a shipped model was trained on


def record_data_by_name(values: Values) -> tuple[Values, str]:
    """(values as a shipped model records them, the data's description): no path of the machine
    it was trained on. `data_dir` becomes empty (scripts take `--data-dir`), a covariates file
    its path inside the data folder (else its name), `prior_init` empty, and the data is
    described by the data folder's name, its split and seed, e.g. "ixi, split 125,20,20 by
    subject, seed 42"."""
    values = dict(values)
    data_dir = values.get("data_dir") or ""
    if data_dir == config.DEFAULTS["data_dir"] and not os.path.exists(data_dir):
        return values, "the embedded demo data"  # the default folder, absent: the demo
    name = pathlib.Path(os.path.abspath(data_dir)).name
    covariates = values.get("covariates") or ""
    if covariates:
        inside = os.path.relpath(os.path.abspath(covariates), os.path.abspath(data_dir or "."))
        values["covariates"] = (pathlib.Path(covariates).name if inside.startswith("..")
                                else inside)
    values["data_dir"] = ""
    values["prior_init"] = ""  # a checkpoint of the machine it was trained on: the card says
    description = f"{name}, split {values.get('split')} by subject, seed {values.get('seed')}"
    return values, description


def data_description(output_dir: PathLike) -> str | None:
    """The shipped model's record of its data (`record_data_by_name`), or None."""
    return run_folder.read_state(output_dir).get(DATA_KEY)


def _exported_stages(source: pathlib.Path) -> tuple[list[str], Values]:
    """The stages an export of `source` ships and its values: the VQ-VAE and the prior, a stack
    run's volume prior, and the slice-context refiner its stacks are decoded through; each
    checked to belong to the run's VQ-VAE.

    Raises:
        RunError: a stage is missing, or trained over another VQ-VAE.
    """
    for name in (run_folder.VQVAE_FILE, run_folder.PRIOR_FILE):
        if not (source / name).is_file():
            raise RunError(f"{source / name} not found: train both stages before exporting "
                           f"(`python train.py --output-dir {source}`)")
    run_folder.check_prior_matches_vqvae(source)
    stages = ["vqvae", "prior"]
    values = config.load(source)
    if config.uses_3d_code(values):  # its volumes are drawn as 3D codes of its volume VQ-VAE
        if not (source / run_folder.VOLUME_VQVAE_FILE).is_file():
            raise RunError(f"{source / run_folder.VOLUME_VQVAE_FILE} not found: train it before "
                           f"exporting (`python train.py --stage volume_vqvae --output-dir "
                           f"{source}`)")
        stages.append("volume_vqvae")
    if (source / run_folder.VOLUME_PRIOR_FILE).is_file():  # a run cut as stacks: its volume prior
        run_folder.check_prior_matches_vqvae(source, "volume")
        stages.append("volume")
    if config.uses_context(values):  # its stacks are decoded through the refiner
        if not (source / run_folder.CONTEXT_FILE).is_file():
            raise RunError(f"{source / run_folder.CONTEXT_FILE} not found: train it before "
                           f"exporting (`python train.py --stage context --output-dir "
                           f"{source}`)")
        run_folder.check_prior_matches_vqvae(source, "context")
        stages.append("context")
    return stages, values


def export(source: PathLike, destination: PathLike, overwrite: bool = False
           ) -> list[pathlib.Path]:
    """Writes the trained run in `source` as a shipped model folder `destination`.

    The best checkpoints (both stages, and a run cut as stacks' volume prior and slice-context
    refiner) are saved again without optimizer state (a model file already there with the same
    weights, e.g. the VQ-VAE when only the prior was retrained, is kept as it is); the
    hyperparameters keep the data folder relative to `destination`, and the state its subjects
    by name; a MODEL_CARD.md already there is kept while the models stay the same, and replaced
    by a stub (to be completed by hand) when a model is new.

    Returns:
        The paths written.

    Raises:
        RunError: `source` lacks a stage, its prior belongs to another VQ-VAE, `destination`
            is a training run folder, or it already holds a model and `overwrite` is False.
    """
    source, destination = pathlib.Path(source), pathlib.Path(destination)
    stages, values = _exported_stages(source)
    models = [run_folder.STAGE_FILES[stage] for stage in stages]
    if destination.resolve() == source.resolve() or (
            (destination / run_folder.STATE_FILE).is_file()
            and not run_folder.is_shipped(destination)):
        raise RunError(f"--export {destination} is a training run folder (its "
                       f"{run_folder.STATE_FILE} records training, not a shipped model): export "
                       f"into a folder of its own, e.g. pretrained/{source.name}")
    optional = (run_folder.VOLUME_PRIOR_FILE, run_folder.CONTEXT_FILE,
                run_folder.VOLUME_VQVAE_FILE)
    present = [name for name in (*SHIPPED_FILES, *optional) if (destination / name).exists()]
    if present and not overwrite:
        raise RunError(f"{destination} already holds a model ({', '.join(present)}); "
                       f"nothing was changed. Pass --overwrite to replace it")
    destination.mkdir(parents=True, exist_ok=True)
    for name in optional:  # one model's files only
        if name not in models:
            (destination / name).unlink(missing_ok=True)
    written = []
    for name in models:
        model = run_folder.load_checkpoint(source / name, compile=False)  # no optimizer state
        if same_weights(model, destination / name):
            continue  # the shipped file stays as it is: no new binary in the history
        run_folder.save_atomically(model, destination / name)
        run_folder.previous_name(destination / name).unlink(missing_ok=True)
        written.append(destination / name)
    values, data = record_data_by_name(run_folder.run_paths(values, source))
    values["output_dir"] = str(destination)
    values["images_dir"] = str(WORK_ROOT / destination.name)
    written.append(config.save(values, destination))
    for name in LOG_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)
            written.append(destination / name)
    state = run_folder.read_state(source)
    shipped = {stage: {key: value for key, value in state.get(stage, {}).items()
                       if key != "data_fingerprint"} for stage in stages}
    for stage in stages[1:]:  # what each was trained over: the shipped VQ-VAE file
        if stage != "volume_vqvae" and "volume_codebook_fingerprint" not in shipped[stage]:
            shipped[stage]["vqvae_fingerprint"] = run_folder.file_fingerprint(
                destination / run_folder.VQVAE_FILE)
    if "subjects" in state:  # who it trained on and held out, by name
        shipped["subjects"] = state["subjects"]
    shipped[DATA_KEY] = data
    shipped[run_folder.FILES_KEY] = {name: run_folder.file_fingerprint(destination / name)
                                     for name in (*SHIPPED_FILES, *models[2:])}
    run_folder.write_state(destination, shipped)
    written.append(destination / run_folder.STATE_FILE)
    card = destination / run_folder.MODEL_CARD_FILE
    replaced = present and any(destination / name in written for name in models)
    if replaced or not card.is_file():  # a new model: the old model's card no longer fits it
        card.write_text(f"# {destination.name}\n\nExported from `{source}`. Complete this card: "
                        f"data and licence, split, held-out figures with their commands, "
                        f"intended use, limits.\n")
        written.append(card)
    return written


def set_sampling_settings(destination: PathLike, **settings: Any) -> dict[str, Any]:
    """Changes a shipped model's sampling settings (`config.SAMPLING_KEYS`: temperature,
    guidance, ...) in its `hyperparameters.json` and records the file's new sha256, so that the
    model loads as before with the settings chosen for it; the weights are untouched. Returns
    the settings as they were.

    Raises:
        RunError: `destination` is not a shipped model, or a key is not a sampling setting.
        InvalidHyperparameters: a value outside its range.
    """
    destination = pathlib.Path(destination)
    if not run_folder.is_shipped(destination):
        raise RunError(f"{destination} is not a shipped model (no model card and recorded "
                       f"hashes)")
    unknown = sorted(set(settings) - set(config.SAMPLING_KEYS))
    if unknown:
        raise RunError(f"not sampling settings: {', '.join(unknown)} (these are: "
                       f"{', '.join(sorted(config.SAMPLING_KEYS))})")
    problems = [f"{name} {problem}" for name, value in settings.items()
                if (problem := config.value_problem(name, value))]
    if problems:
        raise config.InvalidHyperparameters("; ".join(problems))
    values = config.load(destination)
    before = {name: values.get(name) for name in settings}
    config.save(dict(values, **settings), destination)
    state = run_folder.read_state(destination)
    state[run_folder.FILES_KEY][config.HYPERPARAMETERS_FILE] = run_folder.file_fingerprint(
        destination / config.HYPERPARAMETERS_FILE)
    run_folder.write_state(destination, state)
    return before
