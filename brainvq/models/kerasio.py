"""Baselines the benchmarks compare with: the keras-io `vq_vae.py` encoder and decoder."""
from __future__ import annotations

import keras
from keras import layers


def build_kerasio_encoder(image_size: int, code_dim: int) -> keras.Model:
    """The keras-io `vq_vae.py` encoder: two stride-2 3x3 convolutions of 32 and 64 filters."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    hidden = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    hidden = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(hidden)
    latents = layers.Conv2D(code_dim, 1, padding="same", name="to_codes")(hidden)
    return keras.Model(inputs, latents, name="encoder")


def build_kerasio_decoder(grid_size: int, code_dim: int) -> keras.Model:
    """The keras-io `vq_vae.py` decoder (a baseline): two stride-2 transposed convs."""
    inputs = keras.Input((grid_size, grid_size, code_dim), name="quantized")
    hidden = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(inputs)
    hidden = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(hidden)
    image = layers.Conv2DTranspose(1, 3, padding="same", name="to_image", dtype="float32")(hidden)
    return keras.Model(inputs, image, name="decoder")
