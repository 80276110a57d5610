"""The vector quantizer: the VQ-VAE's codebook layer (van den Oord et al., 2017).

Model code uses `keras.ops` and `keras.layers` only, so it runs on the TensorFlow and JAX backends.
The one exception is cross-replica reduction of the EMA codebook statistics, which asks TensorFlow's
distribution strategy (when one is active) to sum them over replicas.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from brainvq.hints import Tensor


def _sum_over_replicas(value: Tensor) -> Tensor:
    """Sums `value` over the replicas of an active `tf.distribute` strategy; identity otherwise."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


@keras.saving.register_keras_serializable(package="vqvae")
class VectorQuantizer(layers.Layer):
    """Maps each input vector to its nearest codebook vector (van den Oord et al., 2017).

    The codebook holds `num_codes` (K) vectors of size `code_dim` (D). In the forward pass every
    D-dimensional input vector is replaced by its nearest code; in the backward pass the gradient
    flows straight through to the input (straight-through estimator).

    With `use_ema=True` (the default) the codebook is not trained by gradients: each code moves to
    an exponential moving average of the encoder outputs assigned to it, with Laplace smoothing of
    the cluster sizes (Sonnet's `VectorQuantizerEMA`). With `use_ema=False` the codebook is a
    trainable weight pulled towards the encoder outputs by the codebook loss.

    On the first training batch the codebook is initialised k-means-style: random encoder outputs
    refined by a few Lloyd iterations. Codes whose EMA cluster size falls below
    `dead_code_threshold` are restarted from random encoder outputs of the current batch.

    The quantizer computes in float32 whatever the layer's dtype policy.

    Args:
        num_codes: K, the number of codebook vectors.
        code_dim: D, the size of each codebook vector (the last axis of the inputs).
        commitment_cost: beta, weight of the commitment loss ||z - sg(e)||^2.
        use_ema: update the codebook with moving averages instead of gradients.
        ema_decay: decay of the moving averages.
        epsilon: Laplace smoothing constant for the EMA cluster sizes.
        dead_code_threshold: EMA cluster size under which a code is restarted (0 disables).
        kmeans_iterations: Lloyd iterations of the first-batch initialisation (0: random
            encoder outputs of the first batch).
        init_from_data: initialise the codebook from the first training batch; False keeps the
            small random uniform initialisation (the keras-io baseline).

    Call returns a dict:
        quantized: inputs replaced by their nearest codes, straight-through gradient, [..., D].
        code_indices: int32 index of the nearest code, [...].
        loss: scalar VQ loss (commitment, plus the codebook loss when not using EMA).
        perplexity: exp(entropy) of the batch's code usage (K when all are used evenly).
        usage: fraction of the K codes used at least once in the batch.
    """

    def __init__(self, num_codes: int, code_dim: int, commitment_cost: float = 0.25,
                 use_ema: bool = True, ema_decay: float = 0.99, epsilon: float = 1e-5,
                 dead_code_threshold: float = 1.0, kmeans_iterations: int = 3,
                 init_from_data: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.commitment_cost = float(commitment_cost)
        self.use_ema = bool(use_ema)
        self.ema_decay = float(ema_decay)
        self.epsilon = float(epsilon)
        self.dead_code_threshold = float(dead_code_threshold)
        self.kmeans_iterations = int(kmeans_iterations)
        self.init_from_data = bool(init_from_data)
        self.seed_generator = keras.random.SeedGenerator(1234)

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] != self.code_dim:
            raise ValueError(f"VectorQuantizer expects inputs with last axis {self.code_dim} "
                             f"(code_dim), got shape {input_shape}")
        self.codebook = self.add_weight(
            name="codebook", shape=(self.num_codes, self.code_dim),
            # EMA updates are identical on every replica (statistics are summed over replicas
            # first); the first replica's value is kept.
            aggregation="only_first_replica" if self.use_ema else "none",
            initializer=keras.initializers.RandomUniform(-1.0 / self.num_codes,
                                                         1.0 / self.num_codes),
            trainable=not self.use_ema, dtype="float32")
        state = dict(trainable=False, dtype="float32", aggregation="only_first_replica")
        self.ema_cluster_size = self.add_weight(
            name="ema_cluster_size", shape=(self.num_codes,), initializer="zeros", **state)
        self.ema_code_sum = self.add_weight(
            name="ema_code_sum", shape=(self.num_codes, self.code_dim), initializer="zeros",
            **state)
        self.initialized = self.add_weight(
            name="initialized", shape=(), initializer="zeros", **state)

    # -- pieces --------------------------------------------------------------------------------

    def _distances(self, flat_inputs: Tensor, codebook: Tensor) -> Tensor:
        """Squared Euclidean distances [N, K] between input vectors and codes."""
        return (ops.sum(flat_inputs ** 2, axis=1, keepdims=True)
                - 2.0 * ops.matmul(flat_inputs, ops.transpose(codebook))
                + ops.sum(codebook ** 2, axis=1)[None, :])

    def nearest_codes(self, flat_inputs: Tensor, codebook: Tensor | None = None) -> Tensor:
        """Index of the nearest code for each row of `flat_inputs` [N, D]."""
        codebook = self.codebook.value if codebook is None else codebook
        return ops.cast(ops.argmin(self._distances(flat_inputs, codebook), axis=1), "int32")

    def _random_rows(self, flat_inputs: Tensor, count: int) -> Tensor:
        """`count` rows of `flat_inputs` drawn uniformly with replacement."""
        rows = ops.shape(flat_inputs)[0]
        picks = keras.random.randint((count,), 0, rows, seed=self.seed_generator)
        return ops.take(flat_inputs, picks, axis=0)

    def _kmeans_init(self, flat_inputs: Tensor, codebook: Tensor) -> Tensor:
        """k-means-style codebook from one batch: `codebook` (random inputs), then Lloyd
        iterations."""
        for _ in range(self.kmeans_iterations):
            one_hot = ops.one_hot(self.nearest_codes(flat_inputs, codebook), self.num_codes)
            counts = ops.sum(one_hot, axis=0)
            sums = ops.matmul(ops.transpose(one_hot), flat_inputs)
            means = sums / ops.maximum(counts, 1.0)[:, None]
            codebook = ops.where((counts > 0)[:, None], means, codebook)
        return codebook

    def _initialize_from(self, flat_inputs: Tensor) -> None:
        """Runs the k-means init once, on the first training batch."""
        first_time = self.initialized.value < 0.5
        # Drawn outside the cond: random state must not be updated inside a traced branch.
        seeds = self._random_rows(flat_inputs, self.num_codes)
        codebook = ops.cond(first_time, lambda: self._kmeans_init(flat_inputs, seeds),
                            lambda: ops.convert_to_tensor(self.codebook.value))
        self.codebook.assign(codebook)
        if self.use_ema:
            # Start the moving averages as if each code had been seen once.
            self.ema_cluster_size.assign(ops.where(
                first_time, ops.ones((self.num_codes,), "float32"), self.ema_cluster_size.value))
            self.ema_code_sum.assign(ops.where(first_time, codebook, self.ema_code_sum.value))
        self.initialized.assign(1.0)

    def _ema_update(self, flat_inputs: Tensor, one_hot: Tensor, counts: Tensor) -> None:
        """Moves each code towards the mean of the inputs assigned to it.

        `counts` are the assignments per code, already summed over replicas.
        """
        sums = _sum_over_replicas(ops.matmul(ops.transpose(one_hot), flat_inputs))
        decay = self.ema_decay
        cluster_size = self.ema_cluster_size.value * decay + counts * (1.0 - decay)
        code_sum = self.ema_code_sum.value * decay + sums * (1.0 - decay)
        # Laplace smoothing keeps codes with (almost) no members from dividing by zero.
        total = ops.sum(cluster_size)
        smoothed = (cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        self.ema_cluster_size.assign(cluster_size)
        self.ema_code_sum.assign(code_sum)
        self.codebook.assign(code_sum / smoothed[:, None])

    def _restart_dead_codes(self, flat_inputs: Tensor) -> None:
        """Replaces codes whose EMA cluster size is under the threshold by random inputs."""
        dead = self.ema_cluster_size.value < self.dead_code_threshold
        replacements = self._random_rows(flat_inputs, self.num_codes)
        self.codebook.assign(ops.where(dead[:, None], replacements, self.codebook.value))
        self.ema_code_sum.assign(ops.where(dead[:, None], replacements, self.ema_code_sum.value))
        self.ema_cluster_size.assign(
            ops.where(dead, ops.ones((self.num_codes,), "float32"), self.ema_cluster_size.value))

    # -- forward -------------------------------------------------------------------------------

    def call(self, inputs: Tensor, training: bool = False) -> dict[str, Tensor]:
        inputs = ops.cast(inputs, "float32")
        flat_inputs = ops.reshape(inputs, (-1, self.code_dim))
        if training and self.init_from_data:
            self._initialize_from(ops.stop_gradient(flat_inputs))
        code_indices = self.nearest_codes(flat_inputs)
        one_hot = ops.one_hot(code_indices, self.num_codes)
        counts = _sum_over_replicas(ops.sum(one_hot, axis=0))
        quantized_flat = ops.take(self.codebook.value, code_indices, axis=0)
        quantized = ops.reshape(quantized_flat, ops.shape(inputs))

        commitment_loss = ops.mean((ops.stop_gradient(quantized) - inputs) ** 2)
        loss = self.commitment_cost * commitment_loss
        if not self.use_ema:
            loss = loss + ops.mean((quantized - ops.stop_gradient(inputs)) ** 2)
        elif training:
            self._ema_update(ops.stop_gradient(flat_inputs), one_hot, counts)
            if self.dead_code_threshold > 0:
                self._restart_dead_codes(ops.stop_gradient(flat_inputs))

        # Straight-through: forward uses the code, backward copies the gradient to the input.
        quantized = inputs + ops.stop_gradient(quantized - inputs)

        mean_usage = counts / ops.maximum(ops.sum(counts), 1.0)
        perplexity = ops.exp(-ops.sum(mean_usage * ops.log(mean_usage + 1e-10)))
        usage = ops.mean(ops.cast(mean_usage > 0, "float32"))
        return {
            "quantized": quantized,
            "code_indices": ops.reshape(code_indices, ops.shape(inputs)[:-1]),
            "loss": loss,
            "perplexity": perplexity,
            "usage": usage,
        }

    def lookup(self, code_indices: Tensor) -> Tensor:
        """Code vectors [..., D] for integer code indices [...]."""
        return ops.take(self.codebook.value, ops.cast(code_indices, "int32"), axis=0)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_codes": self.num_codes, "code_dim": self.code_dim,
            "commitment_cost": self.commitment_cost, "use_ema": self.use_ema,
            "ema_decay": self.ema_decay, "epsilon": self.epsilon,
            "dead_code_threshold": self.dead_code_threshold,
            "kmeans_iterations": self.kmeans_iterations, "init_from_data": self.init_from_data,
        })
        return config
