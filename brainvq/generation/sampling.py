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

`sample_codes_naive` is the keras-io style loop (one `predict` call on the whole grid per
position, sampling in numpy): the baseline of `benchmark.py sampling`.
"""
import numbers

import keras
import numpy as np
from keras import ops

from brainvq.models import hierarchy

# Compiled samplers live on the prior itself (attribute `_compiled_samplers`), keyed by
# everything that changes the traced program: a sampler closes over its prior, so a global cache
# keyed by the prior would keep every prior alive; on the prior, the two form a cycle that the
# garbage collector frees with it.
_CACHE_ATTRIBUTE = "_compiled_samplers"


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------

def _num_codes(prior):
    if hasattr(prior, "num_codes"):
        return int(prior.num_codes)
    return int(prior.output_shape[-1])


def _num_slice_positions(prior):
    return int(getattr(prior, "num_slice_positions", 0))


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _slice_indices(prior, slice_index, num_samples):
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


def _check_arguments(prior, num_samples, grid_size, slice_index, temperature, top_k, seed):
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
# The loop, in keras.ops (shared by both backends; only the random draw differs)
# ---------------------------------------------------------------------------------------------

def _row_cached(prior, crop):
    """Whether to run the vertical stack once per row (GatedPixelCNN) or the whole prior."""
    return crop and hasattr(prior, "vertical_pass") and hasattr(prior, "causal_reach")


def _guided(logits, guides):
    """Classifier-free guidance over one or more conditions, row by row. `logits` [N + sum M_i,
    K] hold N conditioned rows, then for each guided condition i the M_i rows `rows_i` of them
    with that condition dropped (u_i); `guides` holds one (rows_i [M_i], scales_i [M_i]) per
    condition. Returns c + sum_i (scale_i - 1) * (c - u_i) [N, K], added at each row of
    rows_i: one scale g gives u + g * (c - u); rows outside every rows_i (and any with scale 1)
    keep c; `logits` as they are when nothing is guided (the batch is not grown)."""
    if not guides:
        return logits
    count = ops.shape(logits)[0] - sum(ops.shape(rows)[0] for rows, _ in guides)
    conditioned = logits[:count]
    guided, start = conditioned, count
    for rows, scales in guides:
        size = ops.shape(rows)[0]
        dropped = logits[start:start + size]
        change = (ops.cast(scales, logits.dtype)[:, None] - 1.0) * (
            ops.take(conditioned, rows, axis=0) - dropped)
        guided = guided + ops.scatter(rows[:, None], change, ops.shape(conditioned))
        start = start + size
    return guided


def _all_copies(codes, guides):
    """Codes [N] drawn for a guided batch, written to each of its rows: the N conditioned ones,
    then each guided condition's copies of its rows."""
    if not guides:
        return codes
    return ops.concatenate([codes] + [ops.take(codes, rows, axis=0) for rows, _ in guides],
                           axis=0)


def _shape_logits(logits, temperature, top_k):
    """Temperature and top-k applied to logits [N, K] (float32)."""
    logits = ops.cast(logits, "float32") / temperature
    if top_k:
        kth_largest = ops.top_k(logits, top_k, sorted=True)[0][:, -1:]
        logits = ops.where(logits < kth_largest, ops.full_like(logits, -np.inf), logits)
    return logits


def _write(grid, position, codes):
    """The grid [N, g, g] with raster `position` set to `codes` [N]."""
    size = ops.shape(grid)[1] * ops.shape(grid)[2]
    here = ops.reshape(ops.equal(ops.arange(size, dtype="int32"), position),
                       (1, ops.shape(grid)[1], ops.shape(grid)[2]))
    return ops.where(here, ops.cast(codes, grid.dtype)[:, None, None], grid)


def _whole_grid_loop(prior, grid, slices, grid_size, draw, condition=(None, None)):
    """Every step runs the prior on the whole grid and draws the code at that step's position."""
    condition_codes, covariates = condition
    inputs = {} if condition_codes is None else {"condition_codes": condition_codes}
    if covariates is not None:
        inputs["covariates"] = covariates

    def body(position, grid):
        logits = prior({"code_indices": grid, "slice_index": slices, **inputs}, training=False)
        flat = ops.reshape(logits, (ops.shape(grid)[0], grid_size * grid_size, -1))
        return _write(grid, position, draw(ops.take(flat, position, axis=1), position))

    return ops.fori_loop(0, grid_size * grid_size, body, grid)


def _attention_step(prior, features, caches, row, column, position):
    """The attention blocks and head at one position, against the cached earlier positions.

    Args:
        features: [N, 1, 1, F] last horizontal-stack features at (row, column).
        caches: per attention block, (keys, values) [N, g*g, F] of the positions already drawn.

    Returns:
        (logits [N, K], normed): `normed` holds each block's normed input at this position,
        from which `_cache_position` makes its keys and values once its code is drawn.
    """
    features = features + prior.position_features(row, column, 1, 1)
    flat = ops.reshape(features, (ops.shape(features)[0], 1, prior.filters))
    size = prior.grid_size * prior.grid_size
    visible = (ops.arange(size, dtype="int32") < position)[None, None, None, :]
    normed = []
    for block, (keys, values) in zip(prior.attention, caches):
        flat, block_normed = block.query_step(flat, keys, values, visible)
        normed.append(block_normed)
    logits = prior.head(ops.reshape(flat, (-1, 1, 1, prior.filters)))
    return ops.reshape(logits, (ops.shape(flat)[0], -1)), normed


def _cache_position(prior, caches, normed, codes, row, column, position):
    """The caches with the keys and values of `position` (whose codes [N] are now drawn)."""
    context = prior.embed(ops.reshape(codes, (-1, 1, 1)), row, column)
    context = ops.reshape(context, (ops.shape(context)[0], 1, prior.filters))
    updated = []
    for block, (keys, values), block_normed in zip(prior.attention, caches, normed):
        key, value = block.key_value(block_normed, context)
        start = ops.stack([0, position, 0])
        updated.append((ops.slice_update(keys, start, ops.cast(key, keys.dtype)),
                        ops.slice_update(values, start, ops.cast(value, values.dtype))))
    return tuple(updated)


def _crop(bias, row, column, height, width):
    """The [N, height, width, C] window at (row, column) of a spatial bias [N, g, g, C]; a
    bias that is the same everywhere ([N, 1, 1, C]) as it is."""
    if bias.shape[1] == 1 and bias.shape[2] == 1:
        return bias
    return ops.slice(bias, ops.stack([0, row, column, 0]),
                     (ops.shape(bias)[0], height, width, bias.shape[-1]))


def _row_cached_loop(prior, grid, slices, grid_size, draw, condition=(None, None)):
    """The row-cached loop for a `GatedPixelCNN`.

    The vertical stack at row r sees only the rows above r, so once per row it runs on the
    `causal_reach` rows above (full width) and its contributions to the horizontal stack are
    kept. Each position of the row then runs only the horizontal stack, on the one-row crop of
    `causal_reach` columns to its left, then the attention blocks for that one position against
    a cache of the earlier positions' keys and values, and the head. Crops are clipped to the
    grid, so the zero padding at the grid's edges is the same as on the whole grid and the logits
    equal the whole-grid ones up to float rounding. A spatial condition's biases (VQ-VAE-2's
    bottom prior) are cut to the same windows.
    """
    reach = prior.causal_reach
    batch = ops.shape(grid)[0]
    rows = width = min(grid_size, reach + 1)  # rows above (and the row) / columns to the left
    condition_codes, covariates = condition
    biases = prior.condition_biases(slices, batch, condition_codes=condition_codes,
                                    covariates=covariates)
    attention_blocks = list(getattr(prior, "attention", []))
    cache_shape = (batch, grid_size * grid_size, prior.filters)
    caches = tuple((ops.zeros(cache_shape, "float32"), ops.zeros(cache_shape, "float32"))
                   for _ in attention_blocks)

    def row_body(row, state):
        grid, caches = state
        top = ops.clip(row - reach, 0, grid_size - rows)
        above = ops.slice(grid, ops.stack([0, top, 0]), (batch, rows, grid_size))
        row_biases = [_crop(bias, top, 0, rows, grid_size) for bias in biases]
        to_horizontal = [ops.take(term, row - top, axis=1)  # [N, g, 2F]: row `row` only
                         for term in prior.vertical_pass(prior.embed(above, top), row_biases)]

        def column_body(column, state):
            grid, caches = state
            left = ops.clip(column - reach, 0, grid_size - width)
            codes = ops.slice(grid, ops.stack([0, row, left]), (batch, 1, width))
            terms = [ops.slice(term, ops.stack([0, left, 0]), (batch, width, term.shape[-1]))
                     [:, None] for term in to_horizontal]
            crop_biases = [_crop(bias, row, left, 1, width) for bias in biases]
            features = prior.horizontal_pass(prior.embed(codes, row, left), terms,
                                             crop_biases)  # [N, 1, w, F]
            here = ops.take(features, column - left, axis=2)[:, :, None]  # [N, 1, 1, F]
            position = row * grid_size + column
            if attention_blocks or getattr(prior, "position_embedding", False):
                logits, normed = _attention_step(prior, here, caches, row, column, position)
            else:
                logits = ops.reshape(prior.head(here), (batch, -1))
            drawn = draw(logits, position)
            if attention_blocks:
                caches = _cache_position(prior, caches, normed, drawn, row, column, position)
            return _write(grid, position, drawn), caches

        return ops.fori_loop(0, grid_size, column_body, (grid, caches))

    return ops.fori_loop(0, grid_size, row_body, (grid, caches))[0]


def _sampling_loop(prior, grid, slices, grid_size, row_cached, draw, condition=(None, None)):
    """The whole raster loop; `draw(logits [N, K], position)` returns the codes [N];
    `condition` is (condition codes [N, t, t] or None, covariates [N, C] or None)."""
    if row_cached:
        return _row_cached_loop(prior, grid, slices, grid_size, draw, condition)
    return _whole_grid_loop(prior, grid, slices, grid_size, draw, condition)


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------

def _tensorflow_sampler(prior, grid_size, top_k, row_cached, jit_compile):
    import tensorflow as tf

    def run(grid, slices, temperature, seed, condition, guides):
        def draw(logits, position):
            logits = _shape_logits(_guided(ops.cast(logits, "float32"), guides), temperature,
                                   top_k)
            step_seed = tf.stack([seed[0], seed[1] + tf.cast(position, seed.dtype)])
            return _all_copies(tf.random.stateless_categorical(logits, 1, seed=step_seed,
                                                               dtype=tf.int32)[:, 0], guides)

        return _sampling_loop(prior, grid, slices, grid_size, row_cached, draw, condition)

    return tf.function(run, jit_compile=jit_compile, reduce_retracing=True)


def _jax_sampler(prior, grid_size, top_k, row_cached):
    import jax

    def run(trainable, non_trainable, grid, slices, temperature, seed, condition, guides):
        key = jax.random.fold_in(jax.random.PRNGKey(seed[0]), seed[1])

        def draw(logits, position):
            logits = _shape_logits(_guided(ops.cast(logits, "float32"), guides), temperature,
                                   top_k)
            return _all_copies(jax.random.categorical(jax.random.fold_in(key, position), logits,
                                                      axis=-1).astype("int32"), guides)

        # The variables' values are arguments of the jitted function, not constants.
        mapping = (list(zip(prior.trainable_variables, trainable))
                   + list(zip(prior.non_trainable_variables, non_trainable)))
        with keras.StatelessScope(state_mapping=mapping):
            return _sampling_loop(prior, grid, slices, grid_size, row_cached, draw, condition)

    jitted = jax.jit(run)

    def call(grid, slices, temperature, seed, condition, guides):
        trainable = [variable.value for variable in prior.trainable_variables]
        non_trainable = [variable.value for variable in prior.non_trainable_variables]
        return jitted(trainable, non_trainable, grid, slices, temperature, seed, condition,
                      guides)

    return call


def _compiled_sampler(prior, grid_size, top_k, row_cached, jit_compile):
    backend = keras.backend.backend()
    key = (backend, grid_size, top_k, row_cached, jit_compile)
    cache = getattr(prior, _CACHE_ATTRIBUTE, None)
    if cache is None:
        cache = {}
        object.__setattr__(prior, _CACHE_ATTRIBUTE, cache)  # untracked by Keras
    if key not in cache:
        if backend == "tensorflow":
            cache[key] = _tensorflow_sampler(prior, grid_size, top_k, row_cached, jit_compile)
        elif backend == "jax":
            cache[key] = _jax_sampler(prior, grid_size, top_k, row_cached)
        else:
            raise NotImplementedError(f"sample_codes supports the tensorflow and jax backends, "
                                      f"not {backend!r}")
    return cache[key]


def _xla_works():
    """Whether XLA compilation is usable here (TensorFlow backend)."""
    global _XLA_WORKS
    if _XLA_WORKS is None:
        import tensorflow as tf

        try:
            probe = tf.function(lambda x: tf.reduce_sum(x * 2.0), jit_compile=True)
            _XLA_WORKS = float(probe(tf.ones((2,)))) == 4.0
        except Exception:  # noqa: BLE001 - any failure means "no XLA"
            _XLA_WORKS = False
    return _XLA_WORKS


_XLA_WORKS = None


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def _covariates(prior, covariates, num_samples):
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


def _condition_codes(prior, condition_codes, num_samples):
    """int32 [N, t, t] codes of the coarser grid a spatially conditioned prior needs (None for
    any other prior)."""
    needed = int(getattr(prior, "condition_codes", 0) or 0)
    if not needed:
        if condition_codes is not None:
            raise ValueError("this prior takes no condition_codes")
        return None
    side = int(prior.condition_grid_size)
    if condition_codes is None:
        raise ValueError(f"this prior is conditioned on a {side}x{side} grid of codes: pass "
                         f"condition_codes [N, {side}, {side}]")
    codes = np.asarray(condition_codes)
    if codes.shape != (num_samples, side, side):
        raise ValueError(f"condition_codes must have shape ({num_samples}, {side}, {side}), "
                         f"got {codes.shape}")
    if codes.min() < 0 or codes.max() >= needed:
        raise ValueError(f"condition_codes must lie in [0, {needed})")
    return codes.astype(np.int32)


def _sample_hierarchy(prior, num_samples, grid_size, **options):
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


def _scales(name, scale, num_samples):
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


def _guidance_plan(prior, slices, covariates, guidance, covariate_guidance):
    """The guided conditions, in order, each as (name, rows [N] bool, scales [N]): "slice" for
    the rows with a slice position and a guidance other than 1, "covariates" for the rows that
    give a covariate and have a covariate guidance other than 1 (the other rows' dropped copy
    would equal the conditioned row: they get none)."""
    gives_covariate = (np.zeros(len(slices), bool) if covariates is None
                       else ~np.isnan(covariates).all(axis=1))
    plan = [("slice", (guidance != 1.0) & (slices != _num_slice_positions(prior)), guidance),
            ("covariates", (covariate_guidance != 1.0) & gives_covariate, covariate_guidance)]
    return [(name, rows, scales) for name, rows, scales in plan if rows.any()]


def _guided_copies(prior, plan, start, batch_size, copies, inputs):
    """One batch's inputs (slices [B], condition codes or None, covariates or None), followed,
    for each guided condition of `plan`, by `copies[i]` rows: the batch's rows that it guides
    with that condition dropped ("slice": the no-condition row; "covariates": none given),
    padded with copies of row 0 at scale 1 (no change) so every batch has the same shape.
    Returns (inputs, guides: one (rows [M_i] int32, scales [M_i] float32) per condition)."""
    slices, condition, covariates = inputs
    all_slices, all_conditions, all_covariates, guides = [slices], [condition], [covariates], []
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
    inputs = (np.concatenate(all_slices),
              None if condition is None else np.concatenate(all_conditions),
              None if covariates is None else np.concatenate(all_covariates))
    return inputs, guides


def sample_codes(prior, num_samples, grid_size, *, slice_index=None, temperature=1.0, top_k=0,
                 seed=0, batch_size=None, crop=True, jit_compile=None, progress=None,
                 condition_codes=None, covariates=None, guidance=1.0,
                 covariate_guidance=1.0):
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
            `condition_codes` (VQ-VAE-2's bottom prior).
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
    backend = keras.backend.backend()
    if backend == "tensorflow" and jit_compile is None:
        jit_compile = _xla_works()
    jit_compile = bool(jit_compile) if backend == "tensorflow" else None
    guidance = _scales("guidance", guidance, num_samples)
    covariate_guidance = _scales("covariate_guidance", covariate_guidance, num_samples)
    condition = _condition_codes(prior, condition_codes, num_samples)
    given_covariates = _covariates(prior, covariates, num_samples)
    plan = _guidance_plan(prior, slices, given_covariates, guidance, covariate_guidance)
    # Each guided condition adds as many rows to every batch as the batch guiding most has.
    copies = [max(int(rows[start:start + batch_size].sum())
                  for start in range(0, num_samples, batch_size)) for _, rows, _ in plan]
    sampler = _compiled_sampler(prior, grid_size, top_k, _row_cached(prior, crop), jit_compile)

    grids = []
    for batch_number, start in enumerate(range(0, num_samples, batch_size)):
        batch_slices = slices[start:start + batch_size]
        count = len(batch_slices)
        batch_condition = None if condition is None else condition[start:start + batch_size]
        batch_covariates = (None if given_covariates is None
                            else given_covariates[start:start + batch_size])
        if count < batch_size:  # pad the last batch with unconditional rows
            padding = np.full((batch_size - count,), _num_slice_positions(prior), np.int32)
            batch_slices = np.concatenate([batch_slices, padding])
            if condition is not None:
                batch_condition = np.concatenate(
                    [batch_condition, np.zeros((batch_size - count,) + condition.shape[1:],
                                               np.int32)])
            if batch_covariates is not None:
                batch_covariates = np.concatenate(
                    [batch_covariates, np.full((batch_size - count, batch_covariates.shape[1]),
                                               np.nan, np.float32)])
        (batch_slices, batch_condition, batch_covariates), guides = _guided_copies(
            prior, plan, start, batch_size, copies,
            (batch_slices, batch_condition, batch_covariates))
        grid = np.zeros((len(batch_slices), grid_size, grid_size), np.int32)
        # Step p of batch b draws with the stateless seed (seed, b * g * g + p).
        batch_seed = np.array([seed, batch_number * grid_size * grid_size], np.int64)
        batch_seed = (batch_seed & 0x7FFFFFFF).astype(np.int32)  # int32: what XLA accepts
        if backend == "jax":
            batch_seed = batch_seed.astype(np.uint32)
        result = sampler(ops.convert_to_tensor(grid), ops.convert_to_tensor(batch_slices),
                         ops.convert_to_tensor(temperature, "float32"),
                         ops.convert_to_tensor(batch_seed),
                         (None if condition is None else ops.convert_to_tensor(batch_condition),
                          None if batch_covariates is None
                          else ops.convert_to_tensor(batch_covariates)),
                         tuple((ops.convert_to_tensor(rows), ops.convert_to_tensor(scales))
                               for rows, scales in guides))
        grids.append(np.asarray(ops.convert_to_numpy(result), np.int32)[:count])
        if progress is not None:
            progress.add(count)
    return np.concatenate(grids)


def sample_codes_naive(prior, num_samples, grid_size, slice_index=None, temperature=1.0,
                       seed=0):
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
