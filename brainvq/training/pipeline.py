"""One train.py command: the checks, then the VQ-VAE stage and the prior stage over it."""
from __future__ import annotations

import math
import sys
from typing import Any, Mapping, Sequence

import keras

from brainvq import config
from brainvq.data import layouts
from brainvq.hints import PathLike, Values
from brainvq.runs import checks, run_folder, subjects
from brainvq.runs.run_folder import PRIOR_FILE, VQVAE_FILE, read_state
from brainvq.training.context_stage import train_slice_context
from brainvq.training.devices import make_strategy, set_precision
from brainvq.training.slab_stage import train_slab_autoencoder
from brainvq.training.stages import TrainingFailed, train_prior, train_vqvae  # noqa: F401
from brainvq.training.volume3d_stage import train_stack_prior, train_volume_vqvae
from brainvq.training.volume_stage import train_volume_prior


def train(values: Values, output_dir: PathLike, stages: Sequence[str], *, resume: bool,
          overwrite: bool, given: Mapping[str, Any], command: str) -> None:
    """Trains `stages` ("vqvae", "context", "slab", "prior", "volume_vqvae", "volume") into
    `output_dir` with
    `values`, once the folder is locked: nothing in it is written before every check has passed.

    Args:
        given: the flags given on the command line ({key: value}; some only apply to NIfTI).
        command: the command line, for the one line Ctrl-C ends with.
    """
    checks.check_data_flags(given, values)
    clear = checks.check_run_folder(output_dir, stages, values, resume, overwrite)
    keras.utils.set_random_seed(values["seed"])
    strategy = make_strategy(values["strategy"])
    policy = set_precision(values["mixed_precision"])
    if strategy is not None or policy != "float32":
        replicas = strategy.num_replicas_in_sync if strategy else 1
        print(f"strategy: {values['strategy']} ({replicas} replica(s)), precision: {policy}")
    splits, description = layouts.load_splits_for(values)
    print(description)
    checks.check_split_counts(values, splits)
    values = checks.check_covariates(values, splits, output_dir, stages, resume)
    checks.check_same_data(output_dir, stages, splits, resume, values["data_dir"])
    for stage in clear:
        run_folder.clear_stage(output_dir, stage)
        print(f"--overwrite: removed the earlier {stage} stage from {output_dir}")
    config.save(checks.record_of(values, output_dir, stages), output_dir)
    subjects.record(output_dir, splits)
    try:
        if "vqvae" in stages:
            train_vqvae(values, splits, output_dir, resume=resume, strategy=strategy)
            print(f"VQ-VAE saved to {output_dir / VQVAE_FILE}, log in "
                  f"{output_dir / 'vqvae_log.csv'}")
        if "context" in stages:
            _, streak = train_slice_context(
                values, splits, output_dir,
                resume=_resumable(output_dir, "context", resume, stages))
            print(f"slice-context refiner saved to {output_dir / run_folder.CONTEXT_FILE}, log "
                  f"in {output_dir / 'context_log.csv'}"
                  + (f"; the test stacks' streak index (real {streak['real']:.3f}): decoded "
                     f"slice by slice {streak['codes']:.3f}, refined {streak['refined']:.3f}"
                     if streak else ""))
        if "slab" in stages:
            _, accuracy = train_slab_autoencoder(
                values, splits, output_dir,
                resume=_resumable(output_dir, "slab", resume, stages))
            print(f"slab autoencoder saved to {output_dir / run_folder.SLAB_FILE}, log in "
                  f"{output_dir / 'slab_log.csv'}; it decodes {accuracy:.1%} of the test "
                  f"stacks' slice codes right")
        if "prior" in stages:
            _, test_bits = train_prior(values, splits, output_dir,
                                       resume=_resumable(output_dir, "prior", resume, stages),
                                       strategy=strategy)
            print(f"prior saved to {output_dir / PRIOR_FILE}, log in "
                  f"{output_dir / 'prior_log.csv'}; test-split NLL {test_bits:.3f} bits per "
                  f"code (uniform: {math.log2(values['num_codes']):.1f})")
        if "volume_vqvae" in stages:
            _, ssim = train_volume_vqvae(values, splits, output_dir, resume=resume)
            print(f"volume VQ-VAE saved to {output_dir / run_folder.VOLUME_VQVAE_FILE}, log in "
                  f"{output_dir / 'volume_vqvae_log.csv'}; the test stacks given back: axial "
                  f"slice SSIM {ssim:.3f}")
        if "volume" in stages:
            three_d = config.uses_3d_code(values)
            resumes = _resumable(output_dir, "volume", resume, stages)
            _, test_bits = (train_stack_prior(values, splits, output_dir, resume=resumes)
                            if three_d else
                            train_volume_prior(values, splits, output_dir, resume=resumes,
                                               strategy=strategy))
            print(f"volume prior saved to {output_dir / run_folder.VOLUME_PRIOR_FILE}, log in "
                  f"{output_dir / 'volume_log.csv'}; test-split NLL {test_bits:.3f} bits per "
                  f"code given " + ("every layer below" if three_d else "the slice below"))
    except KeyboardInterrupt:
        sys.exit(checks.interrupted_message(output_dir, stages, command))


def _resumable(output_dir: PathLike, stage: str, resume: bool, stages: Sequence[str]) -> bool:
    """Whether a prior `stage` ("prior" or "volume") continues from its checkpoint: with
    --resume, unless the VQ-VAE trained on in this command, in which case the prior's codes
    belong to the earlier VQ-VAE and it is cleared and trained again from its first epoch."""
    if not (resume and {"vqvae", "volume_vqvae"} & set(stages)
            and read_state(output_dir).get(stage)):
        return resume
    try:
        run_folder.check_prior_matches_vqvae(output_dir, stage)
    except run_folder.RunError:
        run_folder.clear_stage(output_dir, stage)
        what = {"volume": "volume prior", "context": "slice-context refiner",
                "slab": "slab autoencoder"}.get(stage, stage)
        print(f"the VQ-VAE trained on, so the {what} trained over the earlier one is trained "
              f"again over the new one, from its first epoch")
        return False
    return resume
