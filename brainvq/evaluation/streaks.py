"""Do stacked slices hold together along the slice axis? Three figures of whole volumes.

A volume drawn slice by slice can have sharp axial slices and still fall apart across them:
seen from the front or the side, horizontal streaks run through it. These figures put numbers
on that, each for synthetic stacks beside real ones cut the same way:

* **Streak index**: inside the head, the mean absolute intensity step between neighbouring
  slices over the mean step between neighbouring pixels in-plane. Streaks raise the first and
  not the second.
* **High-frequency share**: for each column of the head (one in-plane pixel, through every
  slice), the share of its power (mean removed) in the upper half of the frequencies along the
  slice axis; the mean over the columns.
* **Nearest training volume, 3D SSIM**: how close each volume comes to any training volume
  (at half resolution in every direction); a synthetic head closer than every unseen real head
  is a copy.

No file is read or written here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike
from skimage.metrics import structural_similarity

from brainvq.evaluation.realism import TISSUE_THRESHOLD


def _mean_step(stack: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """The mean absolute difference between neighbours along `axis`, over pairs both inside
    `mask`."""
    step = np.abs(np.diff(stack, axis=axis))
    inside = np.logical_and(np.take(mask, range(mask.shape[axis] - 1), axis=axis),
                            np.take(mask, range(1, mask.shape[axis]), axis=axis))
    return float(step[inside].mean()) if inside.any() else float("nan")


def _known_mean(rows: ArrayLike) -> np.ndarray:
    """Column means [K] of rows [N, K] over the rows that are not NaN (NaN where none is)."""
    rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
    known = ~np.isnan(rows)
    counts = known.sum(axis=0)
    return np.where(counts > 0, np.where(known, rows, 0.0).sum(axis=0) / np.maximum(counts, 1),
                    np.nan)


def neighbour_steps(stack: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> tuple[float, float]:
    """A stack [S, H, W] (slices first): (the mean absolute step between neighbouring slices
    inside the head, the mean step between neighbouring pixels in-plane over rows and columns).
    The streak index is their ratio: it rises with steps between slices, and as much with
    in-plane blur (a decoder's), which the two apart tell from each other."""
    stack = np.asarray(stack, np.float64)
    mask = stack > threshold
    steps = [_mean_step(stack, mask, axis) for axis in (0, 1, 2)]
    return steps[0], float(np.mean(steps[1:]))


def brightness_steps(stack: np.ndarray, threshold: float = TISSUE_THRESHOLD, window: int = 5
                     ) -> tuple[float, float]:
    """A stack [S, H, W]: each slice's mean brightness inside the head, and (its mean absolute
    step from slice to slice, its mean absolute deviation from its own running mean over
    `window` slices). Whole-slice brightness jumps: a few percent of the pixel steps, so they
    hardly move the streak index, but they run across a whole slice, as a reslice shows."""
    stack = np.asarray(stack, np.float64)
    means = np.array([image[image > threshold].mean() for image in stack
                      if (image > threshold).any()])
    if len(means) <= window:
        return float("nan"), float("nan")
    trend = np.convolve(means, np.ones(window) / window, mode="same")
    edge = window // 2
    return (float(np.abs(np.diff(means)).mean()),
            float(np.abs(means - trend)[edge:len(means) - edge].mean()))


def streak_index(stack: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> float:
    """A stack [S, H, W] (slices first): the mean step between neighbouring slices inside the
    head over the mean step between neighbouring pixels in-plane (rows and columns)."""
    return _ratio(*neighbour_steps(stack, threshold))


def _ratio(slice_step: float, in_plane_step: float) -> float:
    """The streak index from its two parts (`neighbour_steps`)."""
    if np.isnan([slice_step, in_plane_step]).any():
        return float("nan")  # no head (or no neighbouring pair inside it)
    return slice_step / in_plane_step


def high_frequency_share(stack: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> float:
    """A stack [S, H, W]: for each in-plane pixel inside the head in at least half the slices,
    the share of its column's power (mean removed) in the upper half of the frequencies along
    the slice axis; the mean over those columns."""
    stack = np.asarray(stack, np.float64)
    columns = stack.reshape(len(stack), -1)
    inside = (columns > threshold).mean(axis=0) >= 0.5
    columns = columns[:, inside]
    columns = columns - columns.mean(axis=0)
    power = np.abs(np.fft.rfft(columns, axis=0)) ** 2
    power = power[1:]  # without the mean
    upper = power[len(power) // 2:].sum(axis=0)
    total = power.sum(axis=0)
    kept = total > 0
    return float((upper[kept] / total[kept]).mean()) if kept.any() else float("nan")


def _half(stack: np.ndarray) -> np.ndarray:
    """A stack at half resolution in every direction (2x2x2 means; odd edges dropped); as it
    is when a side would fall under SSIM's 7-voxel window."""
    stack = np.asarray(stack, np.float64)
    if min(stack.shape) < 14:
        return stack
    s, h, w = (side // 2 * 2 for side in stack.shape)
    stack = stack[:s, :h, :w]
    return stack.reshape(s // 2, 2, h // 2, 2, w // 2, 2).mean(axis=(1, 3, 5))


def nearest_volume_ssim(volumes: Sequence[np.ndarray], training: Sequence[np.ndarray]
                        ) -> np.ndarray:
    """[V] each volume's highest 3D SSIM (data range 1, at half resolution) to any of the
    `training` volumes (all [S, H, W], one shape)."""
    return _nearest(volumes, [_half(stack) for stack in training])


def _nearest(volumes: Sequence[np.ndarray], training: Sequence[np.ndarray]) -> np.ndarray:
    """`nearest_volume_ssim` against training volumes already at half resolution."""
    volumes = list(volumes)
    smallest = min(training[0].shape)
    window = min(7, smallest if smallest % 2 else smallest - 1)  # odd, within every side
    if window < 3:
        return np.full(len(volumes), np.nan)
    return np.array([max(structural_similarity(_half(stack), other, data_range=1.0,
                                               win_size=window) for other in training)
                     for stack in volumes])


def stack_figures(stacks: Sequence[np.ndarray], real: Sequence[np.ndarray] | None = None
                  ) -> dict[str, float]:
    """A set of stacks [V, S, H, W]: {"streak_index", "high_frequency_share"} (the mean across
    stacks) and their "<figure>_sd", and the mean "slice_step" and "in_plane_step" (the streak
    index's two parts, `neighbour_steps`) and "brightness_step" and "brightness_jump"
    (`brightness_steps`); with the `real` stacks they stand for (the same
    shape), "slice_ssim", the mean SSIM (data range 1) of each slice to its real one."""
    figures = {}
    if real is not None:
        figures["slice_ssim"] = float(np.mean([
            structural_similarity(image, target, data_range=1.0)
            for stack, reference in zip(stacks, real) for image, target in zip(stack, reference)]))
    steps = np.array([neighbour_steps(stack) for stack in stacks])  # once: the index's parts
    for figure, values in (("streak_index", [_ratio(*pair) for pair in steps]),
                           ("high_frequency_share", [high_frequency_share(stack)
                                                     for stack in stacks])):
        values = np.array(values)
        figures[figure], figures[f"{figure}_sd"] = float(values.mean()), float(values.std())
    figures["slice_step"], figures["in_plane_step"] = map(float, _known_mean(steps))
    jumps = np.array([brightness_steps(stack) for stack in stacks])
    figures["brightness_step"], figures["brightness_jump"] = map(float, _known_mean(jumps))
    return figures


def streak_report(samples: Sequence[np.ndarray], real: Sequence[np.ndarray],
                  training: Sequence[np.ndarray]) -> dict[str, float]:
    """The three figures for `samples` and `real` stacks ([V, S, H, W] or lists), the nearest
    training volume among `training`: a dict of `<figure>_samples` / `<figure>_real` for each
    figure of `stack_figures` (its "<figure>_sd" as `<figure>_sd_samples` / `_sd_real`), and
    the nearest training volume's SSIM (maximum and mean)."""
    report, training = {}, [_half(stack) for stack in training]  # once for both groups
    for name, group in (("samples", samples), ("real", real)):
        group = list(group)
        for key, value in stack_figures(group).items():
            sd = key.endswith("_sd")
            report[f"{key[:-3]}_sd_{name}" if sd else f"{key}_{name}"] = value
        nearest = _nearest(group, training)
        report[f"nearest_training_ssim_max_{name}"] = float(nearest.max())
        report[f"nearest_training_ssim_mean_{name}"] = float(nearest.mean())
    return report
