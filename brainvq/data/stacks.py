"""Slices as stacks: which slices of a split are consecutive slices of one subject (the volume
prior's training pairs), and each subject's slices put back together as a volume."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from brainvq.data.slice_sets import SliceSet


def consecutive_pairs(slice_index: ArrayLike, case_id: ArrayLike
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of slices whose subject also has the slice just below them.

    Args:
        slice_index: [N] slice positions (in a stack, its distance in slices from the bottom).
        case_id: [N] the subject of each slice.

    Returns:
        (rows, below): int arrays [P]; slice rows[p] lies at position slice_index[below[p]] + 1
        of the same subject, for every such pair.
    """
    slice_index = np.asarray(slice_index, np.int64)
    case_id = np.asarray(case_id, np.int64)
    where = {(int(case), int(position)): row
             for row, (case, position) in enumerate(zip(case_id, slice_index))}
    rows, below = [], []
    for row, (case, position) in enumerate(zip(case_id, slice_index)):
        other = where.get((int(case), int(position) - 1))
        if other is not None:
            rows.append(row)
            below.append(other)
    return np.asarray(rows, np.int64), np.asarray(below, np.int64)


def subject_stacks(slice_set: SliceSet, length: int | None = None) -> dict[int, np.ndarray]:
    """Each subject's slices, bottom first: {case_id: images [S, H, W]} for every subject whose
    positions run without a gap from 0 (to `length` - 1 when given: shorter stacks are left
    out)."""
    stacks = {}
    for case in np.unique(slice_set.case_id):
        rows = np.flatnonzero(slice_set.case_id == case)
        rows = rows[np.argsort(slice_set.slice_index[rows])]
        positions = slice_set.slice_index[rows]
        if positions[0] != 0 or np.any(np.diff(positions) != 1):
            continue
        if length is not None:
            if len(rows) < length:
                continue
            rows = rows[:length]
        stacks[int(case)] = slice_set.images[rows, ..., 0]
    return stacks
