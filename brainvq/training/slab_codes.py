"""Slab codes (runs cut as stacks, `--slab-depth F`): every subject's stack of slice codes, and
the slab codes the run's slab autoencoder gives them, on which the prior and volume stages train
instead of slice codes (the prior draws the lowest slab, the volume prior each next slab given
the one below; generation/stacks.py decodes them back to slice codes, and those to images).

Cached in the run folder: `stack_codes.npz` (the frozen VQ-VAE's slice codes of each stack,
by fingerprint) and `slab_codes.npz` (the slab codes, by the slab autoencoder's fingerprint).
"""
from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from numpy.typing import ArrayLike

from brainvq.generation import generate
from brainvq.generation.stacks import encode_slabs
from brainvq.hints import PathLike, Splits
from brainvq.runs import fingerprints, run_folder
from brainvq.runs.run_folder import SLAB_FILE, VQVAE_FILE, RunError

if TYPE_CHECKING:
    import keras

STACK_CODES_FILE = "stack_codes.npz"
SLAB_CODES_FILE = "slab_codes.npz"
SPLITS = ("train", "validate", "test")


def stacks_of(codes: np.ndarray, slice_index: ArrayLike, case_id: ArrayLike, length: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Each subject's slice codes as one stack: (stacks [V, length, g, g], case ids [V]) for the
    subjects whose positions run 0 .. length - 1 without a gap (others are left out)."""
    stacks, cases = [], []
    slice_index, case_id = np.asarray(slice_index), np.asarray(case_id)
    for case in np.unique(case_id):
        rows = np.flatnonzero(case_id == case)
        rows = rows[np.argsort(slice_index[rows])][:length]
        if len(rows) == length and np.array_equal(slice_index[rows], np.arange(length)):
            stacks.append(codes[rows])
            cases.append(case)
    grid = codes.shape[1:]
    return (np.stack(stacks) if stacks else np.zeros((0, length) + grid, np.int32),
            np.asarray(cases, np.int64))


def _atomic_savez(path: pathlib.Path, **arrays: np.ndarray) -> None:
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, path)


def stack_codes(vqvae: keras.Model, splits: Splits, output_dir: PathLike, values: Mapping[str, Any]
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (slice codes of each stack [V, S, g, g], case ids [V])} for train, validate and
    test, and "train_mirrored" (the training stacks mirrored left-right, then encoded); cached
    by the VQ-VAE's and the splits' fingerprint."""
    cache = pathlib.Path(output_dir) / STACK_CODES_FILE
    fingerprint = fingerprints.code_fingerprint(
        pathlib.Path(output_dir) / VQVAE_FILE, splits,
        {"seed": values["seed"], "slices_per_volume": values["slices_per_volume"]})
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["fingerprint"]) == fingerprint:
                return {name: (stored[f"{name}_codes"], stored[f"{name}_cases"])
                        for name in (*SPLITS, "train_mirrored")}
    length, result = values["slices_per_volume"], {}
    for name in (*SPLITS, "train_mirrored"):
        split = splits[name.replace("_mirrored", "")]
        images = split.images[:, :, ::-1] if name.endswith("mirrored") else split.images
        codes = generate.encode_all(vqvae, np.ascontiguousarray(images),
                                    what=f"{name.replace('_', ' ')} stack slices")
        result[name] = stacks_of(codes, split.slice_index, split.case_id, length)
    arrays = {"fingerprint": np.array(fingerprint)}
    for name, (codes, cases) in result.items():
        arrays[f"{name}_codes"], arrays[f"{name}_cases"] = codes, cases
    _atomic_savez(cache, **arrays)
    return result


def slab_code_splits(vqvae: keras.Model, splits: Splits, output_dir: PathLike,
                     values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The priors' training data in slab codes, shaped as `code_cache.encode_splits` returns
    slice codes: {split: (slab code grids [N, g, g], slab positions [N])} for train (the
    training stacks and their mirror images), validate, test and "train_augmented" (= train),
    "augmentation" (zeros: nothing the samples must not draw), and "case_id": {split: [N]}
    (each mirror image a subject of its own); cached by the slab autoencoder's fingerprint."""
    output_dir = pathlib.Path(output_dir)
    path = output_dir / SLAB_FILE
    if not path.is_file():
        raise RunError(f"{path} not found: train the slab autoencoder first (`python train.py "
                       f"--stage slab --output-dir {output_dir}`)")
    fingerprint = str(run_folder.file_fingerprint(path))
    cache = output_dir / SLAB_CODES_FILE
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["fingerprint"]) == fingerprint:
                slabs = {name: (stored[f"{name}_codes"], stored[f"{name}_cases"])
                         for name in SPLITS}
                return _as_code_splits(slabs)
    stacks = stack_codes(vqvae, splits, output_dir, values)
    model = run_folder.load_checkpoint(path)
    train_cases = stacks["train"][1]
    offset = int(train_cases.max()) + 1 if len(train_cases) else 0
    stacks["train"] = (np.concatenate([stacks["train"][0], stacks["train_mirrored"][0]]),
                       np.concatenate([train_cases, stacks["train_mirrored"][1] + offset]))
    slabs = {name: (encode_slabs(model, stacks[name][0]), stacks[name][1]) for name in SPLITS}
    arrays = {"fingerprint": np.array(fingerprint)}
    for name, (codes, cases) in slabs.items():
        arrays[f"{name}_codes"], arrays[f"{name}_cases"] = codes, cases
    _atomic_savez(cache, **arrays)
    return _as_code_splits(slabs)


def _as_code_splits(slabs: Mapping[str, tuple[np.ndarray, np.ndarray]]
                    ) -> dict[str, np.ndarray]:
    """{split: (slab codes [V, s, g, g], case ids [V])} -> rows of slab grids (see
    `slab_code_splits`)."""
    result, case_ids = {}, {}
    for name, (codes, cases) in slabs.items():
        count, depth = codes.shape[:2]
        result[name] = (codes.reshape((count * depth,) + codes.shape[2:]),
                        np.tile(np.arange(depth, dtype=np.int32), count))
        case_ids[name] = np.repeat(cases, depth)
    result["train_augmented"] = result["train"]
    result["augmentation"] = None  # filled by the caller, who knows the parameters' width
    result["case_id"] = case_ids
    return result
