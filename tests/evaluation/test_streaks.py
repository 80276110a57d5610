"""Tests of the along-the-slices figures of whole volumes (`evaluation/streaks.py`) on phantoms:
a stack whose slices each get their own brightness is streaky by both figures, a smooth one is
not, and a copy of a training volume is found."""
import numpy as np
import pytest

from brainvq.evaluation import streaks


def smooth_head(shift=0, depth=32, side=48):
    """A smooth ellipsoid head, its intensity varying slowly in every direction."""
    z, y, x = np.mgrid[0:depth, 0:side, 0:side].astype(np.float64)
    inside = ((x - side / 2 - shift) ** 2 / (0.42 * side) ** 2 + (y - side / 2) ** 2
              / (0.38 * side) ** 2 + (z - depth / 2) ** 2 / (0.55 * depth) ** 2) < 1
    texture = 0.55 + 0.15 * np.sin(x / 4.0 + z / 5.0) * np.cos(y / 5.0 - z / 6.0)
    return inside * texture


def streaky(stack, seed=0, strength=0.15):
    """The same stack, each slice's brightness scaled at random: horizontal streaks."""
    gains = 1 + strength * np.random.default_rng(seed).standard_normal((len(stack), 1, 1))
    return np.clip(stack * gains, 0, 1)


def test_streaks_raise_the_streak_index_and_the_high_frequency_share():
    head = smooth_head()
    assert 0 < streaks.streak_index(head) < 1.5
    assert streaks.streak_index(streaky(head)) > 2 * streaks.streak_index(head)
    assert streaks.high_frequency_share(streaky(head)) > 1.5 * streaks.high_frequency_share(head)
    assert 0 <= streaks.high_frequency_share(head) < 0.2


def test_an_empty_stack_has_no_figure_rather_than_a_false_one():
    assert np.isnan(streaks.streak_index(np.zeros((8, 16, 16))))
    assert np.isnan(streaks.high_frequency_share(np.zeros((8, 16, 16))))


def test_a_copy_of_a_training_volume_is_found_and_a_shifted_head_is_not_one():
    training = [smooth_head(), smooth_head(shift=6)]
    nearest = streaks.nearest_volume_ssim([smooth_head(), smooth_head(shift=3)], training)
    assert nearest[0] == pytest.approx(1.0)
    assert nearest[1] < 0.99
    tiny = smooth_head(depth=8, side=12)  # under the SSIM window at half resolution: as it is
    assert streaks.nearest_volume_ssim([tiny], [tiny])[0] == pytest.approx(1.0)


def test_the_report_puts_samples_beside_real_volumes():
    real = [smooth_head(shift=s) for s in (-2, 0, 2)]
    samples = [streaky(head, seed) for seed, head in enumerate(real)]
    report = streaks.streak_report(samples, real, [smooth_head(shift=5)])
    assert report["streak_index_samples"] > report["streak_index_real"]
    assert report["high_frequency_share_samples"] > report["high_frequency_share_real"]
    assert set(report) >= {"streak_index_sd_real", "nearest_training_ssim_max_samples",
                           "nearest_training_ssim_max_real"}
    # streaks are steps between slices: the slice step rises, not the in-plane one
    assert report["slice_step_samples"] > 1.5 * report["slice_step_real"]
    assert report["in_plane_step_samples"] == pytest.approx(report["in_plane_step_real"],
                                                            rel=0.2)


def test_stack_figures_are_the_figures_of_each_stack_and_the_slices_ssim_to_real():
    heads = np.stack([smooth_head(), streaky(smooth_head())])
    figures = streaks.stack_figures(heads)
    indices = [streaks.streak_index(head) for head in heads]
    assert figures["streak_index"] == pytest.approx(np.mean(indices))
    assert figures["streak_index_sd"] == pytest.approx(np.std(indices))
    assert "slice_ssim" not in figures
    assert streaks.stack_figures(heads, heads)["slice_ssim"] == pytest.approx(1.0)
    assert streaks.stack_figures(heads[1:], heads[:1])["slice_ssim"] < 0.999


def test_blur_in_plane_raises_the_streak_index_through_the_in_plane_step_alone():
    from scipy import ndimage

    head = smooth_head()
    inside = head > 0
    # fine in-plane texture and a brightness that changes from slice to slice; each slice blurred
    # on its own inside the same head outline
    z, y, x = np.mgrid[0:head.shape[0], 0:head.shape[1], 0:head.shape[2]]
    sharp = 0.5 + 0.1 * np.sin(1.3 * x) * np.cos(1.1 * y) + 0.05 * np.sin(z / 2.0)
    blurred = np.stack([ndimage.gaussian_filter(image, 1.0) for image in sharp])
    (slice_step, in_plane), (blurred_slice_step, blurred_in_plane) = (
        streaks.neighbour_steps(inside * texture) for texture in (sharp, blurred))
    assert streaks.streak_index(inside * sharp) == pytest.approx(slice_step / in_plane)
    # the in-plane steps shrink far more than those between slices: the ratio rises with no
    # new step between slices
    assert blurred_in_plane < 0.5 * in_plane
    assert blurred_slice_step == pytest.approx(slice_step, rel=0.05)
    assert streaks.streak_index(inside * blurred) > 1.5 * streaks.streak_index(inside * sharp)
    figures = streaks.stack_figures(np.stack([inside * sharp, inside * blurred]))
    assert figures["in_plane_step"] == pytest.approx((in_plane + blurred_in_plane) / 2)


def test_brightness_steps_see_whole_slice_jumps_and_not_a_steady_trend():
    head = smooth_head()
    step, jump = streaks.brightness_steps(head)
    jumpy_step, jumpy_jump = streaks.brightness_steps(streaky(head))
    assert jumpy_step > 3 * step and jumpy_jump > 3 * jump
    # a brightness that rises steadily along the stack is a step, but no jump about its trend
    ramp = head * np.linspace(0.8, 1.2, len(head))[:, None, None]
    ramp_step, ramp_jump = streaks.brightness_steps(ramp)
    assert ramp_step > step and ramp_jump < 2 * jump + 1e-3
    figures = streaks.stack_figures(np.stack([head, streaky(head)]))
    assert figures["brightness_jump"] == pytest.approx((jump + jumpy_jump) / 2)


def test_a_stack_with_no_head_leaves_its_steps_out_of_the_means_without_a_warning():
    import warnings

    head, empty = smooth_head(), np.zeros_like(smooth_head())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = streaks.stack_figures(np.stack([head, empty]))
        nothing = streaks.stack_figures(empty[None])
    assert figures["slice_step"] == pytest.approx(streaks.neighbour_steps(head)[0])
    assert np.isnan(nothing["slice_step"]) and np.isnan(nothing["brightness_jump"])
