"""A small CNN trained on the real training slices only: the feature space of the realism checks.

Inception features need downloaded ImageNet weights and know nothing of MRI; this network is
trained, once per run, to classify each real training slice's position along the brain (one
class per slice position, with flipped and shifted copies), which makes its penultimate
features describe anatomy; the predicted position is the expectation of its class
probabilities. `realism.py` measures Fréchet distance, KID and k-NN
precision/recall in that feature space, and uses the predicted position to check that
slice-conditioned samples land where they were asked to.

It is saved in the run folder (`feature_network.keras`, with `feature_network.json` recording a
fingerprint of the slices it was trained on) and retrained only when those slices change.
"""
import hashlib
import json
import pathlib

import numpy as np

MODEL_FILE = "feature_network.keras"
INFO_FILE = "feature_network.json"
EMBEDDING_LAYER = "embedding"
POOLED_BLOCKS = ("block_1", "block_2", "block_3")
MAX_TRAINING_IMAGES = 1024
IMAGES_SEEN = 10000


def build(image_size, num_slice_positions, feature_dim=64):
    """The network: four stride-2 conv blocks, global average pooling, a `feature_dim`
    feature layer, and class probabilities over the `num_slice_positions` slice positions."""
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 1), name="image")
    hidden = inputs
    for number, filters in enumerate((16, 32, 64, 96), start=1):
        hidden = layers.Conv2D(filters, 3, strides=2, padding="same", activation="gelu")(hidden)
        hidden = layers.Conv2D(filters, 3, padding="same", activation="gelu",
                               name=f"block_{number}")(hidden)
    hidden = layers.GlobalAveragePooling2D()(hidden)
    features = layers.Dense(feature_dim, activation="tanh", name=EMBEDDING_LAYER)(hidden)
    position = layers.Dense(num_slice_positions, activation="softmax", name="position")(features)
    return keras.Model(inputs, position, name="feature_network")


def _fingerprint(images, slice_index):
    digest = hashlib.sha256(np.ascontiguousarray(images, np.float32).tobytes())
    digest.update(np.asarray(slice_index, np.int64).tobytes())
    return digest.hexdigest()


def train(images, slice_index, num_slice_positions, epochs=None, seed=0, verbose=0):
    """Fits a new feature network on real slices and their positions.

    Args:
        images: [N, S, S, 1] real training slices.
        slice_index: [N] their positions, 0 .. num_slice_positions - 1.
        num_slice_positions: the number of classes (slice positions).
        epochs: passes over the slices and their augmented copies (None: about
            `IMAGES_SEEN` images in all, between 3 and 30 passes). At most
            `MAX_TRAINING_IMAGES` slices are used (a random subset of larger sets).
        seed: seed of the initialisation, augmentation and shuffling.

    Returns:
        The trained Keras model.
    """
    import keras

    import dataset

    keras.utils.set_random_seed(seed)
    images = np.asarray(images, np.float32)
    targets = np.asarray(slice_index, np.int32)
    if len(images) > MAX_TRAINING_IMAGES:  # e.g. the demo's many jittered copies
        chosen = np.random.default_rng(seed).choice(len(images), MAX_TRAINING_IMAGES,
                                                    replace=False)
        images, targets = images[chosen], targets[chosen]
    augmented = np.concatenate([images, dataset.flip_and_shift(images, 3, 6, seed=seed)])
    targets = np.tile(targets, 4)
    if epochs is None:
        epochs = int(np.clip(IMAGES_SEEN // len(augmented), 3, 30))
    model = build(images.shape[1], num_slice_positions)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(augmented, targets, batch_size=32, epochs=epochs, shuffle=True, verbose=verbose)
    return model


def load_or_train(folder, images, slice_index, num_slice_positions, seed=0):
    """The run's feature network: loaded from `folder` when it was trained on these slices,
    else trained (printing that it does) and saved there."""
    import keras

    folder = pathlib.Path(folder)
    fingerprint = _fingerprint(images, slice_index)
    info_path, model_path = folder / INFO_FILE, folder / MODEL_FILE
    if info_path.is_file() and model_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fingerprint:
            return keras.saving.load_model(model_path)
    print(f"training the realism feature network on {len(images)} real training slices "
          f"(once; saved as {model_path})")
    model = train(images, slice_index, num_slice_positions, seed=seed)
    model.save(model_path)
    info_path.write_text(json.dumps({"fingerprint": fingerprint,
                                     "num_slice_positions": num_slice_positions}) + "\n")
    return model


def features_and_positions(model, images, num_slice_positions=None, batch_size=64):
    """Realism features [N, d] (the penultimate embedding and the mean and spread of the
    responses of the first three blocks) and predicted slice positions [N] (the expectation of the class
    probabilities, in slice-index units)."""
    import keras

    # The realism features: the embedding (anatomy), and the mean and spatial spread of the
    # responses of the earlier, finer-scale blocks (what sees blur, noise and texture).
    parts = []
    for name in POOLED_BLOCKS:
        response = model.get_layer(name).output
        parts += [keras.ops.mean(response, axis=(1, 2)), keras.ops.std(response, axis=(1, 2))]
    features = keras.layers.Concatenate()([*parts, model.get_layer(EMBEDDING_LAYER).output])
    probe = keras.Model(model.inputs, [features, model.outputs[0]])
    features, probabilities = probe.predict(np.asarray(images, np.float32),
                                            batch_size=batch_size, verbose=0)
    expected = probabilities @ np.arange(probabilities.shape[1], dtype=np.float64)
    return np.asarray(features, np.float64), expected
