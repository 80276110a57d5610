"""The VQ-VAE: encoder, decoder and `VQVAETrainer`, which trains them with the quantizer (its
training and test steps are in `vqvae_steps.py`).

The encoder (stride-2 convolutions, residual blocks) and decoder (residual blocks, transposed
convolutions) down- and up-sample by 2^num_downsamples; the loss is MSE + ssim_weight * (1 - SSIM)
plus the quantizer's commitment loss.
"""
import math

import keras
from keras import layers, ops

from brainvq.losses import adversarial, perceptual
from brainvq.losses.ssim import SSIM_WINDOWS, ssim_per_image
from brainvq.models.kerasio import build_kerasio_decoder, build_kerasio_encoder
from brainvq.models.layers.attention import SpatialSelfAttention
from brainvq.models.layers.quantizer import VectorQuantizer
from brainvq.models.vqvae_steps import VQVAETrainingSteps


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


def build_encoder(image_size, code_dim, num_downsamples=3,
                  channels=64,
                  num_residual_blocks=2,
                  attention=False):
    """Strided convolutions then residual blocks (and, with `attention`, a self-attention block
    at the grid's resolution): [B, S, S, 1] -> [B, S/2^n, S/2^n, code_dim]."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    hidden = inputs
    for level, width in enumerate(level_channels(channels, num_downsamples)):
        hidden = layers.Conv2D(width, 4, strides=2, padding="same", activation="relu",
                               name=f"down_{level}")(hidden)
    width = level_channels(channels, num_downsamples)[-1]
    hidden = layers.Conv2D(width, 3, padding="same", name="mix")(hidden)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(width, name=f"residual_{block}")(hidden)
    if attention:
        hidden = SpatialSelfAttention(name="attention")(hidden)
    hidden = layers.ReLU()(hidden)
    latents = layers.Conv2D(code_dim, 1, name="to_codes")(hidden)
    return keras.Model(inputs, latents, name="encoder")


def build_decoder(grid_size, code_dim, num_downsamples=3,
                  channels=64,
                  num_residual_blocks=2,
                  attention=False):
    """(With `attention`, a self-attention block, then) residual blocks, then transposed
    convolutions: [B, g, g, code_dim] -> [B, g*2^n, g*2^n, 1]."""
    inputs = keras.Input((grid_size, grid_size, code_dim), name="quantized")
    widths = level_channels(channels, num_downsamples)
    hidden = layers.Conv2D(widths[-1], 3, padding="same", name="from_codes")(inputs)
    if attention:
        hidden = SpatialSelfAttention(name="attention")(hidden)
    for block in range(num_residual_blocks):
        hidden = ResidualBlock(widths[-1], name=f"residual_{block}")(hidden)
    hidden = layers.ReLU()(hidden)
    for level in reversed(range(len(widths))):
        out_width = widths[level - 1] if level > 0 else channels // 2
        hidden = layers.Conv2DTranspose(out_width, 4, strides=2, padding="same",
                                        activation="relu", name=f"up_{level}")(hidden)
    image = layers.Conv2D(1, 3, padding="same", name="to_image", dtype="float32")(hidden)
    return keras.Model(inputs, image, name="decoder")


class _Unsaved:
    """Holds a network Keras must not track (so not save) as part of the model."""
    network = None


# ---------------------------------------------------------------------------------------------
# The VQ-VAE (its training steps: vqvae_steps.py)
# ---------------------------------------------------------------------------------------------

VQVAE_METRICS = ("loss", "reconstruction_loss", "vq_loss", "ssim", "perplexity", "codebook_usage")
ADVERSARIAL_METRICS = ("generator_loss", "discriminator_loss", "adversarial_weight")


@keras.saving.register_keras_serializable(package="vqvae")
class VQVAETrainer(VQVAETrainingSteps, keras.Model):
    """Encoder -> VectorQuantizer -> decoder, trained with its own `train_step`.

    The loss is `reconstruction + vq`, where reconstruction = MSE + ssim_weight * (1 - SSIM) and
    vq is the quantizer's commitment (and, without EMA, codebook) loss. Each step reports the
    total, reconstruction and VQ losses, the batch SSIM, the codebook perplexity and the fraction
    of codes used, so they show in the `fit` progress bar and in the CSV log.

    The steps (`vqvae_steps.VQVAETrainingSteps`) are written out rather than in Keras's
    `compute_loss` hook because the adversarial loss's adaptive weight needs the gradients of
    two losses at the decoder's last layer in the same step (and the quantizer's batch
    statistics come out of the forward pass); each backend's step is the same computation
    (TensorFlow: a tape; JAX: one `jax.vjp`, with the optimizer's variables, and so its step
    counter and loss scale, in the stateless state).

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
        data_variance: the MSE term is divided by this (1.0: plain MSE); the keras-io design
            divides by the variance of its training images.
        attention: a self-attention block at the grid's resolution in the encoder and the
            decoder (`attention.SpatialSelfAttention`).
        perceptual_weight: weight of the VGG16 perceptual distance (perceptual.py) in the
            reconstruction loss; it applies once `use_perceptual_network` has given the
            network (train.py does), whose fixed weights are not saved with the model.
        adversarial_weight: > 0 adds a PatchGAN discriminator (adversarial.py, saved with the
            model) and its hinge loss, weighted adaptively times this factor.
        adversarial_start: training steps before the adversarial terms switch on.

    Call returns the reconstructions [B, S, S, 1]; `encode` returns code indices [B, g, g] and
    `decode_codes` renders code indices back into images.
    """

    levels = 1  # code grids (VQVAE2Trainer, hierarchy.py, has two)

    def __init__(self, image_size=128, num_codes=512,
                 code_dim=64, num_downsamples=3,
                 channels=64, num_residual_blocks=2,
                 commitment_cost=0.25, use_ema=True,
                 ema_decay=0.99,
                 dead_code_threshold=1.0,
                 ssim_weight=0.5,
                 ssim_warmup_steps=500,
                 architecture="residual", ssim_window="uniform", data_variance=1.0,
                 attention=False,
                 perceptual_weight=0.0,
                 adversarial_weight=0.0,
                 adversarial_start=2000, **kwargs):
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
        if not data_variance > 0:
            raise ValueError(f"data_variance must be > 0, got {data_variance!r}")
        self.data_variance = float(data_variance)
        self.attention = bool(attention)
        self.perceptual_weight = float(perceptual_weight)
        self._perceptual = _Unsaved()
        self.adversarial_weight = float(adversarial_weight)
        self.adversarial_start = int(adversarial_start)
        self.architecture = architecture
        if architecture == "kerasio":
            self.num_downsamples = 2
        elif architecture != "residual":
            raise ValueError(f"unknown architecture {architecture!r}: use residual or kerasio")
        self.grid_size = self.image_size // 2 ** self.num_downsamples

        self._build_networks()
        self.discriminator = None
        if self.adversarial_weight > 0:
            self.discriminator = adversarial.build_discriminator(self.image_size)
        names = VQVAE_METRICS + (("perceptual_loss",) if self.perceptual_weight > 0 else ())
        if self.adversarial_weight > 0:
            names += ADVERSARIAL_METRICS
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    def _build_networks(self):
        """Creates the encoder, the decoder and the quantizer (a subclass may add levels)."""
        if self.architecture == "kerasio":
            self.encoder = build_kerasio_encoder(self.image_size, self.code_dim)
            self.decoder = build_kerasio_decoder(self.grid_size, self.code_dim)
        else:
            self.encoder = build_encoder(self.image_size, self.code_dim, self.num_downsamples,
                                         self.channels, self.num_residual_blocks, self.attention)
            self.decoder = build_decoder(self.grid_size, self.code_dim, self.num_downsamples,
                                         self.channels, self.num_residual_blocks, self.attention)
        self.quantizer = self._make_quantizer(self.code_dim, "vector_quantizer")

    def _make_quantizer(self, code_dim, name):
        return VectorQuantizer(
            self.num_codes, code_dim, commitment_cost=self.commitment_cost,
            use_ema=self.use_ema, ema_decay=self.ema_decay,
            dead_code_threshold=self.dead_code_threshold, name=name)

    @property
    def code_shape(self):
        """Shape of one image's code indices (`encode` gives [B, *code_shape])."""
        return (self.grid_size, self.grid_size)

    @property
    def code_bits(self):
        """Bits of one image's code: positions x log2 K."""
        return self.grid_size ** 2 * math.log2(self.num_codes)

    def use_perceptual_network(self, network):
        """Gives the (frozen) `perceptual.feature_network` the perceptual term uses."""
        self._perceptual.network = network

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
        reconstructions, codes = self.autoencode(images, training=training)
        images = ops.cast(images, "float32")
        mse = ops.mean((images - reconstructions) ** 2) / self.data_variance
        ssim = ops.mean(ssim_per_image(images, reconstructions, window=self.ssim_window))
        reconstruction_loss = mse + ssim_weight * (1.0 - ssim)
        extra = {}
        if self.perceptual_weight > 0 and self._perceptual.network is not None:
            extra["perceptual_loss"] = ops.mean(perceptual.perceptual_distance(
                self._perceptual.network, images, reconstructions))
            reconstruction_loss = (reconstruction_loss
                                   + self.perceptual_weight * extra["perceptual_loss"])
        elif self.perceptual_weight > 0:
            extra["perceptual_loss"] = ops.zeros(())
        return {
            "reconstructions": reconstructions,
            "loss": reconstruction_loss + codes["vq_loss"],
            "reconstruction_loss": reconstruction_loss,
            "ssim": ssim,
            **codes,
            **extra,
        }

    def autoencode(self, images, training=False):
        """Encoder -> quantizer -> decoder.

        Returns:
            (reconstructions [B, S, S, 1] float32, codes), where codes holds "code_indices"
            [B, g, g], "vq_loss", "perplexity" and "codebook_usage" (the quantizer's outputs).
        """
        latents = self.encoder(images, training=training)
        quantized = self.quantizer(latents, training=training)
        reconstructions = ops.cast(self.decoder(quantized["quantized"], training=training),
                                   "float32")
        return reconstructions, {"code_indices": quantized["code_indices"],
                                 "vq_loss": quantized["loss"],
                                 "perplexity": quantized["perplexity"],
                                 "codebook_usage": quantized["usage"]}

    @staticmethod
    def _nearest(quantizer, latents, grid_size):
        """Code indices [B, grid_size, grid_size] of `quantizer`'s codes nearest `latents`."""
        flat = ops.reshape(ops.cast(latents, "float32"), (-1, quantizer.code_dim))
        return ops.reshape(quantizer.nearest_codes(flat), (-1, grid_size, grid_size))

    def encode(self, images):
        """Code indices [B, g, g] of a batch of images."""
        return self._nearest(self.quantizer, self.encoder(images, training=False),
                             self.grid_size)

    def decode_codes(self, code_indices):
        """Images [B, S, S, 1] rendered from code indices [B, g, g]."""
        return ops.cast(self.decoder(self.quantizer.lookup(code_indices), training=False),
                        "float32")

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
            "data_variance": self.data_variance, "attention": self.attention,
            "perceptual_weight": self.perceptual_weight,
            "adversarial_weight": self.adversarial_weight,
            "adversarial_start": self.adversarial_start,
        })
        return config


@keras.saving.register_keras_serializable(package="vqvae")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that rises linearly from 0 to `learning_rate` over the first
    `warmup_steps` optimizer steps, then stays there.

    Adam's first steps move every weight by about the learning rate whatever its gradient; in
    wide convolutions that can multiply the activations several times within a few steps, and
    a VQ-VAE's latents then leave its codebook behind (the commitment loss jumps and most codes
    die). A warm-up keeps those first steps small.

    Args:
        learning_rate: the rate after the warm-up.
        warmup_steps: steps to reach it.
    """

    def __init__(self, learning_rate, warmup_steps):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        fraction = ops.minimum((ops.cast(step, "float32") + 1.0) / self.warmup_steps, 1.0)
        return self.learning_rate * fraction

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}
