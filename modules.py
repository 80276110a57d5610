"""The networks: a VQ-VAE (encoder, vector quantizer, decoder) and a gated PixelCNN prior.

Model code uses `keras.ops` and `keras.layers` only, so it runs on the TensorFlow and JAX backends.
The one exception is cross-replica reduction of the EMA codebook statistics, which asks TensorFlow's
distribution strategy (when one is active) to sum them over replicas.
"""
import math

import keras
from keras import layers, ops


# ---------------------------------------------------------------------------------------------
# Vector quantizer
# ---------------------------------------------------------------------------------------------

def _sum_over_replicas(value):
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
        kmeans_iterations: Lloyd iterations of the first-batch initialisation (0: random init).

    Call returns a dict:
        quantized: inputs replaced by their nearest codes, straight-through gradient, [..., D].
        code_indices: int32 index of the nearest code, [...].
        loss: scalar VQ loss (commitment, plus the codebook loss when not using EMA).
        perplexity: exp(entropy) of the batch's code usage (K when all are used evenly).
        usage: fraction of the K codes used at least once in the batch.
    """

    def __init__(self, num_codes, code_dim, commitment_cost=0.25, use_ema=True, ema_decay=0.99,
                 epsilon=1e-5, dead_code_threshold=1e-2, kmeans_iterations=3, **kwargs):
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
        self.seed_generator = keras.random.SeedGenerator(1234)

    def build(self, input_shape):
        if input_shape[-1] != self.code_dim:
            raise ValueError(f"VectorQuantizer expects inputs with last axis {self.code_dim} "
                             f"(code_dim), got shape {input_shape}")
        self.codebook = self.add_weight(
            name="codebook", shape=(self.num_codes, self.code_dim),
            # EMA updates are identical on every replica (statistics are summed over replicas
            # first); the first replica's value is kept.
            aggregation="only_first_replica" if self.use_ema else "none",
            initializer=keras.initializers.RandomUniform(-1.0 / self.num_codes, 1.0 / self.num_codes),
            trainable=not self.use_ema, dtype="float32")
        self.ema_cluster_size = self.add_weight(
            name="ema_cluster_size", aggregation="only_first_replica", shape=(self.num_codes,), initializer="zeros",
            trainable=False, dtype="float32")
        self.ema_code_sum = self.add_weight(
            name="ema_code_sum", aggregation="only_first_replica", shape=(self.num_codes, self.code_dim), initializer="zeros",
            trainable=False, dtype="float32")
        self.initialized = self.add_weight(
            name="initialized", aggregation="only_first_replica", shape=(), initializer="zeros", trainable=False, dtype="float32")

    # -- pieces --------------------------------------------------------------------------------

    def _distances(self, flat_inputs, codebook):
        """Squared Euclidean distances [N, K] between input vectors and codes."""
        return (ops.sum(flat_inputs ** 2, axis=1, keepdims=True)
                - 2.0 * ops.matmul(flat_inputs, ops.transpose(codebook))
                + ops.sum(codebook ** 2, axis=1)[None, :])

    def nearest_codes(self, flat_inputs, codebook=None):
        """Index of the nearest code for each row of `flat_inputs` [N, D]."""
        codebook = self.codebook if codebook is None else codebook
        return ops.cast(ops.argmin(self._distances(flat_inputs, codebook), axis=1), "int32")

    def _random_rows(self, flat_inputs, count):
        """`count` rows of `flat_inputs` drawn uniformly with replacement."""
        rows = ops.shape(flat_inputs)[0]
        picks = keras.random.randint((count,), 0, rows, seed=self.seed_generator)
        return ops.take(flat_inputs, picks, axis=0)

    def _kmeans_init(self, flat_inputs):
        """k-means-style codebook from one batch: random inputs, then Lloyd iterations."""
        codebook = self._random_rows(flat_inputs, self.num_codes)
        for _ in range(self.kmeans_iterations):
            one_hot = ops.one_hot(self.nearest_codes(flat_inputs, codebook), self.num_codes)
            counts = ops.sum(one_hot, axis=0)
            sums = ops.matmul(ops.transpose(one_hot), flat_inputs)
            means = sums / ops.maximum(counts, 1.0)[:, None]
            codebook = ops.where((counts > 0)[:, None], means, codebook)
        return codebook

    def _initialize_from(self, flat_inputs):
        """Runs the k-means init once, on the first training batch."""
        first_time = self.initialized < 0.5
        codebook = ops.cond(first_time, lambda: self._kmeans_init(flat_inputs),
                            lambda: ops.convert_to_tensor(self.codebook))
        self.codebook.assign(codebook)
        if self.use_ema:
            # Start the moving averages as if each code had been seen once.
            self.ema_cluster_size.assign(
                ops.where(first_time, ops.ones_like(self.ema_cluster_size), self.ema_cluster_size))
            self.ema_code_sum.assign(ops.where(first_time, codebook, self.ema_code_sum))
        self.initialized.assign(ops.ones_like(self.initialized))

    def _ema_update(self, flat_inputs, one_hot, counts):
        """Moves each code towards the mean of the inputs assigned to it.

        `counts` are the assignments per code, already summed over replicas.
        """
        sums = _sum_over_replicas(ops.matmul(ops.transpose(one_hot), flat_inputs))
        decay = self.ema_decay
        cluster_size = self.ema_cluster_size * decay + counts * (1.0 - decay)
        code_sum = self.ema_code_sum * decay + sums * (1.0 - decay)
        # Laplace smoothing keeps codes with (almost) no members from dividing by zero.
        total = ops.sum(cluster_size)
        smoothed = (cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        self.ema_cluster_size.assign(cluster_size)
        self.ema_code_sum.assign(code_sum)
        self.codebook.assign(code_sum / smoothed[:, None])

    def _restart_dead_codes(self, flat_inputs):
        """Replaces codes whose EMA cluster size is under the threshold by random inputs."""
        dead = self.ema_cluster_size < self.dead_code_threshold
        replacements = self._random_rows(flat_inputs, self.num_codes)
        self.codebook.assign(ops.where(dead[:, None], replacements, self.codebook))
        self.ema_code_sum.assign(ops.where(dead[:, None], replacements, self.ema_code_sum))
        self.ema_cluster_size.assign(
            ops.where(dead, ops.ones_like(self.ema_cluster_size), self.ema_cluster_size))

    # -- forward -------------------------------------------------------------------------------

    def call(self, inputs, training=False):
        inputs = ops.cast(inputs, "float32")
        flat_inputs = ops.reshape(inputs, (-1, self.code_dim))
        if training:
            self._initialize_from(ops.stop_gradient(flat_inputs))
        code_indices = self.nearest_codes(flat_inputs)
        one_hot = ops.one_hot(code_indices, self.num_codes)
        counts = _sum_over_replicas(ops.sum(one_hot, axis=0))
        quantized_flat = ops.take(self.codebook, code_indices, axis=0)
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

    def lookup(self, code_indices):
        """Code vectors [..., D] for integer code indices [...]."""
        return ops.take(self.codebook, ops.cast(code_indices, "int32"), axis=0)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_codes": self.num_codes, "code_dim": self.code_dim,
            "commitment_cost": self.commitment_cost, "use_ema": self.use_ema,
            "ema_decay": self.ema_decay, "epsilon": self.epsilon,
            "dead_code_threshold": self.dead_code_threshold,
            "kmeans_iterations": self.kmeans_iterations,
        })
        return config


# ---------------------------------------------------------------------------------------------
# Encoder and decoder
# ---------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="vqvae")
class ResidualBlock(layers.Layer):
    """ReLU -> 3x3 conv -> ReLU -> 1x1 conv, added to the input (the VQ-VAE paper's block).

    Args:
        channels: width of the input and output.
        hidden_channels: width of the 3x3 convolution (default: channels // 2).
    """

    def __init__(self, channels, hidden_channels=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.hidden_channels = int(hidden_channels or max(channels // 2, 1))
        self.conv3 = layers.Conv2D(self.hidden_channels, 3, padding="same")
        self.conv1 = layers.Conv2D(self.channels, 1)

    def build(self, input_shape):
        self.conv3.build(input_shape)
        self.conv1.build(tuple(input_shape[:-1]) + (self.hidden_channels,))

    def call(self, inputs):
        hidden = self.conv3(ops.relu(inputs))
        return inputs + self.conv1(ops.relu(hidden))

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "hidden_channels": self.hidden_channels})
        return config


def level_channels(channels, num_downsamples):
    """Width of each resolution level: `channels`, doubling per level, capped at 4x."""
    return [channels * min(2 ** level, 4) for level in range(num_downsamples)]


def build_encoder(image_size, code_dim, num_downsamples=3, channels=64, num_residual_blocks=2):
    """Strided convolutions then residual blocks: [B, S, S, 1] -> [B, S/2^n, S/2^n, code_dim]."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    hidden = inputs
    for level, width in enumerate(level_channels(channels, num_downsamples)):
        hidden = layers.Conv2D(width, 4, strides=2, padding="same", activation="relu",
                               name=f"down_{level}")(hidden)
    width = level_channels(channels, num_downsamples)[-1]
    hidden = layers.Conv2D(width, 3, padding="same", name="mix")(hidden)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(width, name=f"residual_{block}")(hidden)
    hidden = layers.ReLU()(hidden)
    latents = layers.Conv2D(code_dim, 1, name="to_codes")(hidden)
    return keras.Model(inputs, latents, name="encoder")


def build_decoder(grid_size, code_dim, num_downsamples=3, channels=64, num_residual_blocks=2):
    """Residual blocks then transposed convolutions: [B, g, g, code_dim] -> [B, g*2^n, g*2^n, 1]."""
    inputs = keras.Input((grid_size, grid_size, code_dim), name="quantized")
    widths = level_channels(channels, num_downsamples)
    hidden = layers.Conv2D(widths[-1], 3, padding="same", name="from_codes")(inputs)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(widths[-1], name=f"residual_{block}")(hidden)
    hidden = layers.ReLU()(hidden)
    for level, width in reversed(list(enumerate(widths))):
        out_width = widths[level - 1] if level > 0 else channels // 2
        hidden = layers.Conv2DTranspose(out_width, 4, strides=2, padding="same",
                                        activation="relu", name=f"up_{level}")(hidden)
    image = layers.Conv2D(1, 3, padding="same", name="to_image", dtype="float32")(hidden)
    return keras.Model(inputs, image, name="decoder")


# ---------------------------------------------------------------------------------------------
# SSIM for the loss (keras.ops, differentiable)
# ---------------------------------------------------------------------------------------------

def _gaussian_window(size=11, sigma=1.5):
    coords = [i - (size - 1) / 2.0 for i in range(size)]
    weights = [math.exp(-(c ** 2) / (2 * sigma ** 2)) for c in coords]
    total = sum(weights)
    row = [w / total for w in weights]
    return [[a * b for b in row] for a in row]


def ssim_per_image(images_a, images_b, max_value=1.0):
    """Mean SSIM of each image pair [B, H, W, 1] -> [B] (Gaussian 11x11 window, sigma 1.5).

    Uses "valid" filtering like scikit-image's `structural_similarity(gaussian_weights=True)`
    up to border handling, so the values agree closely with the reported metric.
    """
    window_size = min(11, int(images_a.shape[1]), int(images_a.shape[2]))
    window = ops.reshape(ops.convert_to_tensor(_gaussian_window(window_size), "float32"),
                         (window_size, window_size, 1, 1))
    images_a = ops.cast(images_a, "float32")
    images_b = ops.cast(images_b, "float32")

    def blur(image):
        return ops.conv(image, window, padding="valid")

    c1 = (0.01 * max_value) ** 2
    c2 = (0.03 * max_value) ** 2
    mean_a, mean_b = blur(images_a), blur(images_b)
    var_a = blur(images_a * images_a) - mean_a ** 2
    var_b = blur(images_b * images_b) - mean_b ** 2
    covariance = blur(images_a * images_b) - mean_a * mean_b
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)
                / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2)))
    return ops.mean(ssim_map, axis=(1, 2, 3))


# ---------------------------------------------------------------------------------------------
# The VQ-VAE and its training step
# ---------------------------------------------------------------------------------------------

VQVAE_METRICS = ("loss", "reconstruction_loss", "vq_loss", "ssim", "perplexity", "codebook_usage")


@keras.saving.register_keras_serializable(package="vqvae")
class VQVAETrainer(keras.Model):
    """Encoder -> VectorQuantizer -> decoder, trained with its own `train_step`.

    The loss is `reconstruction + vq`, where reconstruction = MSE + ssim_weight * (1 - SSIM) and
    vq is the quantizer's commitment (and, without EMA, codebook) loss. Each step reports the
    total, reconstruction and VQ losses, the batch SSIM, the codebook perplexity and the fraction
    of codes used, so they show in the `fit` progress bar and in the CSV log.

    Args:
        image_size: side of the square input slices.
        num_codes, code_dim, commitment_cost, use_ema, ema_decay, dead_code_threshold: passed to
            `VectorQuantizer`.
        num_downsamples: stride-2 levels; the code grid is image_size / 2**num_downsamples.
        channels, num_residual_blocks: encoder/decoder width and depth.
        ssim_weight: weight of (1 - SSIM) in the reconstruction loss.

    Call returns the reconstructions [B, S, S, 1]; `encode` returns code indices [B, g, g] and
    `decode_codes` renders code indices back into images.
    """

    def __init__(self, image_size=128, num_codes=512, code_dim=64, num_downsamples=3, channels=64,
                 num_residual_blocks=2, commitment_cost=0.25, use_ema=True, ema_decay=0.99,
                 dead_code_threshold=1e-2, ssim_weight=0.5, **kwargs):
        super().__init__(**kwargs)
        if image_size % (2 ** num_downsamples):
            raise ValueError(f"image_size {image_size} is not divisible by 2**num_downsamples "
                             f"= {2 ** num_downsamples}; pick another --image-size or "
                             f"--num-downsamples")
        self.image_size = int(image_size)
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.num_downsamples = int(num_downsamples)
        self.channels = int(channels)
        self.num_residual_blocks = int(num_residual_blocks)
        self.commitment_cost = float(commitment_cost)
        self.use_ema = bool(use_ema)
        self.ema_decay = float(ema_decay)
        self.dead_code_threshold = float(dead_code_threshold)
        self.ssim_weight = float(ssim_weight)
        self.grid_size = self.image_size // 2 ** self.num_downsamples

        self.encoder = build_encoder(self.image_size, self.code_dim, self.num_downsamples,
                                     self.channels, self.num_residual_blocks)
        self.quantizer = VectorQuantizer(
            self.num_codes, self.code_dim, commitment_cost=self.commitment_cost,
            use_ema=self.use_ema, ema_decay=self.ema_decay,
            dead_code_threshold=self.dead_code_threshold, name="vector_quantizer")
        self.decoder = build_decoder(self.grid_size, self.code_dim, self.num_downsamples,
                                     self.channels, self.num_residual_blocks)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in VQVAE_METRICS}

    def build(self, input_shape=None):
        grid = (None, self.grid_size, self.grid_size, self.code_dim)
        self.quantizer.build(grid)
        super().build((None, self.image_size, self.image_size, 1))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.forward(images, training=training)["reconstructions"]

    def forward(self, images, training=False):
        """Runs the whole model; returns reconstructions, code indices and the loss terms."""
        latents = self.encoder(images, training=training)
        quantized = self.quantizer(latents, training=training)
        reconstructions = ops.cast(self.decoder(quantized["quantized"], training=training),
                                   "float32")
        images = ops.cast(images, "float32")
        mse = ops.mean((images - reconstructions) ** 2)
        ssim = ops.mean(ssim_per_image(images, reconstructions))
        reconstruction_loss = mse + self.ssim_weight * (1.0 - ssim)
        return {
            "reconstructions": reconstructions,
            "code_indices": quantized["code_indices"],
            "loss": reconstruction_loss + quantized["loss"],
            "reconstruction_loss": reconstruction_loss,
            "vq_loss": quantized["loss"],
            "ssim": ssim,
            "perplexity": quantized["perplexity"],
            "codebook_usage": quantized["usage"],
        }

    def encode(self, images):
        """Code indices [B, g, g] of a batch of images."""
        latents = self.encoder(images, training=False)
        flat = ops.reshape(ops.cast(latents, "float32"), (-1, self.code_dim))
        indices = self.quantizer.nearest_codes(flat)
        return ops.reshape(indices, (-1, self.grid_size, self.grid_size))

    def decode_codes(self, code_indices):
        """Images [B, S, S, 1] rendered from code indices [B, g, g]."""
        return ops.cast(self.decoder(self.quantizer.lookup(code_indices), training=False),
                        "float32")

    def _report(self, results):
        for name, tracker in self.trackers.items():
            tracker.update_state(results[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        if keras.backend.backend() == "jax":
            raise NotImplementedError("use VQVAETrainer.jax_train_step on the JAX backend")
        import tensorflow as tf

        with tf.GradientTape() as tape:
            results = self.forward(images, training=True)
            # Gradients are summed over replicas, so each replica contributes its share.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(results["loss"] / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._report(results)

    def test_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self._report(self.forward(images, training=False))

    def get_config(self):
        config = super().get_config()
        config.update({
            "image_size": self.image_size, "num_codes": self.num_codes,
            "code_dim": self.code_dim, "num_downsamples": self.num_downsamples,
            "channels": self.channels, "num_residual_blocks": self.num_residual_blocks,
            "commitment_cost": self.commitment_cost, "use_ema": self.use_ema,
            "ema_decay": self.ema_decay, "dead_code_threshold": self.dead_code_threshold,
            "ssim_weight": self.ssim_weight,
        })
        return config


def vqvae_from_hyperparameters(values):
    """A `VQVAETrainer` built from a hyperparameters dict (see hyperparameters.py)."""
    model = VQVAETrainer(
        image_size=values["image_size"], num_codes=values["num_codes"],
        code_dim=values["code_dim"], num_downsamples=values["num_downsamples"],
        channels=values["channels"], num_residual_blocks=values["num_residual_blocks"],
        commitment_cost=values["commitment_cost"], use_ema=values["use_ema"],
        ema_decay=values["ema_decay"], dead_code_threshold=values["dead_code_threshold"],
        ssim_weight=values["ssim_weight"])
    model.build()
    return model
