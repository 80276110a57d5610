"""Tests of metrics.py: image quality, realism, diversity, distribution distances and figures."""
import csv
import math

import numpy as np
import pytest
from scipy import ndimage

from brainvq.evaluation import metrics
from helpers import smooth_image


def disc_image(size=64, radius=20, centre=None, value=0.7):
    """A bright disc with some texture on a black background."""
    centre = (size / 2, size / 2) if centre is None else centre
    rows, columns = np.mgrid[:size, :size]
    inside = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius ** 2
    texture = 0.2 * (smooth_image(7, size) - 0.5)
    return np.where(inside, value + texture, 0.0).astype(np.float32), inside


# ------------------------------------------------------------------------------------------------
# SSIM, PSNR, MS-SSIM


def test_identical_images_are_perfect():
    image = smooth_image(0)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.ms_ssim(image, image) == pytest.approx(1.0)
    assert metrics.psnr(image, image) == math.inf
    # channel-last images are accepted too
    assert metrics.ssim(image[..., None], image[..., None]) == pytest.approx(1.0)


def test_psnr_of_a_fixed_pattern_is_exact():
    grey = np.full((32, 32), 0.5)
    pattern = np.where((np.indices((32, 32)).sum(0) % 2) == 0, 0.05, -0.05)
    assert metrics.psnr(grey, grey + pattern) == pytest.approx(10 * math.log10(1 / 0.0025),
                                                               abs=1e-6)
    assert metrics.psnr(grey, grey + pattern) == pytest.approx(26.0206, abs=1e-4)


def test_psnr_of_gaussian_noise():
    grey = np.full((256, 256), 0.5)
    noisy = grey + np.random.default_rng(0).normal(0.0, 0.1, grey.shape)
    assert metrics.psnr(grey, noisy) == pytest.approx(20.0, abs=0.3)


def test_ssim_and_ms_ssim_fall_as_noise_grows():
    image = smooth_image(1, size=96)
    rng = np.random.default_rng(1)
    pattern = rng.normal(0.0, 1.0, image.shape)
    ssims, ms_ssims = [], []
    for sigma in (0.01, 0.05, 0.1, 0.2):
        noisy = np.clip(image + sigma * pattern, 0, 1)
        ssims.append(metrics.ssim(image, noisy))
        ms_ssims.append(metrics.ms_ssim(image, noisy))
    assert all(value < 1.0 for value in ssims + ms_ssims)
    assert all(value > 0.0 for value in ms_ssims)
    assert np.all(np.diff(ssims) < 0), ssims
    assert np.all(np.diff(ms_ssims) < 0), ms_ssims


def test_ms_ssim_scales_and_small_images():
    assert metrics.ms_ssim_scales((256, 256)) == 5
    assert metrics.ms_ssim_scales((128, 128)) == 4
    assert metrics.ms_ssim_scales((22, 40)) == 2
    assert metrics.ms_ssim_scales((21, 40)) == 1
    tiny = smooth_image(2, size=16)
    with pytest.raises(ValueError, match="MS-SSIM needs images of at least"):
        metrics.ms_ssim(tiny, tiny)
    small = smooth_image(2, size=22)  # exactly 2 scales: works
    assert metrics.ms_ssim(small, small) == pytest.approx(1.0)


def test_ms_ssim_stays_real_for_anticorrelated_images():
    image = smooth_image(3)
    value = metrics.ms_ssim(image, 1.0 - image)
    assert np.isfinite(value) and 0.0 <= value < 0.5


# ------------------------------------------------------------------------------------------------
# brain mask and masked SSIM


def test_brain_mask_picks_the_disc():
    image, inside = disc_image()
    image[2:4, 2:4] = 0.9  # a small bright speck away from the disc is dropped
    image[32, 32] = 0.0  # a dark hole inside the disc is filled
    mask = metrics.brain_mask(image)
    assert mask.dtype == bool and mask.shape == inside.shape
    assert not mask[2:4, 2:4].any()
    assert mask[32, 32]
    assert np.array_equal(mask, inside)
    assert not metrics.brain_mask(np.zeros((16, 16))).any()


def test_masked_ssim_ignores_errors_outside_the_mask():
    image, inside = disc_image()
    noise = np.random.default_rng(4).uniform(0.0, 0.3, image.shape)
    noisy = np.where(inside, image, noise).astype(np.float32)
    # 4 px (chessboard) inside the edge: beyond the reach of the 7 x 7 SSIM window
    inner = ndimage.binary_erosion(inside, structure=np.ones((3, 3)), iterations=4)
    whole = metrics.ssim(image, noisy)
    masked = metrics.masked_ssim(image, noisy, inner)
    assert masked == pytest.approx(1.0, abs=1e-6)
    assert whole < 0.9
    # an empty mask falls back to the whole-image SSIM
    assert metrics.masked_ssim(image, noisy, np.zeros_like(inside)) == pytest.approx(whole)


def test_per_image_metrics_and_summary_table_handle_inf():
    references = np.stack([smooth_image(seed) for seed in range(3)])[..., None]
    reconstructions = references.copy()
    reconstructions[1:] = np.clip(reconstructions[1:] + 0.05 * np.random.default_rng(5).normal(
        size=reconstructions[1:].shape), 0, 1)
    result = metrics.per_image_metrics(references, reconstructions)
    assert set(result) == {"ssim", "psnr", "ms_ssim", "brain_ssim", "sharpness"}
    assert all(values.shape == (3,) for values in result.values())
    assert result["psnr"][0] == math.inf and np.isfinite(result["psnr"][1:]).all()
    assert result["ssim"][0] == pytest.approx(1.0) and (result["ssim"][1:] < 1).all()
    assert result["ms_ssim"][0] == pytest.approx(1.0)
    table = metrics.summary_table(result)
    psnr_line = next(line for line in table.splitlines() if line.startswith("psnr"))
    assert "1 inf" in psnr_line
    assert f"{result['psnr'][1:].mean():.4f}" in psnr_line
    assert len({len(line) for line in table.splitlines()[:2]}) == 1  # header and rule align


def test_per_image_metrics_gives_nan_ms_ssim_for_small_images():
    references = np.stack([smooth_image(seed, size=16) for seed in range(2)])
    result = metrics.per_image_metrics(references, references, masks=np.ones_like(references,
                                                                                  dtype=bool))
    assert np.isnan(result["ms_ssim"]).all()
    assert np.allclose(result["brain_ssim"], 1.0)
    assert "2 nan" in metrics.summary_table(result)


def test_write_metrics_csv(tmp_path):
    values = {"ssim": np.array([0.5, 1.0]), "psnr": np.array([20.0, math.inf])}
    path = metrics.write_metrics_csv(tmp_path / "out" / "m.csv", values, ["a.png", "b.png"],
                                     extra_columns={"slice_index": np.array([3, 4])})
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["a.png", "b.png"]
    assert rows[0]["slice_index"] == "3" and float(rows[0]["ssim"]) == 0.5
    assert float(rows[1]["psnr"]) == math.inf
    with pytest.raises(ValueError):
        metrics.write_metrics_csv(tmp_path / "bad.csv", values, ["only one"])


# ------------------------------------------------------------------------------------------------
# Fréchet distance


def test_gradient_magnitude_ratio_shows_blur_and_noise():
    image = smooth_image(3, size=64, sigma=1.5)
    mask = np.ones(image.shape, dtype=bool)
    assert metrics.gradient_magnitude_ratio(image, image, mask) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(image, 1.0)
    blurrier = ndimage.gaussian_filter(image, 2.0)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.05, image.shape), 0, 1)
    assert metrics.gradient_magnitude_ratio(image, blurrier) < \
        metrics.gradient_magnitude_ratio(image, blurred) < 0.95
    assert metrics.gradient_magnitude_ratio(image, noisy) > 1.05
    assert np.isnan(metrics.gradient_magnitude_ratio(np.zeros((16, 16)), image[:16, :16]))
    scores = metrics.per_image_metrics(image[None], blurred[None])
    assert scores["sharpness"][0] < 0.95
