"""The slab stage (runs cut as stacks, `--slab-depth F`): a `SlabAutoencoder` (models/slabs.py)
trained on every subject's stack of slice codes and its left-right mirror image, keeping the
epoch with the best validation loss as `slab_autoencoder.keras`."""
from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping

import keras
import numpy as np

from brainvq.data import input_pipeline
from brainvq.generation.stacks import decode_slabs, encode_slabs
from brainvq.hints import Callbacks, PathLike, Splits, Values
from brainvq.models.slabs import SlabAutoencoder
from brainvq.runs import run_folder
from brainvq.runs.run_folder import SLAB_FILE, VQVAE_FILE, RunError
from brainvq.training import stages
from brainvq.training.slab_codes import stack_codes


def slab_autoencoder_from_values(values: Mapping[str, Any]) -> SlabAutoencoder:
    """An untrained `SlabAutoencoder` of a run's settings, compiled."""
    model = SlabAutoencoder(num_slice_codes=values["num_codes"], slab_depth=values["slab_depth"],
                            slab_num_codes=values["slab_num_codes"],
                            slab_channels=values["slab_channels"],
                            commitment_cost=values["commitment_cost"],
                            ema_decay=values["ema_decay"],
                            dead_code_threshold=values["dead_code_threshold"])
    model.compile(optimizer=keras.optimizers.Adam(values["prior_learning_rate"] / 2))
    return model


def train_slab_autoencoder(values: Values, splits: Splits, output_dir: PathLike,
                           resume: bool = False, extra_callbacks: Callbacks = ()
                           ) -> tuple[SlabAutoencoder, float]:
    """Fits the slab autoencoder on the training stacks and their mirror images, keeping the
    epoch with the best validation loss as `slab_autoencoder.keras`; returns it and the test
    stacks' slice codes it decodes right (a share)."""
    output_dir = pathlib.Path(output_dir)
    vqvae = stages.frozen_vqvae(output_dir, values)
    stacks = stack_codes(vqvae, splits, output_dir, values)
    if len(stacks["train"][0]) == 0 or len(stacks["validate"][0]) == 0:
        raise RunError(f"no whole stacks of {values['slices_per_volume']} slices among the "
                       f"training or validation subjects: the slab stage needs them")
    model, done = (stages.load_for_resume(output_dir, "slab", values) if resume else (None, 0))
    if model is None:
        model = slab_autoencoder_from_values(values)
    train = np.concatenate([stacks["train"][0], stacks["train_mirrored"][0]])
    batch_size = 4
    steps = values["steps_per_epoch"] or math.ceil(len(train) / batch_size)
    record = {"data_fingerprint": run_folder.data_fingerprint(splits),
              "vqvae_fingerprint": run_folder.file_fingerprint(output_dir / VQVAE_FILE)}
    stages.fit_stage(
        model, "slab", input_pipeline.batches((train, train), batch_size, True,
                                              seed=values["seed"], repeat=True),
        input_pipeline.batches((stacks["validate"][0],) * 2, batch_size, False),
        dict(values, steps_per_epoch=steps), values["slab_epochs"], batch_size, output_dir,
        SLAB_FILE, resume, extra_callbacks, values["prior_patience"], done=done, record=record)
    stages.report_best(output_dir, "slab")
    model = run_folder.load_checkpoint(output_dir / SLAB_FILE)
    test = stacks["test"][0]
    if len(test) == 0:
        return model, float("nan")
    decoded = decode_slabs(model, encode_slabs(model, test))
    return model, float(np.mean(decoded == test))
