"""The networks: a VQ-VAE (encoder, vector quantizer, decoder) and a gated PixelCNN prior.

Model code uses `keras.ops` and `keras.layers` only, so it runs on the TensorFlow and JAX backends.
The one exception is cross-replica reduction of the EMA codebook statistics, which asks TensorFlow's
distribution strategy (when one is active) to sum them over replicas.
"""
import math

import keras
from keras import layers, ops

import attention


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

    def __init__(self, num_codes, code_dim, commitment_cost=0.25, use_ema=True, ema_decay=0.99,
                 epsilon=1e-5, dead_code_threshold=1.0, kmeans_iterations=3, init_from_data=True,
                 **kwargs):
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

    def build(self, input_shape):
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

    def _distances(self, flat_inputs, codebook):
        """Squared Euclidean distances [N, K] between input vectors and codes."""
        return (ops.sum(flat_inputs ** 2, axis=1, keepdims=True)
                - 2.0 * ops.matmul(flat_inputs, ops.transpose(codebook))
                + ops.sum(codebook ** 2, axis=1)[None, :])

    def nearest_codes(self, flat_inputs, codebook=None):
        """Index of the nearest code for each row of `flat_inputs` [N, D]."""
        codebook = self.codebook.value if codebook is None else codebook
        return ops.cast(ops.argmin(self._distances(flat_inputs, codebook), axis=1), "int32")

    def _random_rows(self, flat_inputs, count):
        """`count` rows of `flat_inputs` drawn uniformly with replacement."""
        rows = ops.shape(flat_inputs)[0]
        picks = keras.random.randint((count,), 0, rows, seed=self.seed_generator)
        return ops.take(flat_inputs, picks, axis=0)

    def _kmeans_init(self, flat_inputs, codebook):
        """k-means-style codebook from one batch: `codebook` (random inputs), then Lloyd
        iterations."""
        for _ in range(self.kmeans_iterations):
            one_hot = ops.one_hot(self.nearest_codes(flat_inputs, codebook), self.num_codes)
            counts = ops.sum(one_hot, axis=0)
            sums = ops.matmul(ops.transpose(one_hot), flat_inputs)
            means = sums / ops.maximum(counts, 1.0)[:, None]
            codebook = ops.where((counts > 0)[:, None], means, codebook)
        return codebook

    def _initialize_from(self, flat_inputs):
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

    def _ema_update(self, flat_inputs, one_hot, counts):
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

    def _restart_dead_codes(self, flat_inputs):
        """Replaces codes whose EMA cluster size is under the threshold by random inputs."""
        dead = self.ema_cluster_size.value < self.dead_code_threshold
        replacements = self._random_rows(flat_inputs, self.num_codes)
        self.codebook.assign(ops.where(dead[:, None], replacements, self.codebook.value))
        self.ema_code_sum.assign(ops.where(dead[:, None], replacements, self.ema_code_sum.value))
        self.ema_cluster_size.assign(
            ops.where(dead, ops.ones((self.num_codes,), "float32"), self.ema_cluster_size.value))

    # -- forward -------------------------------------------------------------------------------

    def call(self, inputs, training=False):
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

    def lookup(self, code_indices):
        """Code vectors [..., D] for integer code indices [...]."""
        return ops.take(self.codebook.value, ops.cast(code_indices, "int32"), axis=0)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_codes": self.num_codes, "code_dim": self.code_dim,
            "commitment_cost": self.commitment_cost, "use_ema": self.use_ema,
            "ema_decay": self.ema_decay, "epsilon": self.epsilon,
            "dead_code_threshold": self.dead_code_threshold,
            "kmeans_iterations": self.kmeans_iterations, "init_from_data": self.init_from_data,
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


def build_kerasio_encoder(image_size, code_dim):
    """The keras-io `vq_vae.py` encoder (a baseline): two stride-2 3x3 convs of 32 and 64 filters."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    hidden = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    hidden = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(hidden)
    latents = layers.Conv2D(code_dim, 1, padding="same", name="to_codes")(hidden)
    return keras.Model(inputs, latents, name="encoder")


def build_kerasio_decoder(grid_size, code_dim):
    """The keras-io `vq_vae.py` decoder (a baseline): two stride-2 transposed convs."""
    inputs = keras.Input((grid_size, grid_size, code_dim), name="quantized")
    hidden = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(inputs)
    hidden = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(hidden)
    image = layers.Conv2DTranspose(1, 3, padding="same", name="to_image", dtype="float32")(hidden)
    return keras.Model(inputs, image, name="decoder")


# ---------------------------------------------------------------------------------------------
# SSIM for the loss (keras.ops, differentiable)
# ---------------------------------------------------------------------------------------------

SSIM_WINDOWS = ("gaussian", "uniform")


def _ssim_window(kind, image_height, image_width):
    """The SSIM averaging window [k, k] and the factor applied to (co)variances.

    "gaussian": 11x11, sigma 1.5, population (co)variances (Wang et al. 2004);
    "uniform": 7x7 box with sample (co)variances, scikit-image's `structural_similarity` default
    and so exactly what similarity.py, predict.py and benchmark.py report.
    """
    if kind == "gaussian":
        size = min(11, image_height, image_width)
        coords = [i - (size - 1) / 2.0 for i in range(size)]
        weights = [math.exp(-(c ** 2) / (2 * 1.5 ** 2)) for c in coords]
        row = [w / sum(weights) for w in weights]
        return [[a * b for b in row] for a in row], 1.0
    if kind == "uniform":
        size = min(7, image_height, image_width)
        count = size * size
        return [[1.0 / count] * size for _ in range(size)], count / max(count - 1, 1)
    raise ValueError(f"unknown SSIM window {kind!r}: use one of {SSIM_WINDOWS}")


def ssim_per_image(images_a, images_b, max_value=1.0, window="uniform"):
    """Mean SSIM of each image pair [B, H, W, 1] -> [B].

    Filtering is "valid", as in scikit-image (which crops the border it pads), so the values
    agree with `skimage.metrics.structural_similarity` with the same window.

    Args:
        images_a, images_b: [B, H, W, 1] images.
        max_value: the data range.
        window: "uniform" (7x7, scikit-image's default) or "gaussian" (11x11, sigma 1.5).

    Returns:
        [B] float32 mean SSIM per pair.
    """
    weights, covariance_scale = _ssim_window(window, int(images_a.shape[1]),
                                             int(images_a.shape[2]))
    size = len(weights)
    kernel = ops.reshape(ops.convert_to_tensor(weights, "float32"), (size, size, 1, 1))
    images_a = ops.cast(images_a, "float32")
    images_b = ops.cast(images_b, "float32")

    def blur(image):
        return ops.conv(image, kernel, padding="valid")

    c1 = (0.01 * max_value) ** 2
    c2 = (0.03 * max_value) ** 2
    mean_a, mean_b = blur(images_a), blur(images_b)
    var_a = covariance_scale * (blur(images_a * images_a) - mean_a ** 2)
    var_b = covariance_scale * (blur(images_b * images_b) - mean_b ** 2)
    covariance = covariance_scale * (blur(images_a * images_b) - mean_a * mean_b)
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
        architecture: "residual" (ours) or "kerasio" (the keras-io `vq_vae.py` encoder and
            decoder, 4x down, ignoring channels and residual blocks; kept as a baseline).
        ssim_warmup_steps: the SSIM weight ramps up linearly over this many training steps.
            From a random start, SSIM alone pulls the dark background (most of a slice) to
            zero faster than MSE can teach structure, and training stalls; MSE first avoids it.
        ssim_window: the SSIM term's window, "uniform" (7x7: exactly the SSIM the scripts
            report) or "gaussian" (11x11); see `ssim_per_image`.

    Call returns the reconstructions [B, S, S, 1]; `encode` returns code indices [B, g, g] and
    `decode_codes` renders code indices back into images.
    """

    def __init__(self, image_size=128, num_codes=512, code_dim=64, num_downsamples=3, channels=64,
                 num_residual_blocks=2, commitment_cost=0.25, use_ema=True, ema_decay=0.99,
                 dead_code_threshold=1.0, ssim_weight=0.5, ssim_warmup_steps=500,
                 architecture="residual", ssim_window="uniform", **kwargs):
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
        self.ssim_warmup_steps = int(ssim_warmup_steps)
        if ssim_window not in SSIM_WINDOWS:
            raise ValueError(f"unknown ssim_window {ssim_window!r}: use one of {SSIM_WINDOWS}")
        self.ssim_window = ssim_window
        self.architecture = architecture
        if architecture == "kerasio":
            self.num_downsamples = 2
        elif architecture != "residual":
            raise ValueError(f"unknown architecture {architecture!r}: use residual or kerasio")
        self.grid_size = self.image_size // 2 ** self.num_downsamples

        if architecture == "kerasio":
            self.encoder = build_kerasio_encoder(self.image_size, self.code_dim)
            self.decoder = build_kerasio_decoder(self.grid_size, self.code_dim)
        else:
            self.encoder = build_encoder(self.image_size, self.code_dim, self.num_downsamples,
                                         self.channels, self.num_residual_blocks)
            self.decoder = build_decoder(self.grid_size, self.code_dim, self.num_downsamples,
                                         self.channels, self.num_residual_blocks)
        self.quantizer = VectorQuantizer(
            self.num_codes, self.code_dim, commitment_cost=self.commitment_cost,
            use_ema=self.use_ema, ema_decay=self.ema_decay,
            dead_code_threshold=self.dead_code_threshold, name="vector_quantizer")
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

    def forward(self, images, training=False, ssim_weight=None):
        """Runs the whole model; returns reconstructions, code indices and the loss terms.

        `ssim_weight` overrides the model's weight of (1 - SSIM) (used for the warm-up)."""
        ssim_weight = self.ssim_weight if ssim_weight is None else ssim_weight
        latents = self.encoder(images, training=training)
        quantized = self.quantizer(latents, training=training)
        reconstructions = ops.cast(self.decoder(quantized["quantized"], training=training),
                                   "float32")
        images = ops.cast(images, "float32")
        mse = ops.mean((images - reconstructions) ** 2)
        ssim = ops.mean(ssim_per_image(images, reconstructions, window=self.ssim_window))
        reconstruction_loss = mse + ssim_weight * (1.0 - ssim)
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

    def _ssim_warmup(self):
        """Fraction of the SSIM weight in use: ramps from 0 to 1 over the warm-up steps."""
        return ops.minimum(ops.cast(self.optimizer.iterations, "float32")
                           / max(self.ssim_warmup_steps, 1), 1.0)

    def train_step(self, *args):
        # JAX calls train_step(state, data) and wants the new state back; TensorFlow calls
        # train_step(data) and updates variables in place.
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        (data,) = args
        images = data[0] if isinstance(data, (tuple, list)) else data
        import tensorflow as tf

        with tf.GradientTape() as tape:
            results = self.forward(images, training=True,
                                   ssim_weight=self.ssim_weight * self._ssim_warmup())
            # Gradients are summed over replicas, so each replica contributes its share.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(results["loss"] / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._report(results)

    def test_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_test_step(*args)
        (data,) = args
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self._report(self.forward(images, training=False))

    # -- JAX: the same steps, written statelessly ----------------------------------------------

    def _stateless_forward(self, trainable, non_trainable, optimizer_variables, images, training):
        """`forward` with the given variable values; returns (loss, (results, non_trainable))."""
        mapping = (list(zip(self.trainable_variables, trainable))
                   + list(zip(self.non_trainable_variables, non_trainable))
                   + list(zip(self.optimizer.variables, optimizer_variables)))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            weight = self.ssim_weight * (self._ssim_warmup() if training else 1.0)
            results = self.forward(images, training=training, ssim_weight=weight)
        updated = []
        for variable, value in zip(self.non_trainable_variables, non_trainable):
            new_value = scope.get_current_value(variable)
            updated.append(value if new_value is None else new_value)
        return results["loss"], (results, updated)

    def _stateless_report(self, metrics_variables, results):
        logs, updated = {}, []
        for tracker in self.metrics:
            count = len(tracker.variables)
            values = metrics_variables[len(updated):len(updated) + count]
            values = tracker.stateless_update_state(values, results[tracker.name])
            logs[tracker.name] = tracker.stateless_result(values)
            updated.extend(values)
        return logs, updated

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        images = data[0] if isinstance(data, (tuple, list)) else data
        gradient_fn = jax.value_and_grad(self._stateless_forward, has_aux=True)
        (_, (results, non_trainable)), gradients = gradient_fn(
            trainable, non_trainable, optimizer_variables, images, True)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable)
        logs, metrics_variables = self._stateless_report(metrics_variables, results)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def _jax_test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        images = data[0] if isinstance(data, (tuple, list)) else data
        _, (results, non_trainable) = self._stateless_forward(
            trainable, non_trainable, self.optimizer.variables, images, False)
        logs, metrics_variables = self._stateless_report(metrics_variables, results)
        return logs, (trainable, non_trainable, metrics_variables)

    def get_config(self):
        config = super().get_config()
        config.update({
            "image_size": self.image_size, "num_codes": self.num_codes,
            "code_dim": self.code_dim, "num_downsamples": self.num_downsamples,
            "channels": self.channels, "num_residual_blocks": self.num_residual_blocks,
            "commitment_cost": self.commitment_cost, "use_ema": self.use_ema,
            "ema_decay": self.ema_decay, "dead_code_threshold": self.dead_code_threshold,
            "ssim_weight": self.ssim_weight, "ssim_warmup_steps": self.ssim_warmup_steps,
            "architecture": self.architecture, "ssim_window": self.ssim_window,
        })
        return config


@keras.saving.register_keras_serializable(package="vqvae")
class BitsPerCode(keras.metrics.MeanMetricWrapper):
    """Mean negative log-likelihood of the true codes under predicted logits, in bits per code
    (sparse cross-entropy / ln 2): the prior's compression rate, log2 K for a uniform guess."""

    def __init__(self, name="bits_per_code", dtype=None):
        super().__init__(fn=self.bits, name=name, dtype=dtype)

    @staticmethod
    def bits(code_indices, logits):
        nats = keras.losses.sparse_categorical_crossentropy(code_indices, logits, from_logits=True)
        return nats / math.log(2.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def vqvae_from_hyperparameters(values):
    """A `VQVAETrainer` built from a hyperparameters dict (see hyperparameters.py)."""
    model = VQVAETrainer(
        image_size=values["image_size"], num_codes=values["num_codes"],
        code_dim=values["code_dim"], num_downsamples=values["num_downsamples"],
        channels=values["channels"], num_residual_blocks=values["num_residual_blocks"],
        commitment_cost=values["commitment_cost"], use_ema=values["use_ema"],
        ema_decay=values["ema_decay"], dead_code_threshold=values["dead_code_threshold"],
        ssim_weight=values["ssim_weight"], ssim_warmup_steps=values["ssim_warmup_steps"],
        ssim_window=values["ssim_window"])
    model.build()
    return model


# ---------------------------------------------------------------------------------------------
# PixelCNN prior
# ---------------------------------------------------------------------------------------------
#
# A gated PixelCNN (van den Oord et al., 2016, "Conditional Image Generation with PixelCNN
# Decoders") over the VQ-VAE's code grids, in raster order. Two stacks run side by side:
#
#   * the vertical stack at (r, c) sees only rows < r (all columns within its reach): its first
#     convolution (type A) keeps the kernel rows above the centre, the later ones (type B) keep
#     the centre row as well, which only adds features that themselves see rows < r;
#   * the horizontal stack at (r, c) sees row r left of c (type A) or up to c (type B), plus the
#     vertical stack's features at the same position through a 1x1 convolution.
#
# Because the vertical stack already stops at row r - 1, it is fed to the horizontal stack
# unshifted: shifting it down by one row as well would leave row r - 1 blind. After L gated
# layers with kernel k (h = k // 2), position (r, c) depends on exactly the rows r - L*h .. r - 1
# over the columns c - L*h .. c + L*h, and on row r over the columns c - L*h .. c - 1: no blind
# spot, no leak (tests/test_pixelcnn.py checks both by perturbation).

PIXELCNN_STACKS = ("vertical", "horizontal", "full")


def pixelcnn_mask(kernel_size, mask_type, stack):
    """The 0/1 mask of a masked convolution kernel, as a float32 numpy array [kh, kw].

    Args:
        kernel_size: odd side k of the kernel.
        mask_type: "A" (excludes the centre position) or "B" (includes it).
        stack: "vertical" ([k, k], rows above the centre; type B adds the centre row),
            "horizontal" ([1, k], columns left of the centre; type B adds the centre) or
            "full" ([k, k], the plain PixelCNN mask: rows above plus the left part of the
            centre row; type B adds the centre).

    Returns:
        The mask, shaped like the spatial dimensions of the kernel.
    """
    import numpy as np

    centre = kernel_size // 2
    include_centre = mask_type == "B"
    if stack == "horizontal":
        mask = np.zeros((1, kernel_size), "float32")
        mask[0, :centre + include_centre] = 1.0
        return mask
    mask = np.zeros((kernel_size, kernel_size), "float32")
    mask[:centre, :] = 1.0
    if stack == "vertical":
        if include_centre:
            mask[centre, :] = 1.0
    else:
        mask[centre, :centre + include_centre] = 1.0
    return mask


@keras.saving.register_keras_serializable(package="vqvae")
class MaskedConv2D(layers.Layer):
    """A 2D convolution whose kernel is multiplied by a causal (raster-order) mask.

    The mask is a constant built in `build` from numpy; `call` convolves with `kernel * mask`,
    so the kernel variable itself is never modified and masked entries get no gradient.

    Args:
        filters: number of output channels.
        kernel_size: odd side k of the kernel ("horizontal" kernels are 1 x k).
        mask_type: "A" (the output at a position does not see that position: first layer) or
            "B" (it does: later layers).
        stack: "vertical", "horizontal" or "full" (see `pixelcnn_mask`).
        use_bias: add a learned bias.
        kernel_initializer, bias_initializer: initialisers of the kernel and the bias.

    Call args:
        inputs: [B, H, W, C] features.

    Returns:
        [B, H, W, filters] features ("same" padding, stride 1).
    """

    def __init__(self, filters, kernel_size=3, mask_type="B", stack="full", use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if stack not in PIXELCNN_STACKS:
            raise ValueError(f"stack must be one of {PIXELCNN_STACKS}, got {stack!r}")
        if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.mask_type = mask_type
        self.stack = stack
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.mask = pixelcnn_mask(self.kernel_size, self.mask_type, self.stack)  # numpy constant
        kernel_height, kernel_width = self.mask.shape
        self.kernel = self.add_weight(
            name="kernel", shape=(kernel_height, kernel_width, int(input_shape[-1]), self.filters),
            initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,),
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)

    def masked_kernel(self):
        """The kernel with the mask applied (what `call` convolves with)."""
        mask = ops.convert_to_tensor(self.mask[:, :, None, None], dtype=self.compute_dtype)
        return ops.cast(self.kernel, self.compute_dtype) * mask

    def call(self, inputs):
        outputs = ops.conv(inputs, self.masked_kernel(), strides=1, padding="same")
        if self.bias is not None:
            outputs = outputs + ops.cast(self.bias, self.compute_dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size,
            "mask_type": self.mask_type, "stack": self.stack, "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


def _gate(features):
    """tanh(a) * sigmoid(b) for features [..., 2F] split into a and b along the last axis."""
    a, b = ops.split(features, 2, axis=-1)
    return ops.tanh(a) * ops.sigmoid(b)


@keras.saving.register_keras_serializable(package="vqvae")
class GatedPixelCNNLayer(layers.Layer):
    """One gated PixelCNN layer: a vertical and a horizontal stack with gated activations.

        vertical'   = gate(Vconv(vertical) + cond)
        horizontal' = horizontal + 1x1(dropout(gate(Hconv(horizontal) + 1x1(Vconv(vertical))
                                                     + cond)))

    where gate(x) = tanh(x_a) * sigmoid(x_b) and cond is the conditioning vector projected to
    2 * filters (broadcast over the grid). The residual connection is used when `residual` is
    true (the default for type B; a type A layer must not have it: its input holds the current
    position).

    Args:
        filters: F, the width of both stacks (inputs and outputs).
        kernel_size: odd side k of the masked convolutions.
        mask_type: "A" for the first layer, "B" for the others.
        dropout: dropout rate on the gated horizontal features.
        condition_dim: size of the conditioning vectors (None: no conditioning input).
        residual: residual connection on the horizontal stack (default: mask_type == "B").

    Call args:
        vertical: [B, H, W, C] vertical stack input.
        horizontal: [B, H, W, C] horizontal stack input.
        condition: optional [B, condition_dim] conditioning vectors.
        training: whether dropout is active.

    Returns:
        A tuple (vertical, horizontal) of [B, H, W, F] features.
    """

    def __init__(self, filters, kernel_size=3, mask_type="B", dropout=0.0, condition_dim=None,
                 residual=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.mask_type = mask_type
        self.dropout_rate = float(dropout)
        self.condition_dim = None if condition_dim is None else int(condition_dim)
        self.residual = (mask_type == "B") if residual is None else bool(residual)
        if self.residual and mask_type == "A":
            raise ValueError("a type A layer cannot have a residual connection: its input "
                             "holds the position being predicted")
        self.vertical_conv = MaskedConv2D(2 * self.filters, self.kernel_size, mask_type,
                                          "vertical", name="vertical_conv")
        self.horizontal_conv = MaskedConv2D(2 * self.filters, self.kernel_size, mask_type,
                                            "horizontal", name="horizontal_conv")
        self.vertical_to_horizontal = layers.Conv2D(2 * self.filters, 1,
                                                    name="vertical_to_horizontal")
        self.horizontal_output = layers.Conv2D(self.filters, 1, name="horizontal_output")
        self.condition_projection = (layers.Dense(2 * self.filters, use_bias=False,
                                                  name="condition_projection")
                                     if self.condition_dim else None)
        self.dropout = layers.Dropout(self.dropout_rate)

    def build(self, input_shape):
        """Builds the sublayers for stack inputs shaped `input_shape` ([B, H, W, C])."""
        input_shape = tuple(input_shape)
        gated_shape = input_shape[:-1] + (2 * self.filters,)
        if self.residual and input_shape[-1] != self.filters:
            raise ValueError(f"the residual connection needs {self.filters} input channels, "
                             f"got shape {input_shape}")
        self.vertical_conv.build(input_shape)
        self.horizontal_conv.build(input_shape)
        self.vertical_to_horizontal.build(gated_shape)
        self.horizontal_output.build(input_shape[:-1] + (self.filters,))
        if self.condition_projection is not None:
            self.condition_projection.build((None, self.condition_dim))

    def condition_bias(self, condition):
        """The conditioning vectors [B, condition_dim] projected to a [B, 1, 1, 2F] bias."""
        if condition is None:
            return None
        if self.condition_projection is None:
            raise ValueError(f"{self.name} was built without conditioning "
                             f"(condition_dim=None) but was given a condition")
        return self.condition_projection(condition)[:, None, None, :]

    def vertical_step(self, vertical, bias=None):
        """The vertical stack's half of the layer.

        Args:
            vertical: [B, H, W, C] vertical stack input.
            bias: optional [B, 1, 1, 2F] conditioning bias (`condition_bias`).

        Returns:
            A tuple (vertical_out [B, H, W, F], to_horizontal [B, H, W, 2F]), where
            to_horizontal is what the vertical stack adds to the horizontal one at each position.
            At row r both depend only on rows above r, which is what lets the sampler compute
            them once per row.
        """
        features = self.vertical_conv(vertical)
        to_horizontal = self.vertical_to_horizontal(features)
        if bias is not None:
            features = features + bias
        return _gate(features), to_horizontal

    def horizontal_step(self, horizontal, to_horizontal, bias=None, training=None):
        """The horizontal stack's half of the layer.

        Args:
            horizontal: [B, H, W, C] horizontal stack input.
            to_horizontal: [B, H, W, 2F] from `vertical_step` at the same positions.
            bias: optional [B, 1, 1, 2F] conditioning bias.
            training: whether dropout is active.

        Returns:
            [B, H, W, F] horizontal stack output.
        """
        features = self.horizontal_conv(horizontal) + to_horizontal
        if bias is not None:
            features = features + bias
        gated = self.dropout(_gate(features), training=training)
        output = self.horizontal_output(gated)
        if self.residual:
            output = horizontal + output
        return output

    def call(self, vertical, horizontal, condition=None, training=None):
        bias = self.condition_bias(condition)
        vertical_out, to_horizontal = self.vertical_step(vertical, bias)
        return vertical_out, self.horizontal_step(horizontal, to_horizontal, bias, training)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size,
            "mask_type": self.mask_type, "dropout": self.dropout_rate,
            "condition_dim": self.condition_dim, "residual": self.residual,
        })
        return config


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

    Call args:
        inputs: a dict {"code_indices": [B, g, g] int, "slice_index": [B] int (optional)}, a
            tuple (code_indices, slice_index), or just the code indices (unconditional).
        training: enables dropout and condition dropout.

    Returns:
        Logits [B, g, g, K], float32.
    """

    def __init__(self, num_codes=512, grid_size=16, filters=96, num_layers=6, kernel_size=3,
                 dropout=0.1, num_slice_positions=32, condition_dropout=0.1, seed=0,
                 attention_blocks=0, attention_heads=4, position_embedding=False, **kwargs):
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
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if self.attention_blocks < 0:
            raise ValueError(f"attention_blocks must be >= 0, got {attention_blocks}")
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
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    @property
    def causal_reach(self):
        """How far (rows up, columns either side) the logits at a position can look."""
        return (self.num_layers + 1) * (self.kernel_size // 2)

    @property
    def unconditional_index(self):
        """The slice index meaning "no condition"."""
        return self.num_slice_positions

    def build(self, input_shape=None):
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
        self.head_hidden.build(features)
        self.head_logits.build(features)

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            return inputs["code_indices"], inputs.get("slice_index")
        if isinstance(inputs, (tuple, list)):
            return inputs[0], (inputs[1] if len(inputs) > 1 else None)
        return inputs, None

    def condition_biases(self, slice_index, batch, training=False):
        """Per gated layer, the [B, 1, 1, 2F] bias of the slice condition.

        Args:
            slice_index: [B] ints, or None for unconditional.
            batch: B.
            training: applies condition dropout.

        Returns:
            A list with one bias per gated layer.
        """
        if slice_index is None:
            slice_index = ops.full((batch,), self.num_slice_positions, dtype="int32")
        slice_index = ops.reshape(ops.cast(slice_index, "int32"), (-1,))
        if training and self.condition_dropout > 0:
            drop = keras.random.uniform((batch,), seed=self.seed_generator) < self.condition_dropout
            slice_index = ops.where(drop, self.num_slice_positions, slice_index)
        condition = self.slice_embedding(slice_index)
        return [layer.condition_bias(condition) for layer in self.gated_layers]

    def position_features(self, row_offset, column_offset, height, width):
        """[1, height, width, F] learned embedding of the absolute grid positions of a crop
        whose top-left corner is (row_offset, column_offset); 0 without `position_embedding`."""
        if not self.position_embedding:
            return 0.0
        rows = self.row_embedding(ops.arange(height, dtype="int32") + row_offset)
        columns = self.column_embedding(ops.arange(width, dtype="int32") + column_offset)
        return (rows[:, None, :] + columns[None, :, :])[None]

    def embed(self, code_indices, row_offset=0, column_offset=0):
        """[B, H, W] code indices (any crop of a grid whose top-left corner is at
        (row_offset, column_offset)) -> [B, H, W, F] input features: the code embedding plus,
        with `position_embedding`, the embedding of each position."""
        embedded = self.code_embedding(ops.cast(code_indices, "int32"))
        height, width = code_indices.shape[1], code_indices.shape[2]
        return embedded + self.position_features(row_offset, column_offset, height, width)

    def vertical_pass(self, embedded, biases):
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

    def horizontal_pass(self, embedded, to_horizontal, biases, training=False):
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

    def attention_pass(self, features, embedded, training=False):
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

    def head(self, features):
        """Logits [..., K] (float32) from last-layer features [..., H, W, F]."""
        return self.head_logits(ops.relu(self.head_hidden(ops.relu(features))))

    def call(self, inputs, training=False):
        code_indices, slice_index = self._split_inputs(inputs)
        biases = self.condition_biases(slice_index, ops.shape(code_indices)[0], training)
        embedded = self.embed(code_indices)
        to_horizontal = self.vertical_pass(embedded, biases)
        features = self.horizontal_pass(embedded, to_horizontal, biases, training)
        # The output at p is told where p is (its inputs only saw the positions before it).
        features = features + self.position_features(0, 0, self.grid_size, self.grid_size)
        return self.head(self.attention_pass(features, embedded, training))

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_codes": self.num_codes, "grid_size": self.grid_size, "filters": self.filters,
            "num_layers": self.num_layers, "kernel_size": self.kernel_size,
            "dropout": self.dropout_rate, "num_slice_positions": self.num_slice_positions,
            "condition_dropout": self.condition_dropout, "seed": self.seed,
            "attention_blocks": self.attention_blocks, "attention_heads": self.attention_heads,
            "position_embedding": self.position_embedding,
        })
        return config


def prior_from_hyperparameters(values, grid_size):
    """A built `GatedPixelCNN` from a hyperparameters dict (see hyperparameters.py).

    Args:
        values: dict with prior_filters, prior_layers, prior_kernel_size, prior_dropout,
            num_codes and num_slice_positions.
        grid_size: side of the VQ-VAE's code grids.

    Returns:
        The (untrained, built) prior.
    """
    model = GatedPixelCNN(
        num_codes=values["num_codes"], grid_size=grid_size, filters=values["prior_filters"],
        num_layers=values["prior_layers"], kernel_size=values["prior_kernel_size"],
        dropout=values["prior_dropout"], num_slice_positions=values["num_slice_positions"],
        attention_blocks=values["prior_attention_blocks"],
        attention_heads=values["prior_attention_heads"],
        position_embedding=values["prior_position_embedding"], name="pixelcnn_prior")
    model.build()
    return model
