"""The prior's training data: every split's code grids, encoded once by the frozen VQ-VAE (with
the augmented copies of the training slices) and cached in the run folder's `codes.npz` while
their fingerprint matches."""
from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from brainvq import config
from brainvq.data import augmentation, input_pipeline, pose
from brainvq.generation import generate
from brainvq.hints import PathLike, Splits
from brainvq.runs import fingerprints
from brainvq.runs.run_folder import CODES_FILE, VQVAE_FILE

if TYPE_CHECKING:
    import keras

POSES_FILE = "poses.npz"


def encode_splits(vqvae: keras.Model, splits: Splits, output_dir: PathLike,
                  values: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Code grids of every split, computed once with the frozen VQ-VAE and cached on disk.

    With `prior_augment_copies` > 0 the training split is also encoded that many more times,
    flipped left-right, shifted and optionally rotated and scaled (`augmentation.flip_and_shift`):
    code grids that the VQ-VAE gives for slightly different real slices, valid training data
    for the prior, under
    "train_augmented" (the original grids first). The cache (`codes.npz`) is reused only while
    its fingerprint (the VQ-VAE checkpoint's bytes, every split's images and slice indices,
    the augmentation settings) matches; otherwise it is rebuilt.

    Returns:
        {split: (code_indices [N, g, g] int32, slice_index [N] int32)} for "train",
        "validate", "test" and "train_augmented", and under "augmentation" the
        "train_augmented" grids' augmentation parameters [N, 5] float32 (`flip_and_shift`'s;
        0 for the grids as they are).
    """
    values = dict(config.DEFAULTS, **(values or {}))
    names = ("train", "validate", "test", "train_augmented")
    cache = pathlib.Path(output_dir) / CODES_FILE
    fingerprint = fingerprints.code_fingerprint(pathlib.Path(output_dir) / VQVAE_FILE, splits,
                                                values)
    if cache.is_file():
        with np.load(cache) as stored:
            if ("fingerprint" in stored and str(stored["fingerprint"]) == fingerprint
                    and "augmentation" in stored):  # a cache from before it is rebuilt
                cached = {name: (stored[f"{name}_codes"], stored[f"{name}_slices"])
                          for name in names}
                return dict(cached, augmentation=stored["augmentation"])
    encoded, arrays = {}, {"fingerprint": np.array(fingerprint)}
    for name in ("train", "validate", "test"):
        encoded[name] = (generate.encode_all(vqvae, splits[name].images,
                                              what=f"{name} slices"),
                         np.asarray(splits[name].slice_index, np.int32))
    codes, slices = encoded["train"]
    parameters = np.zeros((len(codes), len(augmentation.AUGMENTATION_PARAMETERS)), np.float32)
    copies = values["prior_augment_copies"]
    if copies:
        images, applied = augmented_copies(splits["train"].images, values,
                                           return_parameters=True)
        augmented = generate.encode_all(vqvae, images, what="augmented training slices")
        codes = np.concatenate([codes, augmented])
        slices = np.concatenate([slices, np.tile(slices, copies)])
        parameters = np.concatenate([parameters, applied])
    encoded["train_augmented"] = (codes, slices)
    for name in names:
        arrays[f"{name}_codes"], arrays[f"{name}_slices"] = encoded[name]
    encoded["augmentation"] = arrays["augmentation"] = parameters
    partial = cache.with_name("codes.partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, cache)
    return encoded


def augmented_copies(images: np.ndarray, values: Mapping[str, Any],
                     return_parameters: bool = False
                     ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The training slices' `prior_augment_copies` augmented copies as the run's values ask
    (`augmentation.flip_and_shift`, seeded by `seed`): the same copies each time."""
    return augmentation.flip_and_shift(
        images, values["prior_augment_copies"], values["prior_augment_shift"],
        seed=values["seed"], max_rotation=values["prior_augment_rotation"],
        max_scale=values["prior_augment_scale"], return_parameters=return_parameters)


def measured_poses(splits: Splits, output_dir: PathLike, values: Mapping[str, Any]
                   ) -> dict[str, np.ndarray]:
    """Head poses (`pose.head_pose`: [N, 2], centroid offset in pixels and tilt in degrees) of
    the slices behind the code grids: {"train_augmented": the training slices, then each
    augmented copy; "validate", "test": the held-out slices}, cached in the run folder's
    `poses.npz` under the code grids' fingerprint."""
    values = dict(config.DEFAULTS, **(values or {}))
    cache = pathlib.Path(output_dir) / POSES_FILE
    fingerprint = fingerprints.code_fingerprint(pathlib.Path(output_dir) / VQVAE_FILE, splits,
                                                values)
    names = ("train_augmented", "validate", "test")
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["fingerprint"]) == fingerprint and all(name in stored
                                                                 for name in names):
                return {name: stored[name] for name in names}
    images = splits["train"].images
    poses = [pose.head_pose(images)]
    if values["prior_augment_copies"]:  # the same copies as encode_splits encodes
        poses.append(pose.head_pose(augmented_copies(images, values)))
    measured = {"train_augmented": np.concatenate(poses),
                "validate": pose.head_pose(splits["validate"].images),
                "test": pose.head_pose(splits["test"].images)}
    partial = cache.with_name("poses.partial.npz")
    np.savez_compressed(partial, fingerprint=np.array(fingerprint), **measured)
    os.replace(partial, cache)
    return measured


def code_dataset(codes: np.ndarray, slices: np.ndarray, batch_size: int, shuffle: bool,
                 seed: int = 0, repeat: bool = False, covariates: np.ndarray | None = None,
                 augmentation: np.ndarray | None = None) -> Any:
    """Batches of ((code grids, slice index), code grids) for fitting the prior; with
    `covariates` [N, C] or `augmentation` [N, A], of ({"code_indices", "slice_index",
    "covariates", "augmentation"}, code grids) with those given."""
    inputs = (codes, slices)
    if covariates is not None or augmentation is not None:
        inputs = {"code_indices": codes, "slice_index": slices}
        if covariates is not None:
            inputs["covariates"] = covariates
        if augmentation is not None:
            inputs["augmentation"] = augmentation
    return input_pipeline.batches((inputs, codes), batch_size, shuffle, seed=seed,
                                  repeat=repeat)
