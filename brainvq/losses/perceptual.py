"""A perceptual loss: distances between VGG16 ImageNet features of two images.

Pixel losses (MSE, SSIM) are minimised by a blurred average of the plausible details; distances
between the activations of a network trained on natural images penalise the missing texture
instead (Johnson et al. 2016; the LPIPS idea without its learned channel weights). Grayscale
slices in [0, 1] are repeated to three channels and preprocessed the way VGG16 was trained
(0..255, BGR mean subtracted); the loss is the mean over `FEATURE_LAYERS` of the mean squared
difference of the unit-normalised feature vectors at each position.

The VGG16 weights are not part of a saved VQ-VAE: they are fixed, and are loaded the Keras way
(`keras.applications.VGG16(weights="imagenet")`, downloaded once into ~/.keras/models) or from a
local file (`--perceptual-weights PATH`).
"""
from __future__ import annotations

import pathlib

import keras
from keras import ops

from brainvq.errors import WeightsUnavailable
from brainvq.hints import Tensor, Values

FEATURE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3")
VGG16_MEAN_BGR = (103.939, 116.779, 123.68)
WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
               "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")


def attach_feature_network(model: keras.Model, values: Values) -> None:
    """Gives a VQ-VAE whose `perceptual_weight` is > 0 the VGG16 features its loss needs (they
    are not saved with it, so a built, reloaded or resumed model each needs them); does nothing
    otherwise.

    Args:
        model: a VQVAETrainer (or VQVAE2Trainer).
        values: the run's hyperparameters (image_size, perceptual_weights).
    """
    if model.perceptual_weight > 0:
        model.use_perceptual_network(feature_network(values["image_size"],
                                                     values["perceptual_weights"]))


def feature_network(image_size: int, weights: str = "") -> keras.Model:
    """VGG16 (no top) truncated to the outputs of FEATURE_LAYERS, frozen.

    Args:
        image_size: side of the square grayscale inputs (at least 32).
        weights: "" for the ImageNet weights the Keras way (downloaded once, then cached), a
            path to `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`, or "random" (tests).

    Returns:
        A frozen keras.Model: [B, S, S, 3] preprocessed images -> list of feature maps.

    Raises:
        WeightsUnavailable: the weights file is missing or unreadable, or the download failed.
    """
    source = weights
    if weights == "random":
        source = None
    elif weights:
        path = pathlib.Path(weights)
        if not path.is_file():
            raise WeightsUnavailable(
                f"--perceptual-weights {path}: no such file; download {WEIGHTS_URL} and pass its "
                f"path.")
        source = str(path)
    else:
        source = "imagenet"
    try:
        vgg = keras.applications.VGG16(include_top=False, weights=source,
                                       input_shape=(image_size, image_size, 3))
    except Exception as error:  # urllib, h5py and Keras raise many types here
        where = f"from {weights}" if weights else "(download)"
        raise WeightsUnavailable(
            f"the VGG16 ImageNet weights for --perceptual-weight could not be loaded {where}: "
            f"{error}. On a machine with network, download {WEIGHTS_URL} and pass "
            f"--perceptual-weights PATH (or put it in ~/.keras/models/).") from error
    outputs = [vgg.get_layer(name).output for name in FEATURE_LAYERS]
    network = keras.Model(vgg.inputs, outputs, name="perceptual_features")
    network.trainable = False
    return network


def _preprocess(images: Tensor) -> Tensor:
    """Grayscale [B, S, S, 1] in [0, 1] -> VGG16 input [B, S, S, 3] (BGR, mean subtracted)."""
    scaled = ops.cast(images, "float32") * 255.0
    mean = ops.reshape(ops.convert_to_tensor(VGG16_MEAN_BGR, "float32"), (1, 1, 1, 3))
    return ops.concatenate([scaled] * 3, axis=-1) - mean


def perceptual_distance(network: keras.Model, images_a: Tensor, images_b: Tensor) -> Tensor:
    """Per-image perceptual distance [B] between two batches of grayscale images.

    Args:
        network: from `feature_network`.
        images_a, images_b: [B, S, S, 1] in [0, 1].

    Returns:
        [B] float32, 0 for identical images.
    """
    features_a = network(_preprocess(images_a), training=False)
    features_b = network(_preprocess(images_b), training=False)
    distances = []
    for a, b in zip(features_a, features_b):
        a = ops.cast(a, "float32")
        b = ops.cast(b, "float32")
        a = a / (ops.sqrt(ops.sum(a * a, axis=-1, keepdims=True)) + 1e-10)
        b = b / (ops.sqrt(ops.sum(b * b, axis=-1, keepdims=True)) + 1e-10)
        distances.append(ops.mean(ops.sum((a - b) ** 2, axis=-1), axis=(1, 2)))
    return ops.mean(ops.stack(distances, axis=0), axis=0)
