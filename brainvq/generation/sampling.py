"""Sampling code grids from the PixelCNN prior.

`sample_codes` runs the whole autoregressive loop over the g*g positions inside one compiled
function: on TensorFlow a `tf.function` (XLA-compiled when XLA works, see `jit_compile`) with a
`tf.while_loop`, on JAX a `jax.lax.fori_loop` under `jax.jit`. At step p it runs the prior, takes
the logits at p, applies temperature and top-k, draws a code with a stateless seeded RNG and
writes it into the grid. The same seed (and batch size) always gives the same grids.

When the prior is a `modules.GatedPixelCNN`, the loop is row-cached: the vertical stack at row r
depends only on the rows above r, so it runs once per row (on the `causal_reach` rows above);
each position then runs only the horizontal stack, on the one-row crop of `causal_reach`
columns to its left, the attention blocks for that one position against a cache of the keys and
values of the positions drawn before it (written as each code is drawn), and the output head.
The stacks are convolutional and the crops are clipped to the grid, so the logits are those of
the whole grid up to float rounding, for a small fraction of the work (`crop=False` runs the
whole prior on the whole grid at each step).

The loop itself is in `sampling_loops`; this module checks the arguments, plans the guided
copies and batches the calls.

`sample_codes_naive` is the keras-io style loop (one `predict` call on the whole grid per
position, sampling in numpy): the baseline of `benchmark.py sampling`.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from brainvq.generation import sampling_loops as loops
from brainvq.models import hierarchy

SamplerInputs = tuple[Optional[np.ndarray], ...]
"""Slice positions [N], then condition codes, covariates and augmentation rows (each or None)."""

# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------

def _num_codes(prior: keras.Model) -> int:
    if hasattr(prior, "num_codes"):
        return int(prior.num_codes)
    return int(prior.output_shape[-1])


def _num_slice_positions(prior: keras.Model) -> int:
    return int(getattr(prior, "num_slice_positions", 0))


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _slice_indices(prior: keras.Model, slice_index: int | ArrayLike | None, num_samples: int
                   ) -> np.ndarray:
    """int32 [num_samples] slice indices; None -> the unconditional row."""
    positions = _num_slice_positions(prior)
    if slice_index is None:
        return np.full((num_samples,), positions, np.int32)
    given = np.asarray(slice_index)
    if given.dtype == bool or not np.issubdtype(given.dtype, np.integer):
        raise ValueError(f"slice_index must be None, an integer or an array of integers, "
                         f"got {slice_index!r}")
    if given.ndim == 0:
        given = np.full((num_samples,), int(given))
    if given.shape != (num_samples,):
        raise ValueError(f"slice_index must hold one index per sample ({num_samples}), "
                         f"got shape {given.shape}")
    if given.min() < 0 or given.max() > positions:
        bad = int(given[(given < 0) | (given > positions)][0])
        raise ValueError(f"slice_index {bad} is out of range: slice indices run from 0 to "
                         f"{positions - 1} (num_slice_positions={positions}); use None or "
                         f"{positions} for unconditional samples")
    return given.astype(np.int32)


def _check_arguments(prior: keras.Model, num_samples: int, grid_size: int,
                     slice_index: int | ArrayLike | None, temperature: float, top_k: int,
                     seed: int) -> tuple[int, int, np.ndarray, float, int, int]:
    num_samples = _check_positive_int("num_samples", num_samples)
    grid_size = _check_positive_int("grid_size", grid_size)
    prior_grid = getattr(prior, "grid_size", None)
    if prior_grid is not None and int(prior_grid) != grid_size:
        raise ValueError(f"grid_size {grid_size} does not match the prior's grid_size "
                         f"{prior_grid}")
    if not isinstance(temperature, numbers.Real) or not np.isfinite(temperature) \
            or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    num_codes = _num_codes(prior)
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0: no top-k), got {top_k!r}")
    if top_k > num_codes:
        raise ValueError(f"top_k {top_k} is larger than the number of codes K={num_codes}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    slices = _slice_indices(prior, slice_index, num_samples)
    return num_samples, grid_size, slices, float(temperature), int(top_k), int(seed)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def _covariates(prior: keras.Model, covariates: ArrayLike | None, num_samples: int
                ) -> np.ndarray | None:
    """float32 [N, C] covariates (NaN: not given) for a prior built with covariates; None for
    a prior without them (which refuses any)."""
    names = [spec["name"] for spec in getattr(prior, "covariates", [])]
    if not names:
        if covariates is not None:
            raise ValueError("this prior was trained without covariates")
        return None
    if covariates is None:
        return np.full((num_samples, len(names)), np.nan, np.float32)
    values = np.asarray(covariates, np.float32)
    if values.ndim == 1:
        values = np.broadcast_to(values, (num_samples, len(values)))
    if values.shape != (num_samples, len(names)):
        raise ValueError(f"covariates must have shape ({num_samples}, {len(names)}) for "
                         f"{', '.join(names)}, got {values.shape}")
    return np.ascontiguousarray(values)


def _augmentation(prior: keras.Model, augmentation: ArrayLike | None, num_samples: int
                  ) -> np.ndarray | None:
    """float32 [N, A] augmentation parameters (the pose to draw each sample at, for a prior told
    its training grids' poses) or None (all 0: a slice as it is, centred and upright)."""
    width = int(getattr(prior, "augmentation_inputs", 0) or 0)
    if augmentation is None:
        return None
    if not width:
        raise ValueError("this prior was trained without the augmentation condition: pass no "
                         "augmentation")
    rows = np.asarray(augmentation, np.float32)
    if rows.ndim == 1:
        rows = np.broadcast_to(rows, (num_samples, len(rows)))
    if rows.shape != (num_samples, width):
        raise ValueError(f"augmentation must have shape ({num_samples}, {width}) or ({width},), "
                         f"got {np.shape(augmentation)}")
    if not np.isfinite(rows).all():
        raise ValueError("augmentation must be finite")
    return np.ascontiguousarray(rows)


def _condition_codes(prior: keras.Model, condition_codes: ArrayLike | None, num_samples: int
                     ) -> np.ndarray | None:
    """int32 [N, ...] condition codes a spatially conditioned prior needs: [N, t, t] codes of
    the coarser grid, or the shape its `condition_shape` names (None for any other prior)."""
    needed = int(getattr(prior, "condition_codes", 0) or 0)
    if not needed:
        if condition_codes is not None:
            raise ValueError("this prior takes no condition_codes")
        return None
    side = int(prior.condition_grid_size)
    shape = tuple(getattr(prior, "condition_shape", (side, side)))
    if condition_codes is None:
        raise ValueError(f"this prior is conditioned on codes of shape {shape}: pass "
                         f"condition_codes [N, {', '.join(map(str, shape))}]")
    codes = np.asarray(condition_codes)
    if codes.shape != (num_samples,) + shape:
        raise ValueError(f"condition_codes must have shape {(num_samples,) + shape}, "
                         f"got {codes.shape}")
    if codes.min() < 0 or codes.max() >= needed:
        raise ValueError(f"condition_codes must lie in [0, {needed})")
    return codes.astype(np.int32)


def _sample_hierarchy(prior: keras.Model, num_samples: int, grid_size: int, **options: Any
                      ) -> np.ndarray:
    """Two-level codes from a `hierarchy.HierarchicalPrior`: the top grid, then the bottom grid
    given it; returns them packed [N, t*t + g*g] (`hierarchy.pack_codes`)."""
    if grid_size != prior.grid_size:
        raise ValueError(f"grid_size {grid_size} does not match the prior's bottom grid_size "
                         f"{prior.grid_size}")
    progress = options.pop("progress", None)
    top = sample_codes(prior.top, num_samples, prior.top_grid_size, **options)
    bottom = sample_codes(prior.bottom, num_samples, grid_size, condition_codes=top,
                          progress=progress, **options)
    return np.asarray(ops.convert_to_numpy(hierarchy.pack_codes(
        ops.convert_to_tensor(top), ops.convert_to_tensor(bottom))), np.int32)


def _scales(name: str, scale: float | ArrayLike, num_samples: int) -> np.ndarray:
    """float32 [N] guidance scales from one number or one per sample, each >= 0."""
    scales = np.asarray(scale, np.float64)
    if scales.ndim == 0:
        scales = np.full((num_samples,), float(scales))
    if scales.shape != (num_samples,):
        raise ValueError(f"{name} must be one number or one per sample ({num_samples}), got "
                         f"shape {scales.shape}")
    if not (scales >= 0.0).all():
        raise ValueError(f"{name} must be >= 0, got {scale}")
    return scales.astype(np.float32)


def _guidance_plan(prior: keras.Model, slices: np.ndarray, covariates: np.ndarray | None,
                   guidance: np.ndarray, covariate_guidance: np.ndarray) -> list[tuple]:
    """The guided conditions, in order, each as (name, rows [N] bool, scales [N]): "slice" for
    the rows with a slice position and a guidance other than 1, "covariates" for the rows that
    give a covariate and have a covariate guidance other than 1 (the other rows' dropped copy
    would equal the conditioned row: they get none)."""
    gives_covariate = (np.zeros(len(slices), bool) if covariates is None
                       else ~np.isnan(covariates).all(axis=1))
    plan = [("slice", (guidance != 1.0) & (slices != _num_slice_positions(prior)), guidance),
            ("covariates", (covariate_guidance != 1.0) & gives_covariate, covariate_guidance)]
    return [(name, rows, scales) for name, rows, scales in plan if rows.any()]


def _guided_copies(prior: keras.Model, plan: list[tuple], start: int, batch_size: int,
                   copies: list[int], inputs: SamplerInputs) -> tuple[SamplerInputs, list[tuple]]:
    """One batch's inputs (slices [B], then condition codes, covariates and augmentation, each
    or None), followed, for each guided condition of `plan`, by `copies[i]` rows: the batch's
    rows that it guides with that condition dropped ("slice": the no-condition row;
    "covariates": none given; the augmentation always kept), padded with copies of row 0 at
    scale 1 (no change) so every batch has the same shape.
    Returns (inputs, guides: one (rows [M_i] int32, scales [M_i] float32) per condition)."""
    slices, condition, covariates, augmentation = inputs
    all_slices, all_conditions, all_covariates, guides = [slices], [condition], [covariates], []
    all_augmentation = [augmentation]
    for (name, guided, scales), size in zip(plan, copies):
        rows = np.flatnonzero(guided[start:start + batch_size]).astype(np.int32)
        row_scales = scales[start:start + batch_size][rows]
        rows = np.concatenate([rows, np.zeros(size - len(rows), np.int32)])
        row_scales = np.concatenate([row_scales, np.ones(size - len(row_scales), np.float32)])
        guides.append((rows, row_scales))
        all_slices.append(np.full_like(slices[rows], _num_slice_positions(prior))
                          if name == "slice" else slices[rows])
        all_conditions.append(None if condition is None else condition[rows])
        all_covariates.append(None if covariates is None else
                              np.full_like(covariates[rows], np.nan) if name == "covariates"
                              else covariates[rows])
        all_augmentation.append(None if augmentation is None else augmentation[rows])
    inputs = (np.concatenate(all_slices),
              None if condition is None else np.concatenate(all_conditions),
              None if covariates is None else np.concatenate(all_covariates),
              None if augmentation is None else np.concatenate(all_augmentation))
    return inputs, guides


def _padded_batch(prior: keras.Model, inputs: SamplerInputs, start: int, batch_size: int
                  ) -> SamplerInputs:
    """The batch at `start` of inputs (slices [N], then condition codes, covariates and
    augmentation, each or None), the last one padded to `batch_size` with unconditional rows
    (no recompiling)."""
    slices, condition, covariates, augmentation = (
        None if part is None else part[start:start + batch_size] for part in inputs)
    missing = batch_size - len(slices)
    if missing <= 0:
        return slices, condition, covariates, augmentation
    slices = np.concatenate([slices, np.full((missing,), _num_slice_positions(prior), np.int32)])
    if condition is not None:
        condition = np.concatenate(
            [condition, np.zeros((missing,) + condition.shape[1:], np.int32)])
    if covariates is not None:
        covariates = np.concatenate(
            [covariates, np.full((missing, covariates.shape[1]), np.nan, np.float32)])
    if augmentation is not None:
        augmentation = np.concatenate(
            [augmentation, np.zeros((missing, augmentation.shape[1]), np.float32)])
    return slices, condition, covariates, augmentation


def _batch_seed(seed: int, batch_number: int, grid_size: int, backend: str) -> np.ndarray:
    """The stateless seed of a batch: step p of batch b draws with (seed, b * g * g + p)."""
    batch_seed = np.array([seed, batch_number * grid_size * grid_size], np.int64)
    batch_seed = (batch_seed & 0x7FFFFFFF).astype(np.int32)  # int32: what XLA accepts
    return batch_seed.astype(np.uint32) if backend == "jax" else batch_seed


def _jit_setting(jit_compile: bool | None) -> bool | None:
    """XLA or not on TensorFlow (None: when XLA works here); None on other backends."""
    if keras.backend.backend() != "tensorflow":
        return None
    return loops.xla_works() if jit_compile is None else bool(jit_compile)


def _draw_batches(prior: keras.Model, sampler: Callable, inputs: SamplerInputs,
                  guidance: tuple[list[tuple], list[int]], batch_size: int, grid_size: int,
                  drawing: tuple[float, int], progress: keras.utils.Progbar | None
                  ) -> np.ndarray:
    """Runs the compiled `sampler` batch by batch over `inputs` (slices [N], then condition
    codes, covariates and augmentation, each or None) with `guidance` (its plan and copies)
    and `drawing` (temperature, seed); returns the grids [N, g, g]."""
    grids, backend = [], keras.backend.backend()
    plan, copies = guidance
    temperature, seed = drawing
    slices = inputs[0]
    for batch_number, start in enumerate(range(0, len(slices), batch_size)):
        count = len(slices[start:start + batch_size])
        (batch_slices, *conditions), guides = _guided_copies(
            prior, plan, start, batch_size, copies,
            _padded_batch(prior, inputs, start, batch_size))
        grid = np.zeros((len(batch_slices), grid_size, grid_size), np.int32)
        batch_seed = _batch_seed(seed, batch_number, grid_size, backend)
        result = sampler(ops.convert_to_tensor(grid), ops.convert_to_tensor(batch_slices),
                         ops.convert_to_tensor(temperature, "float32"),
                         ops.convert_to_tensor(batch_seed),
                         tuple(None if part is None else ops.convert_to_tensor(part)
                               for part in conditions),
                         tuple((ops.convert_to_tensor(rows), ops.convert_to_tensor(scales))
                               for rows, scales in guides))
        grids.append(np.asarray(ops.convert_to_numpy(result), np.int32)[:count])
        if progress is not None:
            progress.add(count)
    return np.concatenate(grids)


def sample_codes(prior: keras.Model, num_samples: int, grid_size: int, *,
                 slice_index: int | ArrayLike | None = None, temperature: float = 1.0,
                 top_k: int = 0, seed: int = 0, batch_size: int | None = None, crop: bool = True,
                 jit_compile: bool | None = None, progress: keras.utils.Progbar | None = None,
                 condition_codes: ArrayLike | None = None, covariates: ArrayLike | None = None,
                 guidance: float | ArrayLike = 1.0, covariate_guidance: float | ArrayLike = 1.0,
                 augmentation: ArrayLike | None = None) -> np.ndarray:
    """Samples code grids from the prior, the whole raster loop in one compiled function.

    Args:
        prior: a `modules.GatedPixelCNN` (or a model with the same call convention: inputs
            {"code_indices": [N, g, g], "slice_index": [N]} -> logits [N, g, g, K]).
        num_samples: N, the number of grids.
        grid_size: g, the side of the grids (must match `prior.grid_size` when it has one).
        slice_index: None (unconditional), one int for all samples, or an int array [N]; each
            index lies in [0, num_slice_positions), or equals num_slice_positions (unconditional).
        temperature: logits are divided by this (> 0; below 1 sharpens).
        top_k: sample among the k most likely codes only (0: all K codes).
        seed: integer seed; the same seed and batch_size give the same grids.
        batch_size: grids per compiled call (None: all N at once). The last batch is padded to
            the same size so nothing is recompiled.
        crop: GatedPixelCNN only: run the vertical stack once per row and the horizontal stack
            on a one-row crop per position (same results up to float rounding, far less work)
            instead of the whole prior on the whole grid at every position.
        jit_compile: TensorFlow only: compile with XLA (None: when XLA works here).
        progress: optional object whose `step(count)` is called after each batch with the
            number of grids it finished (e.g. a `progress.Progress`).
        condition_codes: [N, t, t] codes of the coarser grid, for a prior built with
            `condition_codes` (VQ-VAE-2's bottom prior); [N, D, g, g] layers below, for a
            `stack_prior.StackPixelCNN` (its `condition_shape`).
        covariates: for a prior built with covariates: [N, C] or one row [C] for all, each
            column as `GatedPixelCNN.covariate_condition` takes it (NaN: not given); None: none
            given.
        guidance: classifier-free guidance on the slice position (the prior learned it with its
            condition dropped for 10% of the examples), one number or one per sample: each
            step's logits are u + guidance * (c - u), c with the slice condition and u without
            it (the other conditions kept). 1: none; a sample at a slice position with any other
            scale costs a second pass per step and follows its position more closely.
        covariate_guidance: the same over the covariates given (the prior learned each one
            dropped for 10% of the examples), at its own scale: with both, each step's logits
            are c + (guidance - 1) (c - u_slice) + (covariate_guidance - 1) (c - u_covariates),
            u_covariates with every covariate not given and the slice kept. 1: none; it only
            acts on samples that give a covariate, and costs them one more pass per step.
            Samples with different scales, or none, share one batch and one compiled sampler:
            only the samples guided run the extra passes.
        augmentation: for a prior built with `augmentation_inputs`: [N, A] or one row [A] for
            all, the augmentation parameters (for a prior told its training grids' poses, the
            pose, `pose.with_poses`) each sample is drawn at, guided copies included; None: all
            0 (a slice as it is: centred and upright).

    Returns:
        int32 numpy array [N, g, g] of code indices in [0, K); for a
        `hierarchy.HierarchicalPrior` (g: its bottom grid), the top grid is sampled first,
        then the bottom grid given it, and the packed codes [N, t*t + g*g] are returned.
    """
    if hasattr(prior, "top") and hasattr(prior, "bottom"):
        return _sample_hierarchy(prior, num_samples, grid_size, slice_index=slice_index,
                                 temperature=temperature, top_k=top_k, seed=seed,
                                 batch_size=batch_size, crop=crop, jit_compile=jit_compile,
                                 progress=progress, guidance=guidance,
                                 covariate_guidance=covariate_guidance)
    num_samples, grid_size, slices, temperature, top_k, seed = _check_arguments(
        prior, num_samples, grid_size, slice_index, temperature, top_k, seed)
    batch_size = num_samples if batch_size is None else _check_positive_int("batch_size",
                                                                            batch_size)
    batch_size = min(batch_size, num_samples)
    jit_compile = _jit_setting(jit_compile)
    guidance = _scales("guidance", guidance, num_samples)
    covariate_guidance = _scales("covariate_guidance", covariate_guidance, num_samples)
    inputs = (slices, _condition_codes(prior, condition_codes, num_samples),
              _covariates(prior, covariates, num_samples),
              _augmentation(prior, augmentation, num_samples))
    plan = _guidance_plan(prior, slices, inputs[2], guidance, covariate_guidance)
    # Each guided condition adds as many rows to every batch as the batch guiding most has.
    copies = [max(int(rows[start:start + batch_size].sum())
                  for start in range(0, num_samples, batch_size)) for _, rows, _ in plan]
    sampler = loops.compiled_sampler(prior, grid_size, top_k, loops.row_cached(prior, crop),
                                     jit_compile)
    return _draw_batches(prior, sampler, inputs, (plan, copies), batch_size, grid_size,
                         (temperature, seed), progress)


def sample_codes_naive(prior: keras.Model, num_samples: int, grid_size: int,
                       slice_index: int | ArrayLike | None = None, temperature: float = 1.0,
                       seed: int = 0) -> np.ndarray:
    """The keras-io style sampler: a Python loop calling `prior.predict` for every position.

    The benchmark's baseline: g*g `predict` calls on the whole grid, sampling in numpy.

    Args:
        prior, num_samples, grid_size, slice_index, temperature: as for `sample_codes`.
        seed: seed of the numpy generator.

    Returns:
        int32 numpy array [N, g, g] of code indices.
    """
    num_samples, grid_size, slices, temperature, _, seed = _check_arguments(
        prior, num_samples, grid_size, slice_index, temperature, 0, seed)
    rng = np.random.default_rng(seed)
    grid = np.zeros((num_samples, grid_size, grid_size), np.int32)
    for row in range(grid_size):
        for column in range(grid_size):
            logits = prior.predict({"code_indices": grid, "slice_index": slices},
                                   batch_size=num_samples, verbose=0)[:, row, column, :]
            logits = logits.astype(np.float64) / temperature
            probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probabilities /= probabilities.sum(axis=-1, keepdims=True)
            draws = rng.random((num_samples, 1))
            codes = (np.cumsum(probabilities, axis=-1) < draws).sum(axis=-1)
            grid[:, row, column] = np.minimum(codes, probabilities.shape[-1] - 1)
    return grid
