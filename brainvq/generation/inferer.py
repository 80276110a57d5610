"""The sampler as an inferer: models and conditions in, code grids and images out.

Shaped like MONAI's inferers: `SliceInferer` holds a VQ-VAE, a prior, the sampling settings
and the two distributions a run records at training (how often each slice position occurs
among the training slices, and the training subjects' covariates rows), all passed in. It reads
and writes no files; `brainvq.runs.run.Run` builds one from a run folder, and
`brainvq.generation.generate` writes what it draws.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras
import numpy as np
from numpy.typing import ArrayLike

from brainvq.data import pose
from brainvq.generation import sampling

SAMPLING_BATCH = 128  # grids per compiled sampling call (the batches' seeds depend on it)


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How a prior is sampled (the `hyperparameters.json` keys of the same names).

    temperature, top_k: the code distribution (top_k 0 or >= K: all codes).
    guidance: classifier-free guidance on a requested slice position (1: none).
    covariate_guidance: the same on requested covariates, at its own scale.
    unconditional: "positions" (each unconditional sample draws its slice position from the
        training slices' and is sampled given it) or "null" (the prior's no-condition row).
    unconditional_guidance: guidance on the position an unconditional sample drew.
    unconditional_covariates: the covariates of a sample that requests none (at a requested
        slice position or not): "null" (none) or "drawn" (one training subject's row each).
    pose_spread: for a prior told its training grids' head poses (`prior_pose_condition`), the
        pose each sample is drawn at: 0 centred and upright; s > 0 the pose of a training slice
        at the sample's slice position, times s (1: heads sit and lean as the training slices').
    """

    temperature: float = 1.0
    top_k: int = 0
    guidance: float = 1.0
    covariate_guidance: float = 1.0
    unconditional: str = "positions"
    unconditional_guidance: float = 1.0
    unconditional_covariates: str = "null"
    pose_spread: float = 0.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any], **overrides: Any) -> SamplingSettings:
        """The settings a run's values hold (keys it lacks keep their defaults); `overrides`
        that are not None replace them."""
        names = [field.name for field in dataclasses.fields(cls)]
        given = {name: values[name] for name in names if name in values}
        given.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**given)


@dataclasses.dataclass
class Request:
    """`count` samples: at `slice_index` (None: unconditional, as the settings say; one int;
    or one per sample) with `covariates` (None, one row [C] or one per sample [count, C]; NaN:
    not given)."""

    count: int
    slice_index: object = None
    covariates: object = None

    def __post_init__(self):
        self.count = int(self.count)


def stratified_positions(counts: ArrayLike, count: int, seed: int) -> np.ndarray:
    """[count] int32 slice positions (seeded, in random order) in proportion to `counts`.

    The positions at `count` evenly spaced quantiles (one random offset) of the distribution,
    so each position comes `count` x its share times, give or take one. Drawn independently
    instead, one seed's positions lean to the top of the head and another's to the base, and
    since the realism feature space reads slice positions, the unconditional Fréchet distance
    moved 2.5x between sampling seeds (1.24x stratified; docs/experiments.md, "Where the 6x
    comes from").
    """
    counts = np.asarray(counts, np.float64)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(counts) / np.sum(counts)
    quantiles = (np.arange(count) + rng.random()) / count
    drawn = np.minimum(np.searchsorted(cumulative, quantiles, side="right"), len(counts) - 1)
    return rng.permutation(drawn).astype(np.int32)


def stratified_rows(rows: ArrayLike, count: int, seed: int) -> np.ndarray:
    """[count, C] float32: rows of `rows` [S, C], every one count / S times, give or take one
    (seeded, in random order; a stream apart from `stratified_positions`' for the same seed)."""
    rows = np.asarray(rows, np.float32)
    rng = np.random.default_rng([seed, 1])
    rounds = -(-count // len(rows))
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(rounds)])[:count]
    return rows[rng.permutation(order)]


class SliceInferer:
    """Draws slices from a VQ-VAE and its prior; no file is read or written.

    Args:
        vqvae: the trained VQ-VAE (`decode_codes`, `grid_size`).
        prior: its trained prior.
        settings: a `SamplingSettings`.
        slice_position_counts: [P] how many training slices each position had, for unconditional
            samples under `unconditional` "positions" (None: uniform over the positions).
        subject_covariates: [S, C] the training subjects' covariates rows, for
            `unconditional_covariates` "drawn" (needed only then).
        slice_poses: [M, 3] the training slices' (slice position, centroid offset, tilt), for
            a `pose_spread` above 0 (needed only then; `pose.draw_poses`).
    """

    def __init__(self, vqvae: keras.Model, prior: keras.Model, settings: SamplingSettings,
                 slice_position_counts: ArrayLike | None = None,
                 subject_covariates: np.ndarray | None = None,
                 slice_poses: np.ndarray | None = None) -> None:
        self.vqvae, self.prior, self.settings = vqvae, prior, settings
        positions = prior.num_slice_positions
        counts = slice_position_counts
        if counts is None or np.sum(counts) <= 0:
            counts = np.ones(positions)
        self.slice_position_counts = np.asarray(counts, np.float64)[:positions]
        self.subject_covariates = subject_covariates
        self.covariate_width = len(getattr(prior, "covariates", []))
        if settings.pose_spread and not getattr(prior, "augmentation_inputs", 0):
            raise ValueError("pose_spread needs a prior trained with prior_pose_condition")
        if settings.pose_spread and slice_poses is None:
            raise ValueError("pose_spread needs the training slices' poses (slice_poses)")
        self.slice_poses = slice_poses

    def draws_subject_covariates(self, request: Request) -> bool:
        """Whether `request` takes training subjects' rows (p(covariates) p(x | them)): it
        requests no covariate, and the settings draw them."""
        return bool(self.covariate_width and request.covariates is None
                    and self.settings.unconditional_covariates == "drawn")

    def _conditions(self, request: Request, seed: int) -> tuple:
        """(slice positions, slice guidance, covariates rows, covariate guidance, augmentation
        rows) of one request, each [count], [count, C] or [count, A]."""
        settings, count = self.settings, request.count
        requested, scale = request.slice_index, settings.guidance
        if requested is None:  # unconditional: the drawn position's own guidance, or none
            positions = settings.unconditional == "positions"
            scale = settings.unconditional_guidance if positions else 1.0
            requested = (stratified_positions(self.slice_position_counts, count, seed)
                         if positions else self.prior.num_slice_positions)
        slices = np.broadcast_to(np.asarray(requested, np.int32), (count,))
        given, covariate_scale = request.covariates, settings.covariate_guidance
        if self.draws_subject_covariates(request):
            if self.subject_covariates is None:
                raise ValueError("unconditional_covariates 'drawn' needs the training subjects' "
                                 "covariates rows (subject_covariates)")
            given, covariate_scale = stratified_rows(self.subject_covariates, count, seed), 1.0
        rows = np.broadcast_to(np.asarray(np.nan if given is None else given, np.float32),
                               (count, self.covariate_width))
        told = None
        if settings.pose_spread:
            told = pose.with_poses(None, pose.draw_poses(self.slice_poses, slices,
                                                         settings.pose_spread, seed))
        return (slices, np.full(count, scale, np.float32), rows,
                np.full(count, covariate_scale, np.float32), told)

    def __call__(self, requests: Sequence[Request], seed: int,
                 progress: keras.utils.Progbar | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Samples every `Request` in one sampling call (one compiled sampler), each at its own
        guidance; returns one (images [n, S, S, 1] in [0, 1], codes) per request."""
        if (any(request.covariates is not None for request in requests)
                and not self.covariate_width):
            raise ValueError("this prior was trained without covariates")
        uses_covariates = any(request.covariates is not None or
                              self.draws_subject_covariates(request) for request in requests)
        slices, guidance, rows, covariate_guidance, told = zip(
            *(self._conditions(request, seed) for request in requests))
        count = sum(request.count for request in requests)
        settings = self.settings
        codes = sampling.sample_codes(
            self.prior, count, self.vqvae.grid_size, slice_index=np.concatenate(slices),
            temperature=settings.temperature,
            top_k=min(settings.top_k, self.prior.num_codes),  # k >= K: all codes
            seed=seed, batch_size=SAMPLING_BATCH,
            covariates=np.concatenate(rows) if uses_covariates else None,
            progress=progress, guidance=np.concatenate(guidance),
            covariate_guidance=np.concatenate(covariate_guidance),
            augmentation=np.concatenate(told) if settings.pose_spread else None)
        images = [keras.ops.convert_to_numpy(
            self.vqvae.decode_codes(codes[start:start + SAMPLING_BATCH]))
            for start in range(0, len(codes), SAMPLING_BATCH)]
        images = np.clip(np.concatenate(images), 0.0, 1.0)
        ends = np.cumsum([request.count for request in requests])
        return [(images[end - request.count:end], codes[end - request.count:end])
                for request, end in zip(requests, ends)]
