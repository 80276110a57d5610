"""The rate-distortion benchmark's designs (rate_distortion.py) and its figure."""
import pytest

import figures
import hyperparameters
import rate_distortion


def test_designs_set_their_own_values_and_keep_the_rest():
    values = dict(hyperparameters.DEFAULTS, adversarial_weight=0.5, batch_size=8)
    label, baseline, design_values = rate_distortion.design("vqvae2-4x", values)
    assert baseline is None and "VQ-VAE-2" in label
    assert design_values["levels"] == 2 and design_values["num_downsamples"] == 2
    assert design_values["batch_size"] == 8
    assert design_values["adversarial_weight"] == 0.0  # only +adv designs keep it
    label, _, design_values = rate_distortion.design("8x+adv", values)
    assert design_values["adversarial_weight"] == 0.5 and "adversarial" in label
    assert rate_distortion.design("kerasio", values)[1] == "kerasio"


@pytest.mark.parametrize("name, message", [("9x", "unknown design"),
                                           ("kerasio+adv", "baseline"),
                                           ("8x+adv", "--adversarial-weight")])
def test_bad_designs_are_refused_by_name(name, message):
    with pytest.raises(SystemExit, match=message):
        rate_distortion.design(name, dict(hyperparameters.DEFAULTS))


def test_figure_is_written(tmp_path):
    rows = [{"label": label, "bits": bits, "test_ssim": ssim, "test_ssim_std": 0.01,
             "test_brain_ssim": ssim - 0.1, "levels": levels, "adversarial": adversarial,
             "baseline": baseline}
            for label, bits, ssim, levels, adversarial, baseline in [
                ("a", 256, 0.6, 1, False, False), ("b", 2304, 0.75, 1, True, False),
                ("c", 2240, 0.7, 2, False, False), ("d", 7168, 0.79, 1, False, True)]]
    path = figures.rate_distortion(rows, tmp_path / "rd.png", title="test")
    assert path.stat().st_size > 5000
