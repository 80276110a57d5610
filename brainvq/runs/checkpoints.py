"""Checkpoint files: their names, atomic and verified saves and copies, atomic JSON, and
loading (with a corrupt file reported by name; for inference, one load per unchanged file).
`run_folder` re-exports every name here."""
from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import zipfile
from typing import Any

import keras

from brainvq.hints import PathLike
from brainvq.models import build, volume_vqvae  # noqa: F401 (registers the models load_model reads)


class RunError(RuntimeError):
    """A run folder cannot be used as asked; the message names the file and the fix."""


class CorruptCheckpoint(RunError):
    """A checkpoint file exists but cannot be loaded."""


def last_checkpoint_name(filename: str) -> str:
    """Where the latest epoch of a stage is kept for --resume: `vqvae.keras` -> `vqvae_last.keras`
    (the file named `filename` holds the best validation epoch)."""
    return filename.replace(".keras", "_last.keras")


def previous_name(path: PathLike) -> pathlib.Path:
    """`vqvae_last.keras` -> `vqvae_last.previous.keras`: the checkpoint a save replaced."""
    path = pathlib.Path(path)
    return path.with_name(path.stem + ".previous" + path.suffix)


def _partial_name(path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    return path.with_name(path.stem + f".partial-{os.getpid()}" + path.suffix)


def verify_checkpoint(path: PathLike) -> None:
    """Raises CorruptCheckpoint unless `path` is a complete `.keras` archive (every member's
    CRC checks, the config and the weights are there)."""
    path = pathlib.Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise CorruptCheckpoint(f"{path} is corrupt or incomplete ({error})") from None
    if broken is not None or not {"config.json", "model.weights.h5"} <= names:
        raise CorruptCheckpoint(f"{path} is corrupt or incomplete (damaged member "
                                f"{broken or 'missing config/weights'})")


def _replace_keeping_previous(partial: PathLike, path: PathLike) -> None:
    path = pathlib.Path(path)
    if path.exists():
        os.replace(path, previous_name(path))
    os.replace(partial, path)


def save_atomically(model: keras.Model, path: PathLike) -> None:
    """Saves `model` as `path`: written under a temporary name, verified complete, then renamed
    into place; the checkpoint it replaces is kept as `*.previous.keras`."""
    partial = _partial_name(path)
    model.save(partial)
    verify_checkpoint(partial)
    _replace_keeping_previous(partial, path)


def copy_atomically(source: PathLike, path: PathLike) -> None:
    """Copies the checkpoint `source` to `path` the same way as `save_atomically`."""
    partial = _partial_name(path)
    shutil.copyfile(source, partial)
    verify_checkpoint(partial)
    _replace_keeping_previous(partial, path)


def json_text(data: Any, indent: int = 0) -> str:
    """`data` as indented JSON with every list of numbers or strings on one line (a run's
    records hold thousands of them: one per line would be tens of thousands of lines)."""
    pad = " " * (indent + 2)
    if isinstance(data, dict) and data:
        items = [f"{pad}{json.dumps(str(key))}: {json_text(value, indent + 2)}"
                 for key, value in data.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(data, (list, tuple)) and any(isinstance(item, (dict, list, tuple))
                                               for item in data):
        items = [pad + json_text(item, indent + 2) for item in data]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(data)


def write_json_atomically(path: PathLike, data: Any) -> None:
    path = pathlib.Path(path)
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    partial.write_text(json_text(data) + "\n")
    os.replace(partial, path)


def load_checkpoint(path: PathLike, compile: bool = True) -> keras.Model:
    """`keras.saving.load_model(path)`, with a corrupt file reported as such by name."""
    path = pathlib.Path(path)
    verify_checkpoint(path)
    try:
        return keras.saving.load_model(path, compile=compile)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CorruptCheckpoint(f"{path} could not be loaded ({str(error)[:200]})") from None


def load_for_inference(path: PathLike, shared: bool = True) -> keras.Model:
    """A model file loaded uncompiled (no optimizer), to encode, decode or sample with.

    `shared`: one object per process while the file is unchanged (the same path, inode,
    modification time and size): the scripts and benchmarks that judge one run over several
    seeds and settings load each model once, and its compiled samplers, kept on the model, are
    traced (and XLA-compiled) once. Callers must not change a shared model; one that does
    (loads snapshot weights into it) asks for its own with `shared=False`."""
    if not shared:
        return load_checkpoint(path, compile=False)
    status = os.stat(path)
    return _load_shared(str(pathlib.Path(path).resolve()),
                        (status.st_ino, status.st_mtime_ns, status.st_size))


@functools.lru_cache(maxsize=8)
def _load_shared(path: str, identity: tuple[int, int, int]) -> keras.Model:
    return load_checkpoint(path, compile=False)
