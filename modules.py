"""The models' public face: every network of the pipeline, importable from one place.

Each idea lives in a file of its own under `brainvq/`; this module gathers them so scripts and
users can write `modules.VQVAETrainer`, `modules.GatedPixelCNN`, ... without knowing the layout:

* `models/layers/quantizer.py` — `VectorQuantizer`, the codebook layer (EMA updates, k-means
  init, dead-code restart, usage and perplexity).
* `models/vqvae.py` — the encoder, the decoder and `VQVAE`, the network (images to code indices
  and back); `models/kerasio.py` — the keras-io `vq_vae.py` encoder and decoder.
* `models/vqvae_trainer.py` — `VQVAETrainer`, the VQ-VAE with its losses and training steps
  (`models/vqvae_steps.py`, TensorFlow and JAX), and `VQVAE2Trainer`.
* `losses/reconstruction.py` — the reconstruction loss (MSE + SSIM + perceptual);
  `losses/ssim.py` — SSIM as a differentiable loss, equal to scikit-image's SSIM.
* `models/layers/masked_conv.py` — `pixelcnn_mask` and `MaskedConv2D`, the causal convolution;
  `models/layers/attention.py` — causal and spatial self-attention.
* `models/pixelcnn.py` — `GatedPixelCNN`, the prior over code grids, built of
  `models/layers/gated.py`'s `GatedPixelCNNLayer`; `models/prior_inputs.py` — its input forms
  and the `BitsPerCode` metric.
* `models/hierarchy.py` — VQ-VAE-2: `VQVAE2` (two code grids) and `HierarchicalPrior` (a
  top prior, and a bottom prior conditioned on the top codes).
* `models/volume_vqvae.py` — `VolumeVQVAE`, a VQ-VAE over whole stacks: one 3D grid of codes
  for a head, all its slices decoded together (issue 52's candidate latent; not yet a stage of
  `train.py`).
* `models/build.py` — the models from a run's hyperparameters (the only place that reads them).

Model code uses `keras.ops` and `keras.layers` only, so it runs on the TensorFlow and JAX backends.
"""
from brainvq.losses.ssim import SSIM_WINDOWS, ssim_per_image
from brainvq.models.build import (
                                  prior_from_hyperparameters,
                                  vqvae_from_hyperparameters,
                                  vqvae_optimizer,
)
from brainvq.models.hierarchy import VQVAE2, HierarchicalPrior, pack_codes, unpack_codes
from brainvq.models.kerasio import build_kerasio_decoder, build_kerasio_encoder
from brainvq.models.layers.attention import CausalAttentionBlock
from brainvq.models.layers.gated import GatedPixelCNNLayer
from brainvq.models.layers.masked_conv import PIXELCNN_STACKS, MaskedConv2D, pixelcnn_mask
from brainvq.models.layers.quantizer import VectorQuantizer
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.models.prior_inputs import BitsPerCode
from brainvq.models.volume_vqvae import ResidualBlock3D, VolumeVQVAE
from brainvq.models.vqvae import VQVAE, ResidualBlock, build_decoder, build_encoder, level_channels
from brainvq.models.vqvae_trainer import (
                                          VQVAE_METRICS,
                                          LinearWarmup,
                                          VQVAE2Trainer,
                                          VQVAETrainer,
)

__all__ = [
    "BitsPerCode", "CausalAttentionBlock", "GatedPixelCNN", "GatedPixelCNNLayer",
    "HierarchicalPrior", "LinearWarmup", "VQVAE2Trainer", "pack_codes", "unpack_codes",
    "MaskedConv2D", "PIXELCNN_STACKS", "ResidualBlock", "SSIM_WINDOWS", "VQVAE_METRICS",
    "VQVAE", "VQVAE2", "VQVAETrainer", "VectorQuantizer", "VolumeVQVAE", "ResidualBlock3D",
    "build_decoder", "build_encoder",
    "build_kerasio_decoder", "build_kerasio_encoder", "level_channels", "pixelcnn_mask",
    "prior_from_hyperparameters", "ssim_per_image", "vqvae_from_hyperparameters",
    "vqvae_optimizer",
]
