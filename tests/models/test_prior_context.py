"""Tests of the prior's whole-grid context (issue 12): causal attention blocks and absolute
position embeddings, the sampler's key/value cache, and the training pieces that make the
prior generalise (best-epoch checkpoint, early stopping, code-grid augmentation)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import dataset  # noqa: E402
import hyperparameters  # noqa: E402
import modules  # noqa: E402
from brainvq.generation import sampling, sampling_loops  # noqa: E402
from brainvq.models.layers import attention  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from helpers import (  # noqa: E402
    CHANGED,
    CODES,
    SLICES,
    UNCHANGED,
    dependency_matrix,
    logits_of,
    make_prior,
    perturb_code,
)

DEFAULT_GRID = 16  # the grid of the default 128x128 model


def make_context_prior(grid=DEFAULT_GRID, num_layers=1, attention_blocks=2, seed=0,
                       position_embedding=True):
    """`make_prior` with attention blocks and position embeddings (4 heads)."""
    return make_prior(grid=grid, num_layers=num_layers, seed=seed,
                      attention_blocks=attention_blocks, attention_heads=4,
                      position_embedding=position_embedding)


def test_logits_depend_on_every_earlier_position_and_no_later_one_at_the_default_grid():
    # One gated layer alone reaches 2 rows up: the attention blocks must supply the rest.
    prior = make_context_prior()
    assert prior.causal_reach < DEFAULT_GRID
    base = np.random.default_rng(0).integers(0, CODES, (DEFAULT_GRID, DEFAULT_GRID))
    change = dependency_matrix(lambda batch: logits_of(prior, batch, np.full(len(batch), 1)),
                               base, perturb_code(np.random.default_rng(1)))
    earlier = np.tril(np.ones_like(change, bool), k=-1)  # [p, q] true where q < p
    leaks = np.argwhere(~earlier & (change > UNCHANGED))
    assert len(leaks) == 0, f"logits at p see later positions q: (p, q) {leaks[:5]}"
    blind = np.argwhere(earlier & (change <= CHANGED))
    assert len(blind) == 0, f"logits at p ignore earlier positions q: (p, q) {blind[:5]}"


def test_without_attention_the_reach_is_bounded():
    # The old configuration stays reachable, and this is what the attention fixes.
    prior = make_context_prior(attention_blocks=0, position_embedding=False)
    base = np.random.default_rng(0).integers(0, CODES, (DEFAULT_GRID, DEFAULT_GRID))
    change = dependency_matrix(lambda batch: logits_of(prior, batch), base,
                               perturb_code(np.random.default_rng(1)))
    last = DEFAULT_GRID ** 2 - 1
    assert (change[last, :DEFAULT_GRID] <= UNCHANGED).all()  # the top row is out of reach


def test_position_embedding_tells_positions_apart():
    codes = np.zeros((1, DEFAULT_GRID, DEFAULT_GRID), "int32")  # the same code everywhere
    inside = (slice(4, 12), slice(4, 12))  # positions whose window lies inside the grid

    def spread(prior):
        logits = logits_of(prior, codes)[0][inside]
        return np.abs(logits - logits[:1, :1]).max()

    assert spread(make_context_prior(attention_blocks=0, position_embedding=False)) < 1e-5
    assert spread(make_context_prior(attention_blocks=0, position_embedding=True)) > 1e-3


@pytest.mark.parametrize("crop", [True, False])
def test_greedy_samples_with_attention_are_the_argmax_of_their_own_logits(crop):
    prior = make_context_prior(grid=6)
    slices = np.array([0, 1, 3, SLICES], "int32")
    codes = sampling.sample_codes(prior, 4, 6, slice_index=slices, top_k=1, seed=0, crop=crop)
    np.testing.assert_array_equal(codes, logits_of(prior, codes, slices).argmax(-1))


def test_cached_attention_sampler_equals_the_whole_grid_sampler():
    prior = make_context_prior(grid=8)
    cropped = sampling.sample_codes(prior, 3, 8, slice_index=2, seed=11, crop=True)
    whole = sampling.sample_codes(prior, 3, 8, slice_index=2, seed=11, crop=False)
    np.testing.assert_array_equal(cropped, whole)
    assert len(np.unique(cropped)) > 1


def test_attention_prior_saves_loads_and_samples_the_same(tmp_path):
    prior = make_context_prior(grid=6)
    path = tmp_path / "prior.keras"
    prior.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.attention_blocks == 2 and loaded.position_embedding
    np.testing.assert_array_equal(sampling.sample_codes(prior, 3, 6, slice_index=1, seed=7),
                                  sampling.sample_codes(loaded, 3, 6, slice_index=1, seed=7))


def test_attention_block_position_zero_sees_nothing_and_heads_must_divide():
    block = attention.CausalAttentionBlock(8, heads=2)
    block.build((None, 5, 8))
    features = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    context = np.random.default_rng(1).normal(size=(2, 5, 8)).astype("float32")
    other_context = context.copy()
    other_context[:, 1:] += 1.0
    first = ops.convert_to_numpy(block(features, context))
    second = ops.convert_to_numpy(block(features, other_context))
    np.testing.assert_allclose(first[:, :2], second[:, :2], atol=1e-6)  # context at p >= 1
    assert np.abs(first[:, 2:] - second[:, 2:]).max() > 1e-3          # reaches p >= 2 only
    assert np.isfinite(first).all()
    with pytest.raises(ValueError, match="multiple of heads"):
        attention.CausalAttentionBlock(10, heads=4)


# ---------------------------------------------------------------------------------------------
# Training the prior to generalise
# ---------------------------------------------------------------------------------------------

def test_best_epoch_is_kept_and_training_stops_after_patience(tmp_path):
    from brainvq.training import callbacks

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False

    def run(values, start=0):
        checkpoints = callbacks.checkpoint_callbacks(tmp_path, "prior.keras", "prior",
                                                     patience=2)
        for callback in checkpoints:
            callback.set_model(model)
            callback.on_train_begin()
        for epoch, val_loss in enumerate(values, start=start):
            model.layers[0].kernel.assign(np.full((2, 1), epoch, "float32"))
            for callback in checkpoints:
                callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss})
            if model.stop_training:
                return epoch
        return None

    assert run([3.0, 1.0, 2.0]) is None  # interrupted after 3 epochs, then resumed:
    stopped_at = run([4.0, 0.5], start=3)
    assert stopped_at == 3  # epochs 3 and 4 (1-based) were no better than epoch 2
    best = keras.saving.load_model(tmp_path / "prior.keras")
    np.testing.assert_array_equal(ops.convert_to_numpy(best.layers[0].kernel), 1.0)
    last = keras.saving.load_model(tmp_path / run_folder.last_checkpoint_name("prior.keras"))
    np.testing.assert_array_equal(ops.convert_to_numpy(last.layers[0].kernel), 3.0)
    state = run_folder.read_state(tmp_path)["prior"]
    assert state["best_epoch"] == 2 and state["epochs_done"] == 4 and state["stopped_early"]
    assert state["best_value"] == 1.0 and state["monitor"] == "val_loss"


def test_flip_and_shift_copies_are_mirrored_and_shifted_real_content():
    images = np.random.default_rng(0).random((3, 10, 10, 1)).astype("float32")
    copies = dataset.flip_and_shift(images, 4, 2, seed=0)
    assert copies.shape == (12, 10, 10, 1)
    np.testing.assert_array_equal(copies[:3], images[:, :, ::-1])  # copy 1: mirror images
    for index in range(3, 12):
        source = images[index % 3]
        candidates = [np.roll(np.roll(image, dy, 0), dx, 1)[2:-2, 2:-2]
                      for image in (source, source[:, ::-1])
                      for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(np.array_equal(copies[index][2:-2, 2:-2], c) for c in candidates)
    assert any(not np.array_equal(copies[i], copies[i - 3]) for i in range(6, 12))


def test_rotated_and_scaled_copies_keep_the_slice_and_change_its_pose():
    yy, xx = np.mgrid[:32, :32]
    ellipse = (((yy - 15.5) / 12) ** 2 + ((xx - 15.5) / 7) ** 2 <= 1).astype("float32")
    images = ellipse[None, :, :, None]
    plain = dataset.flip_and_shift(images, 6, 0, seed=1)
    posed = dataset.flip_and_shift(images, 6, 0, seed=1, max_rotation=20.0, max_scale=0.15)
    np.testing.assert_array_equal(posed[0], plain[0])  # copy 1 stays the exact mirror image
    np.testing.assert_array_equal(plain[1:], np.broadcast_to(images, plain[1:].shape))
    areas = posed[1:].sum(axis=(1, 2, 3)) / ellipse.sum()
    # Scaled by at most 15% each way: the area changes by at most (1.15)^2, and not every copy
    # keeps it; rotated: some copies' pixels move off the upright ellipse.
    assert np.all((areas > 0.85 ** 2 - 0.05) & (areas < 1.15 ** 2 + 0.05))
    assert np.ptp(areas) > 0.02
    assert all(np.abs(copy[..., 0] - ellipse).sum() > 5 for copy in posed[1:])


def test_prior_hyperparameters_build_the_context_prior_and_the_old_one():
    values = dict(hyperparameters.DEFAULTS, prior_filters=16, prior_layers=1, num_codes=CODES)
    new = modules.prior_from_hyperparameters(values, 4)
    assert new.attention_blocks == values["prior_attention_blocks"] > 0
    assert new.position_embedding
    old = modules.prior_from_hyperparameters(
        dict(values, prior_attention_blocks=0, prior_position_embedding=False), 4)
    assert old.attention_blocks == 0 and not old.position_embedding
    assert len(old.weights) < len(new.weights)


def test_attention_sampler_handles_a_new_batch_size_after_the_first():
    # The compiled sampler is retraced with a dynamic batch size on the second call.
    prior = make_context_prior(grid=4)
    first = sampling.sample_codes(prior, 2, 4, seed=1)
    second = sampling.sample_codes(prior, 3, 4, seed=1)
    assert first.shape == (2, 4, 4) and second.shape == (3, 4, 4)


def test_a_sampled_prior_is_freed_when_dropped():
    import gc
    import weakref

    prior = make_context_prior(grid=4, attention_blocks=1)
    sampling.sample_codes(prior, 2, 4, seed=0)
    again = sampling_loops.compiled_sampler(prior, 4, 0, True, None)
    assert again is sampling_loops.compiled_sampler(prior, 4, 0, True, None)  # cached
    reference = weakref.ref(prior)
    del prior, again
    gc.collect()
    assert reference() is None


def _averaging_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(0.05, use_ema=True, ema_momentum=0.8),
                  loss="mse")
    return model


class _SavesAtEpochEnd(keras.callbacks.Callback):
    """Stands in for the checkpoint callback: records the weights it would save, and saves;
    with `stop_after`, ends training after that many epochs (an interrupted run)."""

    def __init__(self, path=None, stop_after=None):
        super().__init__()
        self.path, self.stop_after, self.saved, self.averages = path, stop_after, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.saved.append([keras.ops.convert_to_numpy(w) for w in self.model.weights])
        self.averages.append([keras.ops.convert_to_numpy(v)
                              for v in self.model.optimizer._model_variables_moving_average])
        if self.path:
            self.model.save(self.path)
        if self.stop_after and epoch + 1 >= self.stop_after:
            self.model.stop_training = True


def test_weight_averaging_saves_the_average_and_resumes_as_if_uninterrupted(tmp_path):
    from brainvq.training import callbacks

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(64, 3)).astype("float32")
    targets = inputs @ np.array([[1.0], [-2.0], [0.5]], "float32") + 0.3
    fit = dict(batch_size=8, shuffle=False, verbose=0)

    whole = _averaging_model()
    saver = _SavesAtEpochEnd()
    history = whole.fit(inputs, targets, epochs=3, validation_data=(inputs, targets),
                        callbacks=[callbacks.AveragedWeights(), saver], **fit)
    # What is saved at an epoch's end is the average, not the weights as trained (which the
    # optimizer's average slots hold meanwhile), and validation scores the average too.
    assert not np.allclose(saver.saved[0][0], saver.averages[0][0])
    evaluated = _averaging_model()
    evaluated.set_weights(saver.saved[-1])
    assert np.isclose(evaluated.evaluate(inputs, targets, verbose=0),
                      history.history["val_loss"][-1], rtol=1e-4)

    first = _averaging_model()
    checkpoint = tmp_path / "last.keras"
    first.fit(inputs, targets, epochs=3, callbacks=[callbacks.AveragedWeights(),
                                                    _SavesAtEpochEnd(checkpoint, 2)], **fit)
    resumed = keras.saving.load_model(checkpoint)
    resumed_saver = _SavesAtEpochEnd()
    resumed.fit(inputs, targets, epochs=3, initial_epoch=2,
                callbacks=[callbacks.AveragedWeights(resumed=True), resumed_saver], **fit)
    for after_resume, uninterrupted in zip(resumed_saver.saved[-1], saver.saved[-1]):
        np.testing.assert_allclose(after_resume, uninterrupted, rtol=1e-5, atol=1e-6)
