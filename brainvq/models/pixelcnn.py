"""The gated PixelCNN prior over code grids (its inputs and metric: `prior_inputs`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
from keras import layers, ops

from brainvq.hints import Tensor
from brainvq.models import prior_inputs
from brainvq.models.layers import attention
from brainvq.models.layers.gated import GatedPixelCNNLayer


@keras.saving.register_keras_serializable(package="vqvae")
class GatedPixelCNN(keras.Model):
    """Autoregressive prior p(codes | slice index) over [g, g] grids of VQ-VAE code indices.

    Codes are embedded (`Embedding(num_codes, filters)`), passed through one type A gated layer
    and `num_layers` type B gated layers, then ReLU -> 1x1 conv -> ReLU -> 1x1 conv to K logits
    per position (float32 whatever the dtype policy). The logits at (r, c) depend only on the
    codes before (r, c) in raster order.

    Conditioning: `slice_index` [B] picks a learned embedding (one row per slice position plus a
    last row, index `num_slice_positions`, meaning "no condition") that each gated layer projects
    and adds to both stacks. In training (`training=True`) a fraction `condition_dropout` of the
    examples is switched to the unconditional row (classifier-free style), so the same model
    also samples unconditionally.

    Whole-grid context (issue 12): the gated stacks alone see `causal_reach` rows above and
    columns either side of a position. With `attention_blocks` > 0, causal self-attention blocks
    (attention.py) on top of the stacks let the logits at p depend on every earlier code, and
    with `position_embedding` learned row and column embeddings tell the network where each
    position lies (added to the input embedding and to the features of each output position).
    `attention_blocks=0, position_embedding=False` is the old, purely convolutional prior.

    `call` is `condition_biases`, then `embed` -> `vertical_pass` -> `horizontal_pass` ->
    `attention_pass` -> `head`. The stacks are convolutional, so they can run on any crop of the
    grid that holds the `causal_reach` rows above and columns either side of a position: the
    sampler in sampling.py runs the vertical pass once per row (at row r it depends only on the
    rows above), the horizontal pass on a one-row crop per position, and the attention blocks
    for that one position against a cache of the earlier positions' keys and values.

    Args:
        num_codes: K, the codebook size.
        grid_size: g, the side of the code grids.
        filters: F, the width of the stacks.
        num_layers: type B gated layers after the first (type A) one.
        kernel_size: odd side of the masked convolutions.
        dropout: dropout rate inside the gated layers.
        num_slice_positions: number of distinct slice indices (the condition vocabulary).
        condition_dropout: fraction of training examples whose condition is dropped.
        seed: seed of the condition dropout.
        attention_blocks: causal self-attention blocks on top of the gated stacks (0: none).
        attention_heads: heads of each attention block (a divisor of `filters`).
        position_embedding: learned row and column embeddings of the grid positions.
        condition_codes: > 0 adds a spatial condition: the codes of a coarser grid of side
            `condition_grid_size` (a divisor of g) from a codebook of this size, embedded,
            attended over as a whole (`attention.SpatialSelfAttention`), upsampled and added
            to both stacks of every layer (VQ-VAE-2's bottom prior, hierarchy.py). It is no
            part of the causal order: every position sees all of it.
        condition_grid_size: the side of that coarser grid.
        augmentation_inputs: > 0 conditions the prior on the augmentation applied to each
            training grid (flip, shift, rotation, scale: `augmentation.flip_and_shift`'s
            parameters, 0 for a grid as it is), through a small MLP added to the slice
            embedding. Trained on augmented grids so told, the prior learns the poses apart and
            samples unaugmented slices at 0 (the default when no `augmentation` is given):
            non-leaking augmentation (Karras et al. 2020). Its last layer starts at zero, so a
            prior fine-tuned with it from one trained without starts as that prior.
        condition_noise: in training, the share of the spatial condition's codes replaced by
            codes drawn uniformly from its codebook. A volume prior draws each slice given its
            own previous slice; trained on clean real slices only, it learns to copy the slice
            below, and its sampling errors then carry up the stack. Corrupted conditions teach
            it to read the slice below as evidence and to repair what does not fit.

    Call args:
        inputs: a dict {"code_indices": [B, g, g] int, "slice_index": [B] int (optional),
            "condition_codes": [B, t, t] int (with `condition_codes`)}, a tuple
            (code_indices, slice_index[, condition_codes]), or just the code indices. With
            `covariates`, "covariates": [B, C]; with `augmentation_inputs`, "augmentation":
            [B, A] (optional, default 0).
        training: enables dropout and condition dropout.

    Returns:
        Logits [B, g, g, K], float32.
    """

    # The attention settings default to what a prior saved before they existed was built with
    # (none, 4 heads, no position embedding), so such checkpoints load unchanged; runs get
    # theirs from models/build.py.
    def __init__(self, num_codes: int = 512, grid_size: int = 16, filters: int = 96,
                 num_layers: int = 6, kernel_size: int = 3, dropout: float = 0.1,
                 num_slice_positions: int = 32, condition_dropout: float = 0.1, seed: int = 0,
                 attention_blocks: int = 0, attention_heads: int = 4,
                 position_embedding: bool = False, condition_codes: int = 0,
                 condition_grid_size: int = 0, covariates: Sequence[Mapping[str, Any]] = (),
                 condition_noise: float = 0.0, augmentation_inputs: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_codes = int(num_codes)
        self.grid_size = int(grid_size)
        self.filters = int(filters)
        self.num_layers = int(num_layers)
        self.kernel_size = int(kernel_size)
        self.dropout_rate = float(dropout)
        self.num_slice_positions = int(num_slice_positions)
        self.condition_dropout = float(condition_dropout)
        self.seed = int(seed)
        self.attention_blocks = int(attention_blocks)
        self.attention_heads = int(attention_heads)
        self.position_embedding = bool(position_embedding)
        self.condition_codes = int(condition_codes)
        self.condition_grid_size = int(condition_grid_size)
        self.condition_noise = float(condition_noise)
        self.augmentation_inputs = int(augmentation_inputs)
        self.covariates = [dict(spec) for spec in covariates]
        self._check_settings()
        self._build_layers()
        self._build_condition_encoders()
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def _check_settings(self) -> None:
        """Raises ValueError for settings no prior can be built with."""
        if not 0.0 <= self.condition_noise <= 1.0:
            raise ValueError(f"condition_noise must lie in [0, 1], got {self.condition_noise}")
        for spec in self.covariates:
            if spec.get("kind") not in ("continuous", "categorical"):
                raise ValueError(f"covariate {spec!r}: kind must be continuous or categorical")
        if self.condition_codes and (self.condition_grid_size < 1
                                     or self.grid_size % self.condition_grid_size):
            raise ValueError(f"condition_grid_size {self.condition_grid_size} must divide "
                             f"grid_size {self.grid_size}")
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")
        if self.attention_blocks < 0:
            raise ValueError(f"attention_blocks must be >= 0, got {self.attention_blocks}")

    def _build_layers(self) -> None:
        """The embeddings, the gated stacks, the attention blocks and the output head."""
        self.code_embedding = layers.Embedding(self.num_codes, self.filters,
                                               name="code_embedding")
        self.slice_embedding = layers.Embedding(self.num_slice_positions + 1, self.filters,
                                                name="slice_embedding")
        self.gated_layers = [
            GatedPixelCNNLayer(self.filters, self.kernel_size, "A" if index == 0 else "B",
                               dropout=self.dropout_rate, condition_dim=self.filters,
                               name=f"gated_{index}")
            for index in range(self.num_layers + 1)]
        self.row_embedding = self.column_embedding = None
        if self.position_embedding:
            self.row_embedding = layers.Embedding(self.grid_size, self.filters,
                                                  name="row_embedding")
            self.column_embedding = layers.Embedding(self.grid_size, self.filters,
                                                     name="column_embedding")
        self.attention = [
            attention.CausalAttentionBlock(self.filters, self.attention_heads,
                                           dropout=self.dropout_rate, name=f"attention_{index}")
            for index in range(self.attention_blocks)]
        self.head_hidden = layers.Conv2D(self.filters, 1, name="head_hidden")
        self.head_logits = layers.Conv2D(self.num_codes, 1, dtype="float32", name="logits")

    def _build_condition_encoders(self) -> None:
        """The encoders of the conditions beside the slice position: spatial condition codes,
        covariates and augmentation parameters (each only when the prior takes it)."""
        # A spatial condition (VQ-VAE-2's bottom prior: the top codes): embedded, attended over
        # as a whole (so every position sees all of it), upsampled to the grid, mixed by a 3x3
        # convolution, and projected per gated layer.
        self.condition_embedding = self.condition_mix = self.condition_attention = None
        self.spatial_projections = []
        if self.condition_codes:
            self.condition_embedding = layers.Embedding(self.condition_codes, self.filters,
                                                        name="condition_embedding")
            heads = self.attention_heads if self.filters % self.attention_heads == 0 else 1
            self.condition_attention = attention.SpatialSelfAttention(
                heads, name="condition_attention")
            self.condition_mix = layers.Conv2D(self.filters, 3, padding="same",
                                               activation="relu", name="condition_mix")
            self.spatial_projections = [
                layers.Dense(2 * self.filters, use_bias=False, name=f"spatial_condition_{index}")
                for index in range(self.num_layers + 1)]
        # Covariates (age, sex, ...) beside the slice position: a continuous one through Fourier
        # features and a small MLP, a categorical one as a class embedding (its last row: not
        # given); each is added to the slice embedding.
        self.covariate_encoders = []
        for spec in self.covariates:
            name = f"covariate_{spec['name']}"
            if spec["kind"] == "continuous":
                encoder = keras.Sequential([layers.Dense(self.filters, activation="relu"),
                                            layers.Dense(self.filters)], name=name)
            else:
                encoder = layers.Embedding(len(spec["classes"]) + 1, self.filters, name=name)
            self.covariate_encoders.append(encoder)
        self.augmentation_encoder = None
        if self.augmentation_inputs:
            self.augmentation_encoder = keras.Sequential(
                [layers.Dense(self.filters, activation="relu"),
                 layers.Dense(self.filters, kernel_initializer="zeros")],
                name="augmentation_condition")

    @property
    def causal_reach(self) -> int:
        """How far (rows up, columns either side) the logits at a position can look."""
        return (self.num_layers + 1) * (self.kernel_size // 2)

    @property
    def unconditional_index(self) -> int:
        """The slice index meaning "no condition"."""
        return self.num_slice_positions

    def build(self, input_shape: Any = None) -> None:
        """Builds every sublayer (the input shape is implied by grid_size)."""
        grid = (None, self.grid_size, self.grid_size)
        features = grid + (self.filters,)
        self.code_embedding.build(grid)
        self.slice_embedding.build((None,))
        for layer in self.gated_layers:
            layer.build(features)
        if self.position_embedding:
            self.row_embedding.build((None,))
            self.column_embedding.build((None,))
        for block in self.attention:
            block.build((None, self.grid_size * self.grid_size, self.filters))
        if self.condition_codes:
            side = self.condition_grid_size
            self.condition_embedding.build((None, side, side))
            self.condition_attention.build((None, side, side, self.filters))
            self.condition_mix.build(features)
            for projection in self.spatial_projections:
                projection.build(features)
        for spec, encoder in zip(self.covariates, self.covariate_encoders):
            continuous = spec["kind"] == "continuous"
            encoder.build((None, 1 + 2 * prior_inputs.FOURIER_OCTAVES) if continuous else (None,))
        if self.augmentation_encoder is not None:
            self.augmentation_encoder.build((None, self.augmentation_inputs))
        self.head_hidden.build(features)
        self.head_logits.build(features)

    def covariate_condition(self, covariates: Tensor | None, batch: int, training: bool = False
                            ) -> Tensor:
        """[B, F]: the sum of the covariates' embeddings (0 without covariates).

        Args:
            covariates: [B, C] float, one column per covariate in `self.covariates` order: a
                continuous value scaled to the training range (0 .. 1), or a class index; NaN
                where not given. None: none given.
            training: drops each covariate independently for a fraction `condition_dropout`
                of the examples, so that any of them can be left out when sampling.
        """
        if not self.covariates:
            return 0.0
        if covariates is None:
            covariates = ops.full((batch, len(self.covariates)), float("nan"), "float32")
        covariates = ops.reshape(ops.cast(covariates, "float32"), (-1, len(self.covariates)))
        given = ops.logical_not(ops.isnan(covariates))
        if training and self.condition_dropout > 0:
            kept = keras.random.uniform(ops.shape(covariates), seed=self.seed_generator)
            given = ops.logical_and(given, kept >= self.condition_dropout)
        total = 0.0
        for column, (spec, encoder) in enumerate(zip(self.covariates, self.covariate_encoders)):
            present = given[:, column]
            value = ops.where(present, covariates[:, column], 0.0)
            if spec["kind"] == "continuous":
                total = total + encoder(prior_inputs.fourier_features(value, present))
            else:
                index = ops.where(present, ops.cast(value, "int32"), len(spec["classes"]))
                total = total + encoder(index)
        return total

    def augmentation_condition(self, augmentation: Tensor | None, batch: int) -> Tensor | float:
        """[B, F]: the embedding of the augmentation parameters [B, A] (None: all 0, a grid as
        it is); 0 for a prior built without `augmentation_inputs`."""
        if not self.augmentation_inputs:
            return 0.0
        if augmentation is None:
            augmentation = ops.zeros((batch, self.augmentation_inputs), "float32")
        augmentation = ops.reshape(ops.cast(augmentation, "float32"),
                                   (-1, self.augmentation_inputs))
        return self.augmentation_encoder(augmentation)

    def corrupt_condition(self, condition_codes: Tensor) -> Tensor:
        """[B, t, t] codes with a share `condition_noise` of them replaced by uniformly drawn
        codes (training only; see the class docstring)."""
        condition_codes = ops.cast(condition_codes, "int32")
        shape = ops.shape(condition_codes)
        replace = keras.random.uniform(shape, seed=self.seed_generator) < self.condition_noise
        drawn = keras.random.randint(shape, 0, self.condition_codes, dtype="int32",
                                     seed=self.seed_generator)
        return ops.where(replace, drawn, condition_codes)

    def spatial_condition(self, condition_codes: Tensor) -> Tensor:
        """[B, t, t] codes of the coarser grid -> [B, g, g, F] condition features."""
        factor = self.grid_size // self.condition_grid_size
        embedded = self.condition_attention(
            self.condition_embedding(ops.cast(condition_codes, "int32")))
        upsampled = ops.repeat(ops.repeat(embedded, factor, axis=1), factor, axis=2)
        return self.condition_mix(upsampled)

    def condition_biases(self, slice_index: Tensor | None, batch: int, training: bool = False,
                         condition_codes: Tensor | None = None, covariates: Tensor | None = None,
                         augmentation: Tensor | None = None) -> list:
        """Per gated layer, the bias of the conditions: [B, 1, 1, 2F] for the slice alone, or
        [B, g, g, 2F] with a spatial condition (`condition_codes`).

        Args:
            slice_index: [B] ints, or None for unconditional.
            batch: B.
            training: applies condition dropout (to the slice condition).
            condition_codes: [B, t, t] codes of the coarser grid; required when the prior was
                built with `condition_codes` > 0, refused otherwise.
            covariates: [B, C] for a prior built with `covariates` (see
                `covariate_condition`), or None.
            augmentation: [B, A] augmentation parameters for a prior built with
                `augmentation_inputs`, or None (0: unaugmented, what sampling asks for).

        Returns:
            A list with one bias per gated layer.
        """
        if bool(self.condition_codes) != (condition_codes is not None):
            raise ValueError(
                f"{self.name} was built with condition_codes={self.condition_codes}: "
                + ("it needs the coarser grid's codes (inputs['condition_codes'])"
                   if self.condition_codes else "it takes no condition_codes"))
        if slice_index is None:
            slice_index = ops.full((batch,), self.num_slice_positions, dtype="int32")
        slice_index = ops.reshape(ops.cast(slice_index, "int32"), (-1,))
        if training and self.condition_dropout > 0:
            drop = keras.random.uniform((batch,), seed=self.seed_generator) < self.condition_dropout
            slice_index = ops.where(drop, self.num_slice_positions, slice_index)
        condition = (self.slice_embedding(slice_index)
                     + self.covariate_condition(covariates, batch, training)
                     + self.augmentation_condition(augmentation, batch))
        biases = [layer.condition_bias(condition) for layer in self.gated_layers]
        if condition_codes is None:
            return biases
        if training and self.condition_noise > 0:
            condition_codes = self.corrupt_condition(condition_codes)
        spatial = self.spatial_condition(condition_codes)
        return [bias + projection(spatial)
                for bias, projection in zip(biases, self.spatial_projections)]

    def position_features(self, row_offset: int | Tensor, column_offset: int | Tensor, height: int,
                          width: int) -> Tensor | float:
        """[1, height, width, F] learned embedding of the absolute grid positions of a crop
        whose top-left corner is (row_offset, column_offset); 0 without `position_embedding`."""
        if not self.position_embedding:
            return 0.0
        rows = self.row_embedding(ops.arange(height, dtype="int32") + row_offset)
        columns = self.column_embedding(ops.arange(width, dtype="int32") + column_offset)
        return (rows[:, None, :] + columns[None, :, :])[None]

    def embed(self, code_indices: Tensor, row_offset: int | Tensor = 0,
              column_offset: int | Tensor = 0) -> Tensor:
        """[B, H, W] code indices (any crop of a grid whose top-left corner is at
        (row_offset, column_offset)) -> [B, H, W, F] input features: the code embedding plus,
        with `position_embedding`, the embedding of each position."""
        embedded = self.code_embedding(ops.cast(code_indices, "int32"))
        height, width = code_indices.shape[1], code_indices.shape[2]
        return embedded + self.position_features(row_offset, column_offset, height, width)

    def vertical_pass(self, embedded: Tensor, biases: list) -> list:
        """The vertical stack of every gated layer.

        Args:
            embedded: [B, H, W, F] from `embed`.
            biases: from `condition_biases`.

        Returns:
            One [B, H, W, 2F] tensor per gated layer: what its vertical stack adds to the
            horizontal stack. At row r these depend only on the rows above r.
        """
        vertical = embedded
        to_horizontal = []
        for layer, bias in zip(self.gated_layers, biases):
            vertical, term = layer.vertical_step(vertical, bias)
            to_horizontal.append(term)
        return to_horizontal

    def horizontal_pass(self, embedded: Tensor, to_horizontal: list, biases: list,
                        training: bool = False) -> Tensor:
        """The horizontal stack of every gated layer.

        Args:
            embedded: [B, H, W, F] from `embed`, the same crop `to_horizontal` was computed on.
            to_horizontal: from `vertical_pass` (or the same rows/columns cut out of it).
            biases: from `condition_biases`.
            training: enables dropout.

        Returns:
            [B, H, W, F] features of the last horizontal stack.
        """
        horizontal = embedded
        for layer, term, bias in zip(self.gated_layers, to_horizontal, biases):
            horizontal = layer.horizontal_step(horizontal, term, bias, training=training)
        return horizontal

    def attention_pass(self, features: Tensor, embedded: Tensor, training: bool = False) -> Tensor:
        """The causal attention blocks over the whole grid (identity without them).

        Args:
            features: [B, g, g, F] from `horizontal_pass` (plus, with `position_embedding`,
                the position of each output: see `call`).
            embedded: [B, g, g, F] from `embed`: the code (and position) at each position,
                which the blocks' keys and values add to the features.
            training: enables dropout.

        Returns:
            [B, g, g, F] features; at position p they depend on every code before p.
        """
        if not self.attention:
            return features
        batch, height, width = (ops.shape(features)[0], ops.shape(features)[1],
                                ops.shape(features)[2])
        flat = ops.reshape(features, (batch, height * width, self.filters))
        context = ops.reshape(embedded, (batch, height * width, self.filters))
        for block in self.attention:
            flat = block(flat, context, training=training)
        return ops.reshape(flat, (batch, height, width, self.filters))

    def head(self, features: Tensor) -> Tensor:
        """Logits [..., K] (float32) from last-layer features [..., H, W, F]."""
        return self.head_logits(ops.relu(self.head_hidden(ops.relu(features))))

    def call(self, inputs: Any, training: bool = False) -> Tensor:
        code_indices, slice_index, condition_codes = prior_inputs.split_prior_inputs(inputs)
        biases = self.condition_biases(slice_index, ops.shape(code_indices)[0], training,
                                       condition_codes, prior_inputs.prior_covariates(inputs),
                                       prior_inputs.prior_augmentation(inputs))
        embedded = self.embed(code_indices)
        to_horizontal = self.vertical_pass(embedded, biases)
        features = self.horizontal_pass(embedded, to_horizontal, biases, training)
        # The output at p is told where p is (its inputs only saw the positions before it).
        features = features + self.position_features(0, 0, self.grid_size, self.grid_size)
        return self.head(self.attention_pass(features, embedded, training))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_codes": self.num_codes, "grid_size": self.grid_size, "filters": self.filters,
            "num_layers": self.num_layers, "kernel_size": self.kernel_size,
            "dropout": self.dropout_rate, "num_slice_positions": self.num_slice_positions,
            "condition_dropout": self.condition_dropout, "seed": self.seed,
            "attention_blocks": self.attention_blocks, "attention_heads": self.attention_heads,
            "position_embedding": self.position_embedding,
            "condition_codes": self.condition_codes,
            "condition_grid_size": self.condition_grid_size,
            "condition_noise": self.condition_noise,
            "covariates": self.covariates,
            "augmentation_inputs": self.augmentation_inputs,
        })
        return config
