"""The models' public face: every network of the pipeline, importable from one place.

Each idea lives in a file of its own; this module gathers them so scripts and users can write
`modules.VQVAETrainer`, `modules.GatedPixelCNN`, ... without knowing the layout:

* `quantizer.py` — `VectorQuantizer`, the codebook layer (EMA updates, k-means init, dead-code
  restart, usage and perplexity).
* `autoencoder.py` — the encoder and decoder, and `VQVAETrainer`, the VQ-VAE with its training
  step (MSE + SSIM + VQ loss).
* `ssim_loss.py` — SSIM as a differentiable loss, equal to scikit-image's SSIM.
* `baselines.py` — the keras-io `vq_vae.py` encoder and decoder.
* `masked_conv.py` — `pixelcnn_mask` and `MaskedConv2D`, the causal convolution.
* `pixelcnn.py` — `GatedPixelCNNLayer`, `GatedPixelCNN` (the prior over code grids) and the
  `BitsPerCode` metric; `attention.py` — its causal self-attention blocks.
* `hierarchy.py` — VQ-VAE-2: `VQVAE2Trainer` (two code grids) and `HierarchicalPrior` (a top
  prior, and a bottom prior conditioned on the top codes).

Model code uses `keras.ops` and `keras.layers` only, so it runs on the TensorFlow and JAX backends.
"""
from attention import CausalAttentionBlock
from autoencoder import (VQVAE_METRICS, LinearWarmup, ResidualBlock, VQVAETrainer,
                         build_decoder, build_encoder, level_channels,
                         vqvae_from_hyperparameters, vqvae_optimizer)
from baselines import build_kerasio_decoder, build_kerasio_encoder
from hierarchy import HierarchicalPrior, VQVAE2Trainer, pack_codes, unpack_codes
from masked_conv import PIXELCNN_STACKS, MaskedConv2D, pixelcnn_mask
from pixelcnn import BitsPerCode, GatedPixelCNN, GatedPixelCNNLayer, prior_from_hyperparameters
from quantizer import VectorQuantizer
from ssim_loss import SSIM_WINDOWS, ssim_per_image

__all__ = [
    "BitsPerCode", "CausalAttentionBlock", "GatedPixelCNN", "GatedPixelCNNLayer",
    "HierarchicalPrior", "LinearWarmup", "VQVAE2Trainer", "pack_codes", "unpack_codes",
    "MaskedConv2D", "PIXELCNN_STACKS", "ResidualBlock", "SSIM_WINDOWS", "VQVAE_METRICS",
    "VQVAETrainer", "VectorQuantizer", "build_decoder", "build_encoder",
    "build_kerasio_decoder", "build_kerasio_encoder", "level_channels", "pixelcnn_mask",
    "prior_from_hyperparameters", "ssim_per_image", "vqvae_from_hyperparameters",
    "vqvae_optimizer",
]
