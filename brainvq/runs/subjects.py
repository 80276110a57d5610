"""A run knows its subjects by name: which subjects it trained on, chose its settings on and
held out (recorded at training), so that scoring takes only subjects the model never saw,
whatever folder the slices come from."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from brainvq.data import demo
from brainvq.data.slice_sets import SliceSet, subject_name, subject_names
from brainvq.hints import PathLike
from brainvq.runs.run_folder import RunError, read_state, write_state

SPLITS = ("train", "validate", "test")


def record(output_dir: PathLike, splits: Mapping[str, SliceSet]) -> None:
    """Writes each split's subject names into the run's state ("subjects"), once per run: a
    later stage trained on the same subjects keeps the record. The demo (one template, split by
    slice ranges, not by subject) records none."""
    if demo.is_demo(splits["train"]):
        return
    state = read_state(output_dir)
    state["subjects"] = {name: subject_names(splits[name]) for name in SPLITS}
    write_state(output_dir, state)


def recorded(output_dir: PathLike) -> dict[str, set[str]] | None:
    """{split: set of subject names} as the run recorded them, or None (a run from before)."""
    entry = read_state(output_dir).get("subjects")
    return None if entry is None else {name: set(entry.get(name, [])) for name in SPLITS}


def held_out(output_dir: PathLike, slices: SliceSet, split: str = "test",
             data_dir: str | None = None) -> SliceSet:
    """The slices of `slices` (the `split` to score) whose subjects the run never trained on
    (nor, for the test split, chose its settings on), with one line saying which were left out.

    A run without a record scores `slices` as they are. Subjects the record does not name at
    all (another folder's) are held out: the model never saw them.

    Raises:
        RunError: none of the subjects is held out (the message names them).
    """
    subjects = recorded(output_dir)
    if subjects is None or split == "train":
        return slices
    seen = subjects["train"] | (subjects["validate"] if split == "test" else set())
    names = np.array([subject_name(path) for path in slices.paths])
    known = sorted(set(names) & seen)
    if not known:
        return slices
    where = f" in {data_dir}" if data_dir else ""
    kept = ~np.isin(names, known)
    trained = sorted(set(known) & subjects["train"])
    chosen = sorted(set(known) - subjects["train"])
    why = ", ".join(part for part in (
        f"{len(trained)} in its training split ({_names(trained)})" if trained else "",
        f"{len(chosen)} in its validation split ({_names(chosen)})" if chosen else "") if part)
    if not kept.any():
        raise RunError(f"none of the {len(set(names))} {split} subjects{where} is held out "
                       f"from {output_dir}: {why}. Score it on subjects it never saw (its "
                       f"recorded {split} subjects: {_names(sorted(subjects[split]))})")
    print(f"scoring {len(set(names[kept]))} held-out subject(s) of the {len(set(names))} "
          f"{split} subjects{where}; left out, as {output_dir} saw them: {why}")
    return slices.take(kept)


def _names(names: Sequence[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more"
                                        if len(names) > shown else "")
