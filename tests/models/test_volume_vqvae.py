"""The VQ-VAE over whole stacks (models/volume_vqvae.py): code grids of the right shape for each
slice factor, a fit whose loss holds the quantizer's, learning, `.keras` round trip of both
decoders, a resizing decoder without the transposed one's pattern of period 2, and the stacks,
factors and upsampling it refuses."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainvq.models.volume_vqvae import VolumeVQVAE, level_strides  # noqa: E402


def tiny(**kwargs):
    kwargs.setdefault("num_downsamples", 2)
    return VolumeVQVAE(num_codes=16, code_dim=4, channels=4, num_residual_blocks=1, **kwargs)


def blobs(count=4, shape=(8, 16, 16), seed=0):
    """Stacks [N, S, H, W, 1] of bright boxes on black, at random places."""
    random = np.random.RandomState(seed)
    stacks = np.zeros((count, *shape, 1), np.float32)
    for stack in stacks:
        start = [random.randint(0, side // 2) for side in shape]
        stack[start[0]:start[0] + shape[0] // 2, start[1]:start[1] + shape[1] // 2,
              start[2]:start[2] + shape[2] // 2] = random.uniform(0.5, 1.0)
    return stacks


@pytest.mark.parametrize("slice_downsamples, grid", [(None, (2, 4, 4)), (2, (2, 4, 4)),
                                                     (1, (4, 4, 4)), (0, (8, 4, 4))])
def test_a_stack_codes_as_one_grid_of_its_factors(slice_downsamples, grid):
    model = tiny(slice_downsamples=slice_downsamples)
    stacks = blobs()
    codes = np.asarray(model.encode(stacks))
    assert model.code_shape((8, 16, 16)) == grid and codes.shape == (4, *grid)
    assert codes.min() >= 0 and codes.max() < 16
    assert model.code_bits((8, 16, 16)) == np.prod(grid) * 4
    assert np.asarray(model.decode_codes(codes)).shape == stacks.shape
    assert np.asarray(model(stacks)).shape == stacks.shape


def test_the_strides_follow_the_slice_factor():
    assert level_strides(3, 3) == [(2, 2, 2)] * 3
    assert level_strides(3, 1) == [(2, 2, 2), (1, 2, 2), (1, 2, 2)]


def test_training_adds_the_quantizer_loss_and_fitting_learns():
    keras.utils.set_random_seed(0)
    model = tiny()
    stacks = blobs(8)
    model(stacks, training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) > 0  # the commitment loss
    model(stacks, training=False)
    assert not model.losses  # inference adds none
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = model.evaluate(stacks, stacks, verbose=0)
    model.fit(stacks, stacks, epochs=40, batch_size=4, verbose=0)
    assert model.evaluate(stacks, stacks, verbose=0) < 0.4 * before


@pytest.mark.parametrize("upsampling", ["transposed", "resize"])
def test_a_saved_volume_vqvae_codes_and_renders_the_same(tmp_path, upsampling):
    model = tiny(slice_downsamples=1, upsampling=upsampling)
    stacks = blobs()
    model.save(tmp_path / "volume_vqvae.keras")
    loaded = keras.saving.load_model(tmp_path / "volume_vqvae.keras")
    assert loaded.slice_downsamples == 1 and loaded.num_codes == 16
    assert loaded.upsampling == upsampling
    np.testing.assert_array_equal(loaded.encode(stacks), model.encode(stacks))
    np.testing.assert_allclose(loaded(stacks), model(stacks), atol=1e-5)


def period_two_step(model):
    """How much neighbouring voxels of the stack rendered from one code everywhere differ, in
    its interior (away from the zero padding), along each axis."""
    codes = np.zeros((1, 12, 12, 12), "int32")  # 48 voxels a side; the padding reaches 16 in
    stack = np.asarray(model.decode_codes(codes))[0, 16:-16, 16:-16, 16:-16, 0]
    return [float(np.abs(np.diff(stack, axis=axis)).max()) for axis in range(3)]


def test_a_resizing_decoder_renders_one_code_everywhere_without_a_pattern_of_period_two():
    keras.utils.set_random_seed(0)
    # a transposed convolution sums different kernel taps into neighbouring voxels
    assert min(period_two_step(tiny(slice_downsamples=2))) > 1e-4
    assert max(period_two_step(tiny(slice_downsamples=2, upsampling="resize"))) < 1e-6
    with pytest.raises(ValueError, match="upsampling"):
        tiny(upsampling="bilinear")


def test_a_stack_that_does_not_divide_by_the_factors_is_refused():
    with pytest.raises(ValueError, match=r"divisible by \(4, 4, 4\)"):
        tiny().code_shape((6, 16, 16))


@pytest.mark.parametrize("slice_downsamples", [-1, 3])
def test_more_slice_downsamples_than_levels_is_refused(slice_downsamples):
    with pytest.raises(ValueError, match="slice_downsamples"):
        tiny(slice_downsamples=slice_downsamples)
