"""Non-leaking augmentation (issue 49): the prior is told each training grid's augmentation and
sampled at zero. The parameters recorded, the condition's effect, the warm start from a prior
trained without it, and the weight snapshots a checkpoint is chosen from."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainvq.data import augmentation  # noqa: E402
from brainvq.generation import sampling  # noqa: E402
from brainvq.models.pixelcnn import GatedPixelCNN  # noqa: E402
from brainvq.training import stages  # noqa: E402


def squares(count=3, size=16):
    images = np.zeros((count, size, size, 1), np.float32)
    for index in range(count):
        images[index, 4 + index:10 + index, 3:8] = 1.0  # off-centre, so a flip shows
    return images


def test_flip_and_shift_records_what_it_did_to_each_copy():
    images = squares()
    copies, parameters = augmentation.flip_and_shift(images, 4, 2, seed=3,
                                                     return_parameters=True)
    assert parameters.shape == (12, len(augmentation.AUGMENTATION_PARAMETERS))
    # the same draws as without the parameters: old caches and results stay reproducible
    np.testing.assert_array_equal(copies, augmentation.flip_and_shift(images, 4, 2, seed=3))
    np.testing.assert_array_equal(parameters[:3], [[1, 0, 0, 0, 0]] * 3)  # copy 1: the mirror
    assert np.abs(parameters[:, 1:3]).max() <= 1.0 and np.abs(parameters[3:, 1:3]).max() > 0
    assert (parameters[:, 3:] == 0).all()  # no rotation or scaling asked for
    for image, copy, (flip, shift_y, shift_x, _, _) in zip(np.tile(images, (4, 1, 1, 1)),
                                                           copies, parameters):
        source = image[:, ::-1] if flip else image
        moved = np.roll(source, (int(shift_y * 2), int(shift_x * 2)), axis=(0, 1))
        np.testing.assert_array_equal(copy, moved)  # the squares never reach the edges
    _, posed = augmentation.flip_and_shift(images, 3, 0, seed=1, max_rotation=10.0,
                                           max_scale=0.1, return_parameters=True)
    assert (np.abs(posed[3:, 3:]) > 0).all() and (np.abs(posed[:, 3:]) <= 1).all()


def tiny_prior(**kwargs):
    prior = GatedPixelCNN(num_codes=4, grid_size=4, filters=8, num_layers=1,
                          num_slice_positions=2, seed=0, **kwargs)
    prior.build()
    return prior


def test_a_prior_told_the_augmentation_learns_the_poses_apart_and_samples_at_zero():
    """Grids of code 0 as they are, code 3 when "augmented": told the augmentation, the prior
    gives code 0 at zero (what sampling asks for) and code 3 where told; without the condition it
    draws the augmented grids' code as often as the training pool holds them."""
    count = 64
    augmented = np.arange(count) % 4 != 0  # three augmented grids to one original, as a pool
    grids = np.where(augmented[:, None, None], 3, 0).astype("int32") * np.ones((1, 4, 4), "int32")
    parameters = np.zeros((count, 5), np.float32)
    parameters[augmented, 0] = 1.0
    parameters[augmented, 2] = 0.5
    inputs = {"code_indices": grids, "slice_index": np.zeros(count, "int32"),
              "augmentation": parameters}
    told = tiny_prior(augmentation_inputs=5)
    blind = tiny_prior()
    for prior in (told, blind):
        prior.compile(optimizer=keras.optimizers.Adam(0.02),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        prior.fit(inputs, grids, batch_size=32, epochs=40, verbose=0, shuffle=True)
    empty = {"code_indices": np.zeros((1, 4, 4), "int32"), "slice_index": np.zeros(1, "int32")}
    first_code = lambda prior, extra=None: keras.ops.convert_to_numpy(  # noqa: E731
        keras.ops.softmax(prior({**empty, **(extra or {})})[0, 0, 0]))
    assert first_code(told)[0] > 0.9  # no "augmentation" given: 0, a grid as it is
    assert first_code(told, {"augmentation": parameters[1:2]})[3] > 0.9
    assert first_code(blind)[3] > 0.6  # the leak: the pool's poses come back
    # The sampler draws each sample at its own augmentation (guided copies keep it), and both
    # loops agree; one row serves all samples.
    rows = np.where(np.arange(8)[:, None] % 2 == 1, parameters[1], 0.0)
    for crop in (True, False):
        codes = sampling.sample_codes(told, 8, 4, slice_index=0, augmentation=rows, seed=0,
                                      crop=crop, guidance=2.0, batch_size=3)
        assert (codes[1::2] == 3).mean() > 0.9 and (codes[::2] == 0).mean() > 0.9
    assert (sampling.sample_codes(told, 2, 4, augmentation=parameters[1]) == 3).mean() > 0.9
    with pytest.raises(ValueError, match="without the augmentation condition"):
        sampling.sample_codes(blind, 2, 4, augmentation=parameters[1])
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        sampling.sample_codes(told, 2, 4, augmentation=rows)


def test_prior_init_starts_from_a_trained_prior_and_the_new_condition_changes_nothing_yet(
        tmp_path):
    trained = tiny_prior()
    trained.set_weights([np.random.default_rng(index).normal(0, 0.3, w.shape)
                         for index, w in enumerate(trained.get_weights())])
    path = tmp_path / "prior.keras"
    trained.save(path)
    fresh = tiny_prior(augmentation_inputs=5)
    stages.initialise_from(fresh, tmp_path)  # a run folder holding prior.keras
    codes = np.random.default_rng(0).integers(0, 4, (3, 4, 4)).astype("int32")
    inputs = {"code_indices": codes, "slice_index": np.array([0, 1, 2], "int32")}
    expected = keras.ops.convert_to_numpy(trained(inputs))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fresh(inputs)), expected, atol=1e-5)
    told = dict(inputs, augmentation=np.ones((3, 5), np.float32))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fresh(told)), expected, atol=1e-5)
    with pytest.raises(Exception, match="no prior checkpoint"):
        stages.initialise_from(fresh, tmp_path / "nowhere")


def test_the_augmentation_condition_survives_save_and_load(tmp_path):
    prior = tiny_prior(augmentation_inputs=5)
    prior.augmentation_encoder.layers[-1].kernel.assign(np.ones((8, 8), np.float32))
    path = tmp_path / "prior.keras"
    prior.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.augmentation_inputs == 5
    inputs = {"code_indices": np.zeros((2, 4, 4), "int32"), "slice_index": np.zeros(2, "int32"),
              "augmentation": np.full((2, 5), 0.5, np.float32)}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(inputs)),
                               keras.ops.convert_to_numpy(prior(inputs)), atol=1e-6)
    assert not np.allclose(keras.ops.convert_to_numpy(prior(inputs)),
                           keras.ops.convert_to_numpy(prior(dict(inputs, augmentation=None))))


def test_the_pool_repeats_the_grids_as_they_are_original_weight_times():
    grids = np.arange(9 * 4).reshape(9, 2, 2)  # 3 originals, then 2 augmented copies of each
    codes = {"train": (grids[:3], np.arange(3)),
             "train_augmented": (grids, np.tile(np.arange(3), 3)),
             "augmentation": np.r_[np.zeros((3, 5)), np.ones((6, 5))].astype(np.float32)}
    rows = np.arange(9, dtype=np.float32)[:, None]
    pool = stages.pooled(codes, rows, original_weight=3)
    assert len(pool["codes"]) == 3 * 3 + 6
    assert (pool["augmentation"][:9] == 0).all() and (pool["augmentation"][9:] == 1).all()
    np.testing.assert_array_equal(pool["codes"][:9], np.tile(grids[:3], (3, 1, 1)))
    np.testing.assert_array_equal(pool["covariates"][:, 0], np.r_[np.tile([0, 1, 2], 3),
                                                                  np.arange(3, 9)])
    once = stages.pooled(codes, None)
    assert len(once["codes"]) == 9 and once["covariates"] is None
