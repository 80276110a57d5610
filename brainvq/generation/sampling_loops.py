"""The compiled autoregressive loop of `sampling.sample_codes`, in keras.ops (shared by the
TensorFlow and JAX backends; only the random draw differs).

`compiled_sampler` gives, once per prior and setting, a function that fills a batch of code grids
position by position: the whole prior on the whole grid at each step (`whole_grid_loop`), or,
for a `GatedPixelCNN`, the row-cached loop (`row_cached_loop`) that runs the vertical stack once
per row and, at each position, only the horizontal stack on a one-row crop, the attention blocks
against a cache of the positions drawn before it, and the output head. `guided` combines the
logits of classifier-free guidance.
"""
from __future__ import annotations

from typing import Callable, Optional

import keras
import numpy as np
from keras import ops

from brainvq.hints import Tensor

Conditions = tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]
"""(condition codes [N, t, t], covariates [N, C], augmentation [N, A]), each or None."""
NO_CONDITION = (None, None, None)

# Compiled samplers live on the prior itself (attribute `_compiled_samplers`), keyed by
# everything that changes the traced program: a sampler closes over its prior, so a global cache
# keyed by the prior would keep every prior alive; on the prior, the two form a cycle that the
# garbage collector frees with it.
_CACHE_ATTRIBUTE = "_compiled_samplers"


def row_cached(prior: keras.Model, crop: bool) -> bool:
    """Whether to run the vertical stack once per row (GatedPixelCNN) or the whole prior."""
    return crop and hasattr(prior, "vertical_pass") and hasattr(prior, "causal_reach")


def guided(logits: Tensor, guides: tuple) -> Tensor:
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


def all_copies(codes: Tensor, guides: tuple) -> Tensor:
    """Codes [N] drawn for a guided batch, written to each of its rows: the N conditioned ones,
    then each guided condition's copies of its rows."""
    if not guides:
        return codes
    return ops.concatenate([codes] + [ops.take(codes, rows, axis=0) for rows, _ in guides],
                           axis=0)


def shape_logits(logits: Tensor, temperature: Tensor, top_k: int) -> Tensor:
    """Temperature and top-k applied to logits [N, K] (float32)."""
    logits = ops.cast(logits, "float32") / temperature
    if top_k:
        kth_largest = ops.top_k(logits, top_k, sorted=True)[0][:, -1:]
        logits = ops.where(logits < kth_largest, ops.full_like(logits, -np.inf), logits)
    return logits


def write(grid: Tensor, position: Tensor, codes: Tensor) -> Tensor:
    """The grid [N, g, g] with raster `position` set to `codes` [N]."""
    size = ops.shape(grid)[1] * ops.shape(grid)[2]
    here = ops.reshape(ops.equal(ops.arange(size, dtype="int32"), position),
                       (1, ops.shape(grid)[1], ops.shape(grid)[2]))
    return ops.where(here, ops.cast(codes, grid.dtype)[:, None, None], grid)


def whole_grid_loop(prior: keras.Model, grid: Tensor, slices: Tensor, grid_size: int,
                    draw: Callable, condition: Conditions = NO_CONDITION) -> Tensor:
    """Every step runs the prior on the whole grid and draws the code at that step's position."""
    condition_codes, covariates, augmentation = condition
    inputs = {} if condition_codes is None else {"condition_codes": condition_codes}
    if covariates is not None:
        inputs["covariates"] = covariates
    if augmentation is not None:
        inputs["augmentation"] = augmentation

    def body(position: Tensor, grid: Tensor) -> Tensor:
        logits = prior({"code_indices": grid, "slice_index": slices, **inputs}, training=False)
        flat = ops.reshape(logits, (ops.shape(grid)[0], grid_size * grid_size, -1))
        return write(grid, position, draw(ops.take(flat, position, axis=1), position))

    return ops.fori_loop(0, grid_size * grid_size, body, grid)


def attention_step(prior: keras.Model, features: Tensor, caches: list, row: Tensor, column: Tensor,
                   position: Tensor) -> tuple[Tensor, list]:
    """The attention blocks and head at one position, against the cached earlier positions.

    Args:
        features: [N, 1, 1, F] last horizontal-stack features at (row, column).
        caches: per attention block, (keys, values) [N, g*g, F] of the positions already drawn.

    Returns:
        (logits [N, K], normed): `normed` holds each block's normed input at this position,
        from which `cache_position` makes its keys and values once its code is drawn.
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


def cache_position(prior: keras.Model, caches: list, normed: list, codes: Tensor, row: Tensor,
                   column: Tensor, position: Tensor) -> list:
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


def crop(bias: Tensor | float, row: Tensor, column: Tensor, height: int, width: int
         ) -> Tensor | float:
    """The [N, height, width, C] window at (row, column) of a spatial bias [N, g, g, C]; a
    bias that is the same everywhere ([N, 1, 1, C]) as it is."""
    if bias.shape[1] == 1 and bias.shape[2] == 1:
        return bias
    return ops.slice(bias, ops.stack([0, row, column, 0]),
                     (ops.shape(bias)[0], height, width, bias.shape[-1]))


def row_cached_loop(prior: keras.Model, grid: Tensor, slices: Tensor, grid_size: int,
                    draw: Callable, condition: Conditions = NO_CONDITION) -> Tensor:
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
    condition_codes, covariates, augmentation = condition
    biases = prior.condition_biases(slices, batch, condition_codes=condition_codes,
                                    covariates=covariates, augmentation=augmentation)
    attention_blocks = list(getattr(prior, "attention", []))
    cache_shape = (batch, grid_size * grid_size, prior.filters)
    caches = tuple((ops.zeros(cache_shape, "float32"), ops.zeros(cache_shape, "float32"))
                   for _ in attention_blocks)

    def row_body(row: Tensor, state: tuple) -> tuple:
        grid, caches = state
        row = ops.convert_to_tensor(row, "int32")  # a Python int when run eagerly
        top = ops.clip(row - reach, 0, grid_size - rows)
        above = ops.slice(grid, ops.stack([0, top, 0]), (batch, rows, grid_size))
        row_biases = [crop(bias, top, 0, rows, grid_size) for bias in biases]
        to_horizontal = [ops.take(term, row - top, axis=1)  # [N, g, 2F]: row `row` only
                         for term in prior.vertical_pass(prior.embed(above, top), row_biases)]

        def column_body(column: Tensor, state: tuple) -> tuple:
            grid, caches = state
            column = ops.convert_to_tensor(column, "int32")
            left = ops.clip(column - reach, 0, grid_size - width)
            codes = ops.slice(grid, ops.stack([0, row, left]), (batch, 1, width))
            terms = [ops.slice(term, ops.stack([0, left, 0]), (batch, width, term.shape[-1]))
                     [:, None] for term in to_horizontal]
            crop_biases = [crop(bias, row, left, 1, width) for bias in biases]
            features = prior.horizontal_pass(prior.embed(codes, row, left), terms,
                                             crop_biases)  # [N, 1, w, F]
            here = ops.take(features, column - left, axis=2)[:, :, None]  # [N, 1, 1, F]
            position = row * grid_size + column
            if attention_blocks or getattr(prior, "position_embedding", False):
                logits, normed = attention_step(prior, here, caches, row, column, position)
            else:
                logits = ops.reshape(prior.head(here), (batch, -1))
            drawn = draw(logits, position)
            if attention_blocks:
                caches = cache_position(prior, caches, normed, drawn, row, column, position)
            return write(grid, position, drawn), caches

        return ops.fori_loop(0, grid_size, column_body, (grid, caches))

    return ops.fori_loop(0, grid_size, row_body, (grid, caches))[0]


def sampling_loop(prior: keras.Model, grid: Tensor, slices: Tensor, grid_size: int,
                  row_cached: bool, draw: Callable, condition: Conditions = NO_CONDITION
                  ) -> Tensor:
    """The whole raster loop; `draw(logits [N, K], position)` returns the codes [N];
    `condition` is (condition codes [N, t, t], covariates [N, C], augmentation [N, A]: each or
    None)."""
    if row_cached:
        return row_cached_loop(prior, grid, slices, grid_size, draw, condition)
    return whole_grid_loop(prior, grid, slices, grid_size, draw, condition)


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------

def tensorflow_sampler(prior: keras.Model, grid_size: int, top_k: int, row_cached: bool,
                       jit_compile: bool) -> Callable:
    import tensorflow as tf

    def run(grid: Tensor, slices: Tensor, temperature: Tensor, seed: Tensor, condition: tuple,
            guides: tuple) -> Tensor:
        def draw(logits: Tensor, position: Tensor) -> Tensor:
            logits = shape_logits(guided(ops.cast(logits, "float32"), guides), temperature,
                                   top_k)
            step_seed = tf.stack([seed[0], seed[1] + tf.cast(position, seed.dtype)])
            return all_copies(tf.random.stateless_categorical(logits, 1, seed=step_seed,
                                                               dtype=tf.int32)[:, 0], guides)

        return sampling_loop(prior, grid, slices, grid_size, row_cached, draw, condition)

    return tf.function(run, jit_compile=jit_compile, reduce_retracing=True)


def jax_sampler(prior: keras.Model, grid_size: int, top_k: int, row_cached: bool) -> Callable:
    import jax

    def run(trainable: list, non_trainable: list, grid: Tensor, slices: Tensor, temperature: Tensor,
            seed: Tensor, condition: tuple, guides: tuple) -> Tensor:
        key = jax.random.fold_in(jax.random.PRNGKey(seed[0]), seed[1])

        def draw(logits: Tensor, position: Tensor) -> Tensor:
            logits = shape_logits(guided(ops.cast(logits, "float32"), guides), temperature,
                                   top_k)
            return all_copies(jax.random.categorical(jax.random.fold_in(key, position), logits,
                                                      axis=-1).astype("int32"), guides)

        # The variables' values are arguments of the jitted function, not constants.
        mapping = (list(zip(prior.trainable_variables, trainable))
                   + list(zip(prior.non_trainable_variables, non_trainable)))
        with keras.StatelessScope(state_mapping=mapping):
            return sampling_loop(prior, grid, slices, grid_size, row_cached, draw, condition)

    jitted = jax.jit(run)

    def call(grid: Tensor, slices: Tensor, temperature: Tensor, seed: Tensor, condition: tuple,
             guides: tuple) -> Tensor:
        trainable = [variable.value for variable in prior.trainable_variables]
        non_trainable = [variable.value for variable in prior.non_trainable_variables]
        return jitted(trainable, non_trainable, grid, slices, temperature, seed, condition,
                      guides)

    return call


def compiled_sampler(prior: keras.Model, grid_size: int, top_k: int, row_cached: bool,
                     jit_compile: bool | None) -> Callable:
    backend = keras.backend.backend()
    key = (backend, grid_size, top_k, row_cached, jit_compile)
    cache = getattr(prior, _CACHE_ATTRIBUTE, None)
    if cache is None:
        cache = {}
        object.__setattr__(prior, _CACHE_ATTRIBUTE, cache)  # untracked by Keras
    if key not in cache:
        if backend == "tensorflow":
            cache[key] = tensorflow_sampler(prior, grid_size, top_k, row_cached, jit_compile)
        elif backend == "jax":
            cache[key] = jax_sampler(prior, grid_size, top_k, row_cached)
        else:
            raise NotImplementedError(f"sample_codes supports the tensorflow and jax backends, "
                                      f"not {backend!r}")
    return cache[key]


def xla_works() -> bool:
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
