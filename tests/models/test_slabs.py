"""The slab autoencoder (models/slabs.py): shapes, causality-free coding along the slices, a
fit that learns, `.keras` round trip, and the depth it refuses."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainvq.models.slabs import SlabAutoencoder  # noqa: E402


def tiny(depth=4, **kwargs):
    return SlabAutoencoder(num_slice_codes=6, slab_depth=depth, slab_num_codes=16,
                           slab_code_dim=4, slab_channels=8, **kwargs)


def stacks(count=8, slices=8, grid=3, seed=0):
    """Stacks whose slice codes change slowly along the slices (runs of 4 equal slices)."""
    random = np.random.RandomState(seed)
    runs = random.randint(0, 6, (count, slices // 4, grid, grid))
    return np.repeat(runs, 4, axis=1).astype(np.int32)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_slab_codes_are_one_per_depth_slices(depth):
    model = tiny(depth)
    codes = stacks()
    slab_codes = np.asarray(model.encode(codes))
    assert slab_codes.shape == (8, 8 // depth, 3, 3) and slab_codes.max() < 16
    assert np.asarray(model.decode(slab_codes)).shape == codes.shape
    assert np.asarray(model(codes)).shape == codes.shape + (6,)


def test_fitting_decodes_more_slice_codes_right():
    keras.utils.set_random_seed(0)
    model = tiny(4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    codes = stacks(16)
    before = model.evaluate(codes, codes, verbose=0, return_dict=True)["code_accuracy"]
    model.fit(codes, codes, epochs=30, batch_size=8, verbose=0)
    after = model.evaluate(codes, codes, verbose=0, return_dict=True)["code_accuracy"]
    assert after > max(0.6, before + 0.3)


def test_a_saved_slab_autoencoder_codes_the_same(tmp_path):
    model = tiny(2)
    codes = stacks()
    model.save(tmp_path / "slabs.keras")
    loaded = keras.saving.load_model(tmp_path / "slabs.keras")
    assert loaded.slab_depth == 2 and loaded.slab_num_codes == 16
    np.testing.assert_array_equal(loaded.encode(codes), model.encode(codes))
    np.testing.assert_allclose(loaded(codes), model(codes), atol=1e-5)


@pytest.mark.parametrize("depth", [0, 3, 6])
def test_slab_depth_must_be_a_power_of_two(depth):
    with pytest.raises(ValueError, match="power of 2"):
        tiny(depth)


def test_a_stack_that_does_not_split_into_slabs_is_refused():
    with pytest.raises(ValueError, match="does not split into slabs of 4"):
        tiny(4).encode(stacks()[:, :6])
