"""Fingerprints: what a stage, a cache or a network was made from, as sha256 hex digests, so
that a run folder can tell when its parts no longer belong together."""
from __future__ import annotations

import hashlib
import json
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from numpy.typing import ArrayLike

from brainvq.hints import PathLike

if TYPE_CHECKING:
    from brainvq.data.slice_sets import SliceSet


def file_fingerprint(path: PathLike) -> str | None:
    """sha256 of a file's bytes (hex), or None when it does not exist."""
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def codebook_fingerprint(autoencoder: Any) -> str:
    """sha256 of an autoencoder's encoder and quantizer weights: what its codes mean. A decoder
    trained again or tuned over the same codes leaves it as it is, so a prior over the codes
    stays valid."""
    digest = hashlib.sha256()
    for weights in autoencoder.encoder.get_weights() + autoencoder.quantizer.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def data_fingerprint(splits: Mapping[str, SliceSet], legacy: bool = False) -> str:
    """sha256 of every split's file names (or, for the demo, its images) and slice indices.

    The names, not the paths: the same data reached by another path (relative or absolute,
    another working folder, a moved data folder) has the same fingerprint. `legacy`: the
    fingerprint as earlier versions recorded it, over the paths as they were spelled.
    """
    digest = hashlib.sha256()
    for name in ("train", "validate", "test"):
        split = splits[name]
        digest.update(name.encode())
        if split.paths and all(not str(path).startswith("<") for path in split.paths):
            names = [str(path) if legacy else pathlib.PurePath(str(path)).name
                     for path in split.paths]
            digest.update("\n".join(names).encode())
        else:
            digest.update(np.ascontiguousarray(split.images).tobytes())
        digest.update(np.asarray(split.slice_index, np.int64).tobytes())
    return digest.hexdigest()


def code_fingerprint(vqvae_path: PathLike, splits: Mapping[str, SliceSet],
                     values: Mapping[str, Any]) -> str:
    """A hash of everything the cached code grids depend on: the VQ-VAE checkpoint's bytes, the
    images and slice indices of every split, and the augmentation settings."""
    digest = hashlib.sha256(str(file_fingerprint(vqvae_path)).encode())
    for name in ("train", "validate", "test"):
        digest.update(np.ascontiguousarray(splits[name].images).tobytes())
        digest.update(np.asarray(splits[name].slice_index, np.int64).tobytes())
    settings = [values.get(key) for key in ("prior_augment_copies", "prior_augment_shift", "seed")]
    # Appended only when set, so caches written before these two settings existed stay valid.
    settings += [values[key] for key in ("prior_augment_rotation", "prior_augment_scale")
                 if values.get(key)]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def slices_fingerprint(images: ArrayLike, slice_index: ArrayLike) -> str:
    """sha256 of slices' pixels and positions (the realism feature network's training data)."""
    digest = hashlib.sha256(np.ascontiguousarray(images, np.float32).tobytes())
    digest.update(np.asarray(slice_index, np.int64).tobytes())
    return digest.hexdigest()
