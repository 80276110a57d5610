"""The rate-distortion benchmark's designs (rate_distortion.py) and its figure."""
import json

import pytest

import hyperparameters
from brainvq.benchmarks import plots, rate_distortion


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
    path = plots.rate_distortion(rows, tmp_path / "rd.png", title="test")
    assert path.stat().st_size > 5000


def _sweep(path, data, budget, designs):
    rows = [{"design": name, "label": name, "bits": bits, "test_ssim": ssim,
             "test_ssim_std": 0.01, "test_brain_ssim": ssim - 0.1, "test_sharpness": 0.9,
             "levels": 1, "adversarial": False, "baseline": name == "kerasio", "seconds": 500.0}
            for name, bits, ssim in designs]
    path.write_text(json.dumps(dict(budget, data=data, train_subjects=8, test_slices=64,
                                    rows=rows)))
    return path


def test_merge_joins_sweeps_in_the_order_asked_and_names_each_budget(tmp_path, capsys):
    first = _sweep(tmp_path / "a.json", "oasis", {"steps": 300},
                   [("8x", 2304, 0.80), ("4x", 6144, 0.88)])
    second = _sweep(tmp_path / "b.json", "oasis", {"minutes": 9.0},
                    [("kerasio", 7168, 0.79), ("4x", 6144, 0.91)])
    rows = rate_distortion.merge([first, second], ["kerasio", "4x", "8x", "seed"],
                                 tmp_path / "m.json", tmp_path / "m.png")
    assert [row["design"] for row in rows] == ["kerasio", "4x", "8x"]
    assert rows[1]["test_ssim"] == 0.91 and rows[1]["source"] == str(second)  # the later file
    assert [row["budget"] for row in rows] == ["9 min", "9 min", "300 steps"]
    written = json.loads((tmp_path / "m.json").read_text())
    assert "300 steps (8x)" in written["title"] and "9 min (kerasio, 4x)" in written["title"]
    assert (tmp_path / "m.png").stat().st_size > 5000
    assert "left out: seed" in capsys.readouterr().out
    again = rate_distortion.merge([tmp_path / "m.json"], ["8x"], None, None)  # a merged file
    assert again[0]["budget"] == "300 steps" and again[0]["source"] == str(first)


def test_merge_refuses_sweeps_on_other_data(tmp_path):
    first = _sweep(tmp_path / "a.json", "oasis", {"steps": 300}, [("8x", 2304, 0.8)])
    second = _sweep(tmp_path / "b.json", "ixi", {"steps": 300}, [("4x", 6144, 0.9)])
    with pytest.raises(SystemExit, match="different data"):
        rate_distortion.merge([first, second], ["8x", "4x"], None, None)
