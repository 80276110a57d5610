"""The volume prior stage: a PixelCNN of each slice's code grid given the code grid of the
slice just below it (and its slice position), trained on consecutive slice pairs of the same
subject over the frozen VQ-VAE's codes. Sampled slice by slice from the bottom up
(generation/stacks.py), it draws a whole stack: a volume."""
from __future__ import annotations

import contextlib
import math
import pathlib
from typing import Any

import keras
import numpy as np
from numpy.typing import ArrayLike

from brainvq.data import covariates, input_pipeline
from brainvq.data.stacks import consecutive_pairs
from brainvq.hints import Callbacks, PathLike, Splits, Values
from brainvq.models import build
from brainvq.runs import run_folder
from brainvq.runs.run_folder import VOLUME_PRIOR_FILE, VQVAE_FILE, RunError
from brainvq.training import stages


def pair_arrays(codes: np.ndarray, slice_index: ArrayLike, case_id: ArrayLike,
                slice_covariates: np.ndarray | None = None) -> tuple:
    """The volume prior's examples from one split's code grids: (code grids [P, g, g], slice
    positions [P], code grids of the slice below [P, g, g], and with `slice_covariates`
    [N, C] each pair's covariates [P, C], else None)."""
    rows, below = consecutive_pairs(slice_index, case_id)
    return (codes[rows], np.asarray(slice_index)[rows].astype(np.int32), codes[below],
            None if slice_covariates is None else np.asarray(slice_covariates)[rows])


def pair_dataset(pairs: tuple, batch_size: int, shuffle: bool, seed: int = 0,
                 repeat: bool = False) -> Any:
    """Batches of ({"code_indices", "slice_index", "condition_codes"[, "covariates"]}, code
    grids)."""
    codes, positions, below, pair_covariates = pairs
    inputs = {"code_indices": codes, "slice_index": positions, "condition_codes": below}
    if pair_covariates is not None:
        inputs["covariates"] = pair_covariates
    return input_pipeline.batches((inputs, codes), batch_size, shuffle, seed=seed, repeat=repeat)


def train_volume_prior(values: Values, splits: Splits, output_dir: PathLike,
                       resume: bool = False, strategy: Any = None, extra_callbacks: Callbacks = ()
                       ) -> tuple[keras.Model, float]:
    """Fits the volume prior (`build.volume_prior_from_hyperparameters`) on consecutive slice
    pairs of each split; returns the prior and the test pairs' NLL in bits per code."""
    output_dir = pathlib.Path(output_dir)
    vqvae_path = output_dir / VQVAE_FILE
    vqvae = stages.frozen_vqvae(output_dir, values)
    data_fingerprint = run_folder.data_fingerprint(splits)
    covariate_specs, covariate_values = [], {}
    if values.get("condition_on"):  # the slice prior's age, sex, ...: a whole volume's
        splits, covariate_specs, covariate_values = covariates.for_splits(values, splits)
    codes = stages.prior_codes(vqvae, splits, output_dir, values)
    case_ids = codes.get("case_id") or {name: splits[name].case_id for name in splits}
    pairs = {name: pair_arrays(codes[name][0], codes[name][1], case_ids[name],
                               covariate_values.get(name))
             for name in ("train", "validate", "test")}
    if len(pairs["train"][0]) == 0 or len(pairs["validate"][0]) == 0:
        raise RunError("no consecutive slices of one subject in the training or validation "
                       "split: the volume prior needs stacks (--slice-spacing > 0)")
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        prior, done = (stages.load_for_resume(output_dir, "volume", values) if resume
                       else (None, 0))
        if prior is None:
            prior = build.volume_prior_from_hyperparameters(values, vqvae.grid_size,
                                                            covariates=covariate_specs)
            stages.compile_prior(prior, values)
    batch_size = values["prior_batch_size"]
    steps = values["steps_per_epoch"] or math.ceil(len(pairs["train"][0]) / batch_size)
    record = {"data_fingerprint": data_fingerprint, "covariates": covariate_specs,
              "vqvae_fingerprint": run_folder.file_fingerprint(vqvae_path),
              "pairs": {name: int(len(pair[0])) for name, pair in pairs.items()}}
    if covariate_specs:  # what --unconditional-covariates drawn gives a whole volume
        record["subject_covariates"] = covariates.subject_rows(
            splits["train"].case_id, covariate_values["train"]).tolist()
    train_pairs = pair_dataset(pairs["train"], batch_size, True, seed=values["seed"],
                               repeat=True)
    stages.fit_stage(prior, "volume", train_pairs,
                     pair_dataset(pairs["validate"], batch_size, False),
                     dict(values, steps_per_epoch=steps), values["prior_epochs"], batch_size,
                     output_dir, VOLUME_PRIOR_FILE, resume, extra_callbacks,
                     values["prior_patience"], done=done, record=record)
    stages.report_best(output_dir, "volume")
    stages.plot_training_curves(output_dir, "volume", values["images_dir"])
    checkpoint = output_dir / VOLUME_PRIOR_FILE
    if checkpoint.exists():
        prior = run_folder.load_checkpoint(checkpoint)
    prior.run_eagerly = values["run_eagerly"]
    if len(pairs["test"][0]) == 0:
        return prior, float("nan")
    test = prior.evaluate(pair_dataset(pairs["test"], batch_size, False), verbose=0,
                          return_dict=True)
    return prior, float(test["bits_per_code"])
