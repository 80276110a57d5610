"""What train.py checks before it writes anything in a run folder: the values it trains with
(--resume starts from the run's own), the data flags, the folder's stages and checkpoints, the
data it was trained on; and the line Ctrl-C ends with."""
from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys
from typing import Any, Mapping, Sequence

from brainvq import config, errors
from brainvq.data import demo, layouts, nifti
from brainvq.data.slice_sets import SliceSet, subject_names
from brainvq.hints import PathLike, Values
from brainvq.runs import run_folder
from brainvq.runs.run_folder import (
    STATE_FILE,
    VQVAE_FILE,
    RunError,
    epochs_done,
    last_checkpoint_name,
    read_state,
)


def stages_of(stage: str, values: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The stages `--stage` names: "all" is the VQ-VAE and the prior, and the volume prior
    too when the data are cut as stacks (`slice_spacing` > 0), after the slice-context refiner
    (`context_blocks` > 0, one level) and the slab autoencoder (`slab_depth`), and with
    `volume_latent` "3d" the volume VQ-VAE before it."""
    if stage != "all":
        return (stage,)
    stacks = bool(values and values.get("slice_spacing", 0) > 0)
    if not stacks:
        return ("vqvae", "prior")
    return ("vqvae", *(("context",) if config.uses_context(values) else ()),
            *(("slab",) if values.get("slab_depth") else ()), "prior",
            *(("volume_vqvae",) if config.uses_3d_code(values) else ()), "volume")


def run_values(args: argparse.Namespace) -> Values:
    """The values this command trains with: the defaults and the flags given; with --resume,
    the run's saved values and the flags given (so only a flag given can differ). A data folder
    that exists, and the figures folder, are recorded as absolute paths, so the run finds them
    from any directory (a resumed run keeps the data path it recorded: its data fingerprint
    holds the paths as given). The run folder is recorded absolute too, and a resumed run's own
    figures folder follows the run when it has been moved."""
    values = config.resolve(args)
    output_dir = pathlib.Path(values["output_dir"])
    if args.resume and args.export is None:
        if not (output_dir / config.HYPERPARAMETERS_FILE).is_file():
            what = "does not exist" if not output_dir.exists() else "holds no run"
            raise RunError(f"nothing to resume: {output_dir} {what}. Drop --resume to "
                           f"start a run there, or point --output-dir at a run folder")
        saved = run_folder.run_paths(config.load(output_dir), output_dir)
        own = os.path.join(os.path.abspath(saved["output_dir"]), "images")
        images_dir = saved["images_dir"] or ""
        if not os.path.isabs(images_dir) or os.path.normpath(images_dir) == own:
            saved["images_dir"] = ""  # the run's own figures folder, wherever the run now is
        values = config.resolve(args, base=dict(saved, output_dir=str(output_dir)))
    else:
        for key in run_folder.PATH_KEYS:  # the default data folder stays the default (the demo)
            path = values[key]
            if path and path != config.DEFAULTS[key] and os.path.exists(path):
                values[key] = os.path.abspath(path)
    values["images_dir"] = os.path.abspath(values["images_dir"])
    values["output_dir"] = os.path.abspath(values["output_dir"])
    return values


def check_data_flags(given: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Refuses flags that only NIfTI volumes use (cutting, cropping, the subject split) when
    the data are slices already cut, so that no ignored value is recorded as if it was used."""
    layout = layouts.data_layout(values["data_dir"])
    ignored = [key for key in layouts.VOLUME_ONLY_KEYS if key in given]
    if layout != "nifti-volumes" and ignored:
        flags = ", ".join("--" + key.replace("_", "-") for key in ignored)
        held = {"demo": "the embedded demo data", "png": "slices in the OASIS PNG layout",
                "nifti-slices": "2D NIfTI slices"}[layout]
        verb = "applies" if len(ignored) == 1 else "apply"
        raise RunError(f"{flags} {verb} only to a folder of 3D NIfTI volumes, and "
                       f"{values['data_dir']} holds {held}, already cut and split: drop "
                       f"{flags}")


def check_run_folder(output_dir: PathLike, stages: Sequence[str], values: Values, resume: bool,
                     overwrite: bool) -> list[str]:
    """Refuses, before anything in the folder is written, a run that would overwrite or mix
    work: a stage already there without --resume or --overwrite, a VQ-VAE retrained under a
    prior that would go stale, a prior stage without a VQ-VAE, and hyperparameters that do not
    match the checkpoints kept.

    Returns:
        The stages --overwrite will clear.
    """
    output_dir = pathlib.Path(output_dir)
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other: --resume continues the "
                       "run in --output-dir, --overwrite replaces it")
    existing = [stage for stage in run_folder.STAGE_FILES
                if run_folder.has_stage(output_dir, stage)]
    affected = list(stages) + ([stage for stage in ("context", "slab", "prior", "volume")
                                if stage not in stages] if "vqvae" in stages else [])
    clashes = [stage for stage in affected if stage in existing]
    if clashes and not (resume or overwrite):
        files = ", ".join(path.name for stage in clashes
                          for path in run_folder.stage_files(output_dir, stage)) or STATE_FILE
        raise RunError(
            f"{output_dir} already holds a trained {' and '.join(clashes)} stage ({files}); "
            f"nothing was changed. Continue it with --resume, replace it with --overwrite, or "
            f"train into another --output-dir")
    saved_file = output_dir / config.HYPERPARAMETERS_FILE
    keeps_vqvae = "vqvae" not in stages or resume
    if keeps_vqvae and saved_file.exists():
        saved = config.load(output_dir)
        if "context" in stages and not run_folder.has_stage(output_dir, "context"):
            # a refiner added to a run that has none yet (its width is chosen now)
            saved = dict(saved, context_blocks=values.get("context_blocks", 0))
        keys = None if resume else config.VQVAE_KEYS
        config.check_compatible(saved, values, output_dir, keys=keys)
        changes = config.resume_changes(saved, values) if resume else ()
        if "vqvae" not in stages:  # the prior stage neither uses nor records them
            changes = [change for change in changes
                       if change[0] not in config.VQVAE_TRAINING_KEYS]
        for key, before, now in changes:
            # --resume starts from the defaults and the flags given, not from the saved values
            print(f"warning: --resume continues {output_dir} with {key} = {now!r}; it was "
                  f"trained with {before!r} (pass --{key.replace('_', '-')} {before} to keep "
                  f"it)", file=sys.stderr)
    if resume and stages == ("vqvae",) and run_folder.has_stage(output_dir, "prior") \
            and vqvae_trains_on(output_dir, values):
        raise RunError(
            f"training the VQ-VAE in {output_dir} on (to --epochs {values['epochs']}) would "
            f"leave its prior trained over the earlier VQ-VAE, whose codes the new one no longer "
            f"makes; nothing was changed. Either train both on (the prior is retrained over the "
            f"new VQ-VAE): python train.py --resume --epochs {values['epochs']} --output-dir "
            f"{shlex.quote(str(output_dir))}; or keep this VQ-VAE and train only the prior on: "
            f"python train.py --stage prior --resume --prior-epochs N --output-dir "
            f"{shlex.quote(str(output_dir))}")
    if "volume" in stages and values.get("slice_spacing", 0) <= 0:
        raise RunError("--stage volume trains a prior of each slice given the one below "
                       "it, which needs whole stacks: cut the volumes with --slice-spacing "
                       "2 --slices-per-volume 64 --num-slice-positions 64 (a run of its own)")
    if "context" in stages and not config.uses_context(values):
        raise RunError("--stage context refines each stack's latents along its slices, which "
                       "needs whole stacks and one level: cut the volumes with --slice-spacing "
                       "2 --slices-per-volume 64 --num-slice-positions 64, --levels 1, and "
                       "--context-blocks 4")
    if "vqvae" not in stages and not (output_dir / VQVAE_FILE).is_file():
        raise RunError(f"{output_dir / VQVAE_FILE} not found: train the VQ-VAE first "
                       f"(`python train.py --stage vqvae --output-dir {output_dir}`)")
    return clashes if overwrite else []


def vqvae_trains_on(output_dir: PathLike, values: Mapping[str, Any]) -> bool:
    """Whether a resumed VQ-VAE stage would train more epochs (and so replace `vqvae.keras`)."""
    entry = read_state(output_dir).get("vqvae", {})
    return (entry.get("epochs_done", 0) < values["epochs"]
            and not entry.get("stopped_early", False))


def record_of(values: Values, output_dir: PathLike, stages: Sequence[str]) -> Values:
    """The hyperparameters to save in `output_dir`: `values`, except that a prior stage over a
    VQ-VAE already there keeps how that VQ-VAE was trained (its epochs, learning rate, losses:
    `VQVAE_TRAINING_KEYS`) as the folder recorded them, not this command's defaults."""
    saved_file = pathlib.Path(output_dir) / config.HYPERPARAMETERS_FILE
    if "vqvae" in stages or not saved_file.is_file():
        return values
    saved = config.load(output_dir)
    return dict(values, **{key: saved[key] for key in config.VQVAE_TRAINING_KEYS})


def check_split_counts(values: Mapping[str, Any], splits: Mapping[str, SliceSet]) -> None:
    """Refuses a --split of subject counts (whole numbers) that the data's subjects cannot
    fill: the loader would otherwise take them as shares of fewer subjects."""
    shares = config.split_shares(values["split"])
    if demo.is_demo(splits["train"]) or shares is None or not nifti.is_counts(shares):
        return
    subjects = sum(len(subject_names(part)) for part in splits.values())
    asked = int(sum(shares))
    if asked > subjects:
        raise errors.DatasetError(
            f"--split {values['split']} asks for {asked} subjects (whole numbers are subject "
            f"counts), and {values['data_dir']} has {subjects}: give counts that add up to at "
            f"most {subjects}, or shares such as 0.8,0.1,0.1")


def check_covariates(values: Values, splits: Mapping[str, SliceSet], output_dir: PathLike,
                     stages: Sequence[str], resume: bool) -> Values:
    """Reads the covariates file before any training, so that a bad file (a non-numeric age, a
    subject on two rows, a missing subject) is refused before the VQ-VAE stage, not after it.
    With --resume, refuses a file whose covariates differ from those the prior stages in the
    folder were trained on. A file given without --condition-on is not used: it says so, and
    the run does not record it. Returns the values to train and record with."""
    names = {"prior": values.get("condition_on", ""), "volume": values.get("condition_on", "")}
    if config.uses_3d_code(values):  # a 3D volume prior has covariates of its own
        names["volume"] = values.get("volume_condition_on", "")
    if not any(names.values()):
        if values.get("covariates"):
            print(f"note: --covariates {values['covariates']} is not used: no --condition-on "
                  f"names a column of it to condition the prior on (e.g. --condition-on age,sex)")
        return dict(values, covariates="")
    from brainvq.data import covariates  # the file's rows, as the prior stage reads them

    state = read_state(output_dir) if resume else {}
    for stage in ("prior", "volume"):
        if not names[stage]:
            continue
        _, specs, _ = covariates.for_splits(dict(values, condition_on=names[stage]), splits,
                                            verbose=False)
        recorded = state.get(stage, {}).get("covariates")
        if stage in stages and recorded is not None and recorded != specs:
            raise RunError(
                f"--covariates {values['covariates']} gives other covariates than the {stage} "
                f"stage in {output_dir} was trained on (recorded: {_spec_text(recorded)}; this "
                f"file: {_spec_text(specs)}): resume with the file it was trained with, or start "
                f"the stage again with --overwrite")
    return values


def _spec_text(specs: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{spec['name']} {spec['low']:g}-{spec['high']:g}"
                     if spec["kind"] == "continuous"
                     else f"{spec['name']} {'/'.join(spec['classes'])}" for spec in specs)


def check_same_data(output_dir: PathLike, stages: Sequence[str], splits: Mapping[str, SliceSet],
                    resume: bool, data_dir: str) -> None:
    """With --resume, refuses a stage whose recorded data differ from the data loaded now."""
    if not resume:
        return
    state = read_state(output_dir)
    current = {run_folder.data_fingerprint(splits),
               run_folder.data_fingerprint(splits, legacy=True)}
    for stage in stages:
        recorded = state.get(stage, {}).get("data_fingerprint")
        if recorded is not None and recorded not in current:
            raise RunError(
                f"the {stage} stage in {output_dir} was trained on other data than "
                f"--data-dir {data_dir} gives now (another file list or split): resume with "
                f"the same --data-dir and --seed, or start again with --overwrite")


def interrupted_message(output_dir: PathLike, stages: Sequence[str], command: str) -> str:
    """The one line Ctrl-C ends with: where the last checkpoint is and how to continue."""
    for stage in reversed(stages):
        done = epochs_done(output_dir, stage)
        if done:
            last = pathlib.Path(output_dir) / last_checkpoint_name(run_folder.STAGE_FILES[stage])
            break
    else:
        return (f"interrupted before the first checkpoint; nothing to resume in {output_dir} "
                f"(rerun the same command)")
    resume = command if "--resume" in command else command + " --resume"
    return (f"interrupted: the last checkpoint is {last} ({stage} stage, epoch {done}); "
            f"continue with: {resume}")
