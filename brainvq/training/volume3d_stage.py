"""Whole heads as one 3D code (`--volume-latent 3d`, issue 52): the `volume_vqvae` stage trains a
`VolumeVQVAE` on random crops of the training subjects' stacks and their mirror images (the slice
VQ-VAE's loss over every axial slice of a crop, plus the quantizer's), keeping the epoch with the
lowest loss on the validation subjects' whole stacks as `volume_vqvae.keras`; the `volume` stage
then trains a `StackPixelCNN` over its code grids, each layer given every layer below it
(`train_stack_prior`). docs/experiments.md, "A VQ-VAE over whole heads" and "A prior that sees
every layer below", measured both."""
from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping

import keras
import numpy as np

from brainvq import config
from brainvq.data import covariates, input_pipeline
from brainvq.data.stacks import subject_stacks
from brainvq.generation.stacks import decode_volumes, encode_volumes
from brainvq.hints import Callbacks, PathLike, Splits, Values
from brainvq.losses.ssim import ssim_per_image
from brainvq.models import build
from brainvq.models.stack_prior import stack_examples
from brainvq.models.volume_vqvae import VolumeVQVAE
from brainvq.runs import run_folder
from brainvq.runs.run_folder import VOLUME_PRIOR_FILE, VOLUME_VQVAE_FILE, RunError
from brainvq.training import stages

CROP = (32, 64, 64)  # slices, rows, columns of a training crop (at most the stack's)
CROPS_PER_BATCH = 8
STEPS_PER_EPOCH = 250  # unless --steps-per-epoch
LEARNING_RATE = 3e-4
SSIM_WEIGHT = 0.5


@keras.saving.register_keras_serializable(package="brainvq")
class StackLoss(keras.losses.Loss):
    """The slice VQ-VAE's reconstruction loss over stacks [B, S, H, W, 1]: MSE + `ssim_weight` x
    (1 - the mean SSIM of the axial slices). The quantizer adds its commitment loss."""

    def __init__(self, ssim_weight: float = SSIM_WEIGHT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssim_weight = float(ssim_weight)

    def call(self, stacks: Any, given_back: Any) -> Any:
        stacks = keras.ops.cast(stacks, "float32")
        mse = keras.ops.mean((stacks - given_back) ** 2, axis=(1, 2, 3, 4))
        if not self.ssim_weight:
            return mse
        shape = keras.ops.shape(stacks)
        slices = (-1, shape[2], shape[3], 1)
        ssim = keras.ops.reshape(ssim_per_image(keras.ops.reshape(stacks, slices),
                                                keras.ops.reshape(given_back, slices)),
                                 (shape[0], shape[1]))
        return mse + self.ssim_weight * (1.0 - keras.ops.mean(ssim, axis=1))

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), ssim_weight=self.ssim_weight)


class RandomCrops(keras.utils.PyDataset):
    """Batches ([B, *crop, 1], the same) of random crops of stacks [V, S, H, W], half of them
    mirrored left-right; each (epoch, batch) drawn from its own seed, so a resumed run sees
    what it would have."""

    def __init__(self, stacks: np.ndarray, crop: tuple[int, int, int], batch_size: int,
                 steps: int, seed: int, epoch: int = 0) -> None:
        super().__init__()
        self.stacks, self.crop, self.batch_size = stacks, tuple(crop), batch_size
        self.steps, self.seed, self.epoch = steps, seed, epoch

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        batch = np.empty((self.batch_size, *self.crop, 1), np.float32)
        for row in range(self.batch_size):
            stack = self.stacks[rng.integers(len(self.stacks))]
            start = [rng.integers(side - size + 1) for side, size in zip(stack.shape, self.crop)]
            crop = stack[tuple(slice(s, s + size) for s, size in zip(start, self.crop))]
            batch[row, ..., 0] = crop[..., ::-1] if rng.random() < 0.5 else crop
        return batch, batch


def volume_vqvae_from_values(values: Mapping[str, Any]) -> VolumeVQVAE:
    """An untrained `VolumeVQVAE` of a run's settings (the slice VQ-VAE's codebook and in-plane
    downsamplings, the `volume_*` width, slice downsamplings and upsampling)."""
    return VolumeVQVAE(num_codes=values["num_codes"], code_dim=values["code_dim"],
                       num_downsamples=values["num_downsamples"],
                       channels=values["volume_channels"],
                       num_residual_blocks=values["num_residual_blocks"],
                       slice_downsamples=values["volume_slice_downsamples"],
                       upsampling=values["volume_upsampling"],
                       commitment_cost=values["commitment_cost"], ema_decay=values["ema_decay"],
                       dead_code_threshold=values["dead_code_threshold"])


def volume_vqvae_values(values: Mapping[str, Any]) -> Values:
    """A run's values as its `VolumeVQVAE` is checked against (its width is `volume_channels`)."""
    return dict(values, channels=values["volume_channels"])


def split_stacks(values: Mapping[str, Any], splits: Splits,
                 slice_rows: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """{split: stacks [V, S, H, W] float32} of each split's subjects with a whole stack; with
    `slice_rows` ({split: covariates [N, C] of its slices}) also {split + "_covariates": each
    stack's subject's row [V, C]}."""
    length = int(values["slices_per_volume"])
    size = values["image_size"]
    out = {}
    for name in ("train", "validate", "test"):
        stacks = subject_stacks(splits[name], length) if name in splits else {}
        out[name] = (np.stack(list(stacks.values())).astype(np.float32) if stacks
                     else np.zeros((0, length, size, size), np.float32))
        if slice_rows is not None and name in splits:
            row_of = dict(zip(splits[name].case_id.tolist(), slice_rows[name]))
            out[f"{name}_covariates"] = np.asarray([row_of[case] for case in stacks],
                                                   np.float32).reshape(len(stacks), -1)
    return out


def check_volume_vqvae(model: VolumeVQVAE, values: Mapping[str, Any], source: PathLike) -> None:
    """Raises IncompatibleCheckpoint when a loaded `VolumeVQVAE` is not of the run's settings."""
    config.check_model(model, volume_vqvae_values(values), source)
    built = (model.slice_downsamples, model.upsampling)
    wanted = (values["volume_slice_downsamples"], values["volume_upsampling"])
    if built != wanted:
        raise config.IncompatibleCheckpoint(
            f"{source} has slice downsamplings and upsampling {built}, the run's "
            f"hyperparameters.json {wanted}: restore it, or retrain with --overwrite")


def train_volume_vqvae(values: Values, splits: Splits, output_dir: PathLike,
                       resume: bool = False, extra_callbacks: Callbacks = ()
                       ) -> tuple[VolumeVQVAE, float]:
    """Fits the run's `VolumeVQVAE` (`volume_vqvae_epochs` of `STEPS_PER_EPOCH` batches, unless
    --steps-per-epoch) and keeps its best epoch; returns it and the test stacks' mean axial
    slice SSIM given back (NaN without test stacks)."""
    output_dir = pathlib.Path(output_dir)
    stacks = split_stacks(values, splits)
    if len(stacks["train"]) == 0 or len(stacks["validate"]) == 0:
        raise RunError(f"no whole stacks of {values['slices_per_volume']} slices among the "
                       f"training or validation subjects: the volume VQ-VAE needs them")
    model, done = (stages.load_for_resume(output_dir, "volume_vqvae", values,
                                          volume_vqvae_values(values)) if resume else (None, 0))
    if model is None:
        model = volume_vqvae_from_values(values)
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=StackLoss())
    model.code_shape(stacks["train"].shape[1:])  # refuses a stack its factors do not divide
    crop = tuple(min(side, size) for side, size in zip(stacks["train"].shape[1:], CROP))
    steps = values["steps_per_epoch"] or STEPS_PER_EPOCH
    crops = RandomCrops(stacks["train"], crop, CROPS_PER_BATCH, steps, values["seed"], done)
    validate = stacks["validate"][..., None]
    stages.fit_stage(model, "volume_vqvae", crops,
                     input_pipeline.batches((validate, validate), 1, False),
                     dict(values, steps_per_epoch=steps), values["volume_vqvae_epochs"],
                     CROPS_PER_BATCH, output_dir, VOLUME_VQVAE_FILE, resume, extra_callbacks,
                     done=done, record={"data_fingerprint": run_folder.data_fingerprint(splits)})
    stages.report_best(output_dir, "volume_vqvae")
    model = run_folder.load_checkpoint(output_dir / VOLUME_VQVAE_FILE)
    if len(stacks["test"]) == 0:
        return model, float("nan")
    given_back = decode_volumes(model, encode_volumes(model, stacks["test"]))
    slices = stacks["test"].reshape((-1,) + stacks["test"].shape[2:] + (1,))
    ssim = ssim_per_image(slices, given_back.reshape(slices.shape).astype(np.float32))
    return model, float(np.mean(keras.ops.convert_to_numpy(ssim)))


def stack_prior_values(values: Mapping[str, Any], layers: int) -> Values:
    """A run's values for its `StackPixelCNN`: the slice prior's network, one position a layer."""
    return dict(values, num_slice_positions=layers, prior_pose_condition=False,
                prior_augment_condition=False, condition_on="")


def train_stack_prior(values: Values, splits: Splits, output_dir: PathLike, resume: bool = False,
                      extra_callbacks: Callbacks = ()) -> tuple[keras.Model, float]:
    """Fits the `StackPixelCNN` over the volume VQ-VAE's code grids of the training stacks and
    their mirror images (every layer given all the layers below it); returns it and the test
    stacks' NLL in bits per code."""
    output_dir = pathlib.Path(output_dir)
    path = output_dir / VOLUME_VQVAE_FILE
    if not path.is_file():
        raise RunError(f"{path} not found: train the volume VQ-VAE first (`python train.py "
                       f"--stage volume_vqvae --output-dir {output_dir}`)")
    vqvae = run_folder.load_checkpoint(path)
    check_volume_vqvae(vqvae, values, path)
    data_fingerprint = run_folder.data_fingerprint(splits)
    covariate_specs, slice_rows = [], None
    if values.get("volume_condition_on"):  # a whole head's age, sex, head volume, ...
        splits, covariate_specs, slice_rows = covariates.for_splits(
            dict(values, condition_on=values["volume_condition_on"]), splits)
    stacks = split_stacks(values, splits, slice_rows)
    codes = {"train": np.concatenate([encode_volumes(vqvae, stacks["train"]),
                                      encode_volumes(vqvae, stacks["train"], mirrored=True)]),
             "validate": encode_volumes(vqvae, stacks["validate"]),
             "test": encode_volumes(vqvae, stacks["test"]) if len(stacks["test"]) else None}
    if covariate_specs:  # a mirrored head is the same subject's
        stacks["train_covariates"] = np.concatenate([stacks["train_covariates"]] * 2)
    layers, grid = codes["train"].shape[1:3]
    prior_values = stack_prior_values(values, layers)
    prior, done = (stages.load_for_resume(output_dir, "volume", values, prior_values) if resume
                   else (None, 0))
    if prior is None:
        prior = stages.compile_prior(build.stack_prior_from_hyperparameters(
            prior_values, grid, layers - 1, covariates=covariate_specs), prior_values)
    batch_size = values["prior_batch_size"]

    def examples(split: str, shuffle: bool) -> Any:
        layer, depth, below = stack_examples(codes[split], prior.context_layers,
                                             prior.absent_code)
        inputs = {"code_indices": layer, "slice_index": depth, "condition_codes": below}
        if covariate_specs:  # every layer of a stack gets its subject's row
            inputs["covariates"] = np.repeat(stacks[f"{split}_covariates"], layers, axis=0)
        return input_pipeline.batches((inputs, layer), batch_size, shuffle,
                                      seed=values["seed"], repeat=shuffle)

    steps = values["steps_per_epoch"] or math.ceil(len(codes["train"]) * layers / batch_size)
    record = {"data_fingerprint": data_fingerprint, "covariates": covariate_specs,
              "volume_codebook_fingerprint": run_folder.codebook_fingerprint(vqvae),
              "stacks": {name: 0 if grids is None else int(len(grids))
                         for name, grids in codes.items()}}
    if covariate_specs:  # what --unconditional-covariates drawn gives a whole head
        record["subject_covariates"] = stacks["train_covariates"][:len(stacks["train"])].tolist()
    stages.fit_stage(prior, "volume", examples("train", True), examples("validate", False),
                     dict(prior_values, steps_per_epoch=steps), values["prior_epochs"],
                     batch_size, output_dir, VOLUME_PRIOR_FILE, resume, extra_callbacks,
                     values["prior_patience"], done=done, record=record)
    stages.report_best(output_dir, "volume")
    prior = run_folder.load_checkpoint(output_dir / VOLUME_PRIOR_FILE)
    if codes["test"] is None:
        return prior, float("nan")
    test = prior.evaluate(examples("test", False), verbose=0, return_dict=True)
    return prior, float(test["bits_per_code"])
