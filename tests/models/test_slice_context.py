"""The slice-context refiner (models/slice_context.py, training/context_stage.py): it starts as
the identity, sees exactly `blocks` slices on each side, learns what quantization took away,
round-trips through `.keras`, and decodes stacks as the VQ-VAE does when untrained."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainvq.generation.stacks import decode_stacks  # noqa: E402
from brainvq.models.slice_context import SliceContextRefiner  # noqa: E402
from brainvq.training.context_stage import LatentRuns  # noqa: E402
from helpers import tiny_vqvae  # noqa: E402


def latents(count=2, slices=9, grid=3, dim=4, seed=0):
    return np.random.RandomState(seed).normal(size=(count, slices, grid, grid, dim)).astype(
        np.float32)


def scrambled(refiner, seed=1):
    """The refiner with every weight random (its last layer too, which starts at zero)."""
    random = np.random.RandomState(seed)
    for weight in refiner.weights:
        weight.assign(random.normal(0, 0.3, weight.shape).astype(np.float32))
    return refiner


@pytest.mark.parametrize("slices", [1, 5, 12])
def test_an_untrained_refiner_changes_nothing_at_any_stack_length(slices):
    refiner = SliceContextRefiner(code_dim=4, channels=6, blocks=2)
    inputs = latents(slices=slices)
    np.testing.assert_array_equal(np.asarray(refiner(inputs)), inputs)


@pytest.mark.parametrize("blocks", [1, 3])
def test_each_slice_sees_exactly_blocks_slices_on_each_side(blocks):
    refiner = scrambled(SliceContextRefiner(code_dim=4, channels=6, blocks=blocks))
    inputs = latents(count=1, slices=11)
    changed = inputs.copy()
    changed[0, 5] += 1.0  # slice 5 only
    moved = np.abs(np.asarray(refiner(changed)) - np.asarray(refiner(inputs))).max(
        axis=(0, 2, 3, 4))
    expected = np.abs(np.arange(11) - 5) <= blocks
    np.testing.assert_array_equal(moved > 1e-6, expected)


def test_fitting_brings_quantized_latents_nearer_the_unquantized_ones():
    """Latents that change smoothly along the slices, 'quantized' by rounding: the refiner
    learns to give some of the smooth latents back from their rounded neighbours."""
    keras.utils.set_random_seed(0)
    ramp = np.linspace(0, 3, 16, dtype=np.float32)[None, :, None, None, None]
    offsets = np.random.RandomState(0).uniform(0, 1, (32, 1, 2, 2, 2)).astype(np.float32)
    smooth = ramp + offsets
    rounded = np.round(smooth)
    refiner = SliceContextRefiner(code_dim=2, channels=16, blocks=3)
    refiner.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(np.mean((rounded - smooth) ** 2))
    refiner.fit(rounded, smooth, epochs=40, batch_size=8, verbose=0)
    after = float(np.mean((np.asarray(refiner(rounded)) - smooth) ** 2))
    assert after < 0.5 * before


def test_a_saved_refiner_refines_the_same(tmp_path):
    refiner = scrambled(SliceContextRefiner(code_dim=4, channels=6, blocks=2))
    refiner.save(tmp_path / "refiner.keras")
    loaded = keras.saving.load_model(tmp_path / "refiner.keras")
    assert (loaded.code_dim, loaded.channels, loaded.blocks) == (4, 6, 2)
    inputs = latents()
    np.testing.assert_allclose(loaded(inputs), refiner(inputs), atol=1e-5)


def test_latent_runs_are_consecutive_slices_of_one_stack_and_its_codebook_rows():
    codes = np.arange(2 * 10).reshape(2, 10, 1, 1) % 7
    unquantized = np.arange(2 * 10, dtype=np.float32).reshape(2, 10, 1, 1, 1)
    codebook = np.arange(7, dtype=np.float32)[:, None] * 10
    runs = LatentRuns(codes, unquantized, codebook, batch_size=2, run_length=4, seed=0)
    quantized, targets = runs[0]
    assert quantized.shape == targets.shape == (2, 4, 1, 1, 1) and len(runs) == 1
    for run, target in zip(quantized[..., 0, 0, 0], targets[..., 0, 0, 0]):
        assert np.all(np.diff(target) == 1)  # 4 neighbouring slices of one stack
        np.testing.assert_array_equal(run, (target.astype(int) % 7) * 10)
    whole = LatentRuns(codes, unquantized, codebook, batch_size=2)[0][1]
    np.testing.assert_array_equal(whole, unquantized)  # without a run length: whole stacks


def test_decoding_through_an_untrained_refiner_is_decoding_slice_by_slice():
    vqvae = tiny_vqvae()
    grid = vqvae.grid_size
    codes = np.random.RandomState(0).randint(0, vqvae.num_codes, (2, 5, grid, grid))
    refiner = SliceContextRefiner(code_dim=vqvae.code_dim, channels=4, blocks=1)
    plain = decode_stacks(vqvae, codes, batch_size=3)
    np.testing.assert_allclose(decode_stacks(vqvae, codes, batch_size=3, refiner=refiner),
                               plain, atol=1e-5)
    assert plain.shape == (2, 5, vqvae.image_size, vqvae.image_size)
    changed = decode_stacks(vqvae, codes, refiner=scrambled(refiner))
    assert not np.allclose(changed, plain, atol=1e-3)


def test_strength_moves_the_codebook_rows_that_far_towards_the_refiners_output():
    from brainvq.models.slice_context import decode_refined, refine_codes

    vqvae = tiny_vqvae()
    grid = vqvae.grid_size
    codes = np.random.RandomState(0).randint(0, vqvae.num_codes, (1, 4, grid, grid))
    refiner = scrambled(SliceContextRefiner(code_dim=vqvae.code_dim, channels=4, blocks=1))
    rows = np.asarray(refine_codes(refiner, vqvae, codes, strength=0.0))
    full = np.asarray(refine_codes(refiner, vqvae, codes))
    assert not np.allclose(rows, full, atol=1e-3)
    np.testing.assert_allclose(np.asarray(refine_codes(refiner, vqvae, codes, strength=0.25)),
                               rows + 0.25 * (full - rows), atol=1e-5)
    # strength 0 decodes the codebook rows themselves: slice by slice
    np.testing.assert_allclose(np.asarray(decode_refined(refiner, vqvae, codes, strength=0.0)),
                               decode_stacks(vqvae, codes), atol=1e-5)
