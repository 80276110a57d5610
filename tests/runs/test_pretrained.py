"""Shipped models (pretrained.py): export, loading with no data, nothing written into the
folder, seeded samples, a damaged copy refused by name; and the model the repository ships."""
import json
import pathlib
import re
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
# train.py, predict.py, similarity.py end to end, their evaluation networks kept small
# traced: the shipped models' sampling loops run eagerly take minutes where their graphs take
# seconds
pytestmark = [pytest.mark.slow, pytest.mark.traced, pytest.mark.usefixtures("quick_evaluation")]

import predict  # noqa: E402
import train  # noqa: E402
from brainvq.generation.generate import draw_subject_covariates  # noqa: E402
from brainvq.runs import pretrained, run_folder  # noqa: E402
from brainvq.runs.run import Run  # noqa: E402
from helpers import REPO, TINY  # noqa: E402

SHIPPED = REPO / "pretrained" / "ixi-t1-128"
SHIPPED_VOLUMES = REPO / "pretrained" / "ixi-t1-128-volumes"


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
    """A tiny trained run and its export: (run folder, shipped folder)."""
    root = tmp_path_factory.mktemp("shipping")
    run = root / "run"
    train.main(["--data-dir", str(data_dir), "--epochs", "1", "--prior-epochs", "1",
                "--output-dir", str(run), "--images-dir", str(root / "images"), *TINY])
    train.main(["--output-dir", str(run), "--export", str(root / "pretrained" / "tiny")])
    return run, root / "pretrained" / "tiny"


def snapshot(folder):
    return {path.name: (path.stat().st_mtime_ns, run_folder.file_fingerprint(path))
            for path in sorted(pathlib.Path(folder).iterdir())}


def flip_middle_byte(path):
    """Damages a file the way a bad download does: one byte in its middle inverted."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def sample_pixels(folder):
    return [np.asarray(Image.open(path)) for path in sorted(folder.glob("sample_*.png"))]


def test_export_strips_the_optimizer_and_records_the_files(exported, data_dir):
    run, shipped = exported
    for name in ("vqvae.keras", "prior.keras"):
        assert (shipped / name).stat().st_size < (run / name).stat().st_size, name
        with zipfile.ZipFile(shipped / name) as archive:
            config = json.loads(archive.read("config.json"))
        assert not config.get("compile_config"), name  # no optimizer to restore
    state = run_folder.read_state(shipped)
    assert set(state[run_folder.FILES_KEY]) == {"vqvae.keras", "prior.keras",
                                                "hyperparameters.json"}
    assert state["prior"]["slice_position_counts"]
    assert (shipped / run_folder.MODEL_CARD_FILE).is_file() and run_folder.is_shipped(shipped)
    saved = json.loads((shipped / "hyperparameters.json").read_text())
    assert saved["data_dir"] == ""  # no path of the machine it was made on: named instead
    assert state["data"].startswith(f"{data_dir.name}, split ")  # the data, by name
    assert state["data"].endswith("by subject, seed 42")


def test_export_refuses_to_replace_a_model_without_overwrite(exported):
    run, shipped = exported
    with pytest.raises(SystemExit, match="already holds a model"):
        train.main(["--output-dir", str(run), "--export", str(shipped)])


def test_export_again_keeps_model_files_whose_weights_did_not_change(exported, tmp_path):
    run, shipped = exported
    again = tmp_path / "again"
    shutil.copytree(shipped, again)
    before = snapshot(again)
    prior = run_folder.load_checkpoint(run / "prior.keras")
    prior.set_weights([weight + 1e-3 for weight in prior.get_weights()])  # a retrained prior
    retrained = tmp_path / "run"
    shutil.copytree(run, retrained)
    prior.save(retrained / "prior.keras")
    pretrained.export(retrained, again, overwrite=True)
    after = snapshot(again)
    assert after["vqvae.keras"] == before["vqvae.keras"]  # the same file, not rewritten
    assert after["prior.keras"][1] != before["prior.keras"][1]
    # the card of the model it replaced no longer fits: a new stub naming the source
    assert str(retrained) in (again / run_folder.MODEL_CARD_FILE).read_text()
    assert run_folder.read_state(again)["subjects"]["test"] == ["case_004"]
    card = (again / run_folder.MODEL_CARD_FILE).read_text() + "completed by hand\n"
    (again / run_folder.MODEL_CARD_FILE).write_text(card)
    pretrained.export(retrained, again, overwrite=True)  # the same models: the card stays
    assert (again / run_folder.MODEL_CARD_FILE).read_text() == card
    with pytest.raises(SystemExit, match="is a training run folder"):
        train.main(["--output-dir", str(retrained), "--export", str(run), "--overwrite"])
    predict.main(["--output-dir", str(again), "--samples", "1", "--images-dir",
                  str(tmp_path / "images")])  # its record of the files still matches


def test_shipped_model_samples_without_data_and_writes_nothing_into_its_folder(
        exported, tmp_path, monkeypatch, capsys):
    _, shipped = exported
    moved = tmp_path / "a" / "b" / "c" / "tiny"  # its relative data folder is not found here
    shutil.copytree(shipped, moved)
    monkeypatch.chdir(tmp_path)
    before = snapshot(moved)
    predict.main(["--output-dir", str(moved), "--samples", "2", "--seed", "3"])
    out = capsys.readouterr().out
    assert "no reconstructions: they need this run's data" in out
    assert pretrained.data_description(moved) in out and "pass --data-dir" in out
    work = tmp_path / "output" / "tiny"  # the default for a shipped model
    first = sample_pixels(work / "samples")
    assert len(first) == 2 and (work / "samples_by_slice.png").is_file()
    assert not (work / "reconstructions.png").exists()
    predict.main(["--output-dir", str(moved), "--samples", "2", "--seed", "3"])
    again = sample_pixels(work / "samples")
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # seeded, repeatable
    assert snapshot(moved) == before


def test_similarity_keeps_its_caches_out_of_a_shipped_folder(exported, data_dir, tmp_path,
                                                             monkeypatch):
    import similarity

    _, shipped = exported
    monkeypatch.chdir(tmp_path)
    before = snapshot(shipped)
    similarity.main(["--output-dir", str(shipped), "--data-dir", str(data_dir), "--samples", "2",
                     "--feature-network", "no"])
    assert (tmp_path / "output" / "tiny" / "reconstruction_metrics.csv").is_file()
    assert snapshot(shipped) == before


def test_realism_benchmark_averages_seeds_and_keeps_its_network_out_of_a_shipped_folder(
        exported, data_dir, tmp_path, monkeypatch, capsys):
    import benchmark
    from brainvq.evaluation import realism
    from brainvq.runs import run_folder

    _, shipped = exported
    monkeypatch.chdir(tmp_path)
    built = []
    real_reference = realism.RealReference

    def counted(*args, **kwargs):
        built.append(args)
        return real_reference(*args, **kwargs)

    monkeypatch.setattr(realism, "RealReference", counted)
    loaded = []
    load_prior = run_folder.load_prior
    monkeypatch.setattr(run_folder, "load_prior",
                        lambda *args, **kwargs: loaded.append(args) or load_prior(*args, **kwargs))
    before = snapshot(shipped)
    rows = benchmark.main(["realism", "--output-dir", str(shipped), "--data-dir", str(data_dir),
                           "--samples", "3", "--temperatures", "1.0", "--top-ks", "0",
                           "--guidances", "1,2", "--seeds", "0,1"])
    assert snapshot(shipped) == before
    assert (tmp_path / "output" / "tiny" / "feature_network.keras").is_file()
    assert [(setting[3], seed) for setting, seed, _ in rows] == [(1.0, 0), (2.0, 0), (1.0, 1),
                                                                 (2.0, 1)]
    assert len(built) == 1  # the real slices' ranges, features and reconstructions: once
    assert len(loaded) == 1  # one prior, one compiled sampler, for all eight draws
    # one unconditional draw per seed serves both guidance values; the seeds' draws differ
    assert rows[0][2]["frechet_samples"] == rows[1][2]["frechet_samples"]
    assert rows[0][2]["frechet_samples"] != rows[2][2]["frechet_samples"]
    lines = capsys.readouterr().out.splitlines()
    means = [line.split() for line in lines if " mean " in line]
    assert len(means) == 2  # one per guidance value
    expected = np.mean([rows[0][2]["frechet_samples"], rows[2][2]["frechet_samples"]])
    assert float(means[0][7]) == pytest.approx(expected, abs=1e-3)  # the Fréchet column
    benchmark.main(["realism", "--output-dir", str(shipped), "--data-dir", str(data_dir),
                    "--samples", "2", "--temperatures", "1.0", "--top-ks", "0", "--split", "test"])
    assert "judged against the test split" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_copy_is_refused_by_name(exported, tmp_path, damage, capsys):
    _, shipped = exported
    copy = tmp_path / "tiny"
    shutil.copytree(shipped, copy)
    target = copy / "prior.keras"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        flip_middle_byte(target)
    else:
        target.unlink()
    with pytest.raises(SystemExit) as failure:
        predict.main(["--output-dir", str(copy), "--samples", "1",
                      "--images-dir", str(tmp_path / "images")])
    assert str(target) in str(failure.value)


def test_a_copy_without_its_state_and_an_images_dir_inside_it_are_refused(exported, tmp_path):
    """A shipped copy that lost training_state.json would sample with another slice-position
    distribution; --images-dir inside a shipped folder would write into it: both refused."""
    _, shipped = exported
    copy = tmp_path / "tiny"
    shutil.copytree(shipped, copy)
    before = snapshot(copy)
    for inside in (copy, copy / "figures"):
        with pytest.raises(SystemExit, match=f"--images-dir {inside} lies in the shipped model"):
            predict.main(["--output-dir", str(copy), "--samples", "1", "--images-dir",
                          str(inside)])
    assert snapshot(copy) == before and not (copy / "figures").exists()
    (copy / run_folder.STATE_FILE).unlink()
    with pytest.raises(SystemExit, match="training_state.json is missing from the shipped"):
        predict.main(["--output-dir", str(copy), "--samples", "1",
                      "--images-dir", str(tmp_path / "images")])


def test_a_shipped_models_sampling_settings_change_and_it_still_loads(exported, tmp_path):
    run, shipped = exported
    copy = tmp_path / "tiny"
    shutil.copytree(shipped, copy)
    weights = {name: run_folder.file_fingerprint(copy / name)
               for name in ("vqvae.keras", "prior.keras")}
    before = pretrained.set_sampling_settings(copy, guidance=1.25,
                                              unconditional_covariates="drawn")
    assert before == {"guidance": 1.0, "unconditional_covariates": "null"}
    values, _ = run_folder.load_run(copy)  # its recorded sha256 checked: the new one
    assert (values["guidance"], values["unconditional_covariates"]) == (1.25, "drawn")
    assert weights == {name: run_folder.file_fingerprint(copy / name) for name in weights}
    saved = snapshot(copy)
    with pytest.raises(run_folder.RunError, match="not sampling settings: num_codes"):
        pretrained.set_sampling_settings(copy, num_codes=8)
    with pytest.raises(Exception, match="guidance"):
        pretrained.set_sampling_settings(copy, guidance=-1.0)
    assert snapshot(copy) == saved
    with pytest.raises(run_folder.RunError, match="not a shipped model"):
        pretrained.set_sampling_settings(run, guidance=1.25)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="no model shipped in pretrained/ixi-t1-128")
def test_the_shipped_ixi_model_samples_two_slices_seeded(tmp_path):
    from brainvq.generation import generate

    values, vqvae = run_folder.load_run(SHIPPED)
    assert values["image_size"] == 128
    first, _ = generate.generate(values, vqvae, SHIPPED, 2, seed=5)
    second, _ = generate.generate(values, vqvae, SHIPPED, 2, seed=5)
    assert first.shape == (2, 128, 128, 1)
    assert np.array_equal(first, second)
    assert 0.05 < first.mean() < 0.6  # a head on a dark background, not a blank or noise
    assert pretrained.work_dir(SHIPPED) == pathlib.Path("output") / "ixi-t1-128"
    # its data by name, no path of the machine it was made on; --data-dir points at it
    assert values["data_dir"] == "" and "125,20,20 by subject" in pretrained.data_description(
        SHIPPED)
    pointed, _ = run_folder.load_run(SHIPPED, {"data_dir": str(tmp_path)})
    assert pointed["covariates"] == str(tmp_path / "demographics.csv")
    # its 122 training subjects' age and sex, for --unconditional-covariates drawn
    recorded = np.asarray(run_folder.read_state(SHIPPED)["prior"]["subject_covariates"], np.float32)
    drawn = draw_subject_covariates(SHIPPED, 244, seed=0)
    assert recorded.shape == (122, 2) and drawn.shape == (244, 2)
    assert sorted(map(tuple, drawn.tolist())) == sorted(
        map(tuple, np.tile(recorded, (2, 1)).tolist()))  # each subject twice
    assert 0 <= drawn[:, 0].min() < 0.1 and 0.9 < drawn[:, 0].max() <= 1  # ages 20-79, scaled
    assert set(drawn[:, 1].tolist()) == {0.0, 1.0}  # F and M
    # the same through a Run: configuration, models and what the prior recorded at training
    run = Run.load(SHIPPED)
    assert run.values["top_k"] == values["top_k"] and run.vqvae.grid_size == 16
    counts = run.slice_position_counts
    assert counts.shape == (32,) and counts.sum() == 3828  # the 122 subjects' slices
    np.testing.assert_array_equal(run.subject_covariates(), recorded)
    assert run.prior is run.prior and run.prior.num_codes == 512  # loaded once


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="no model shipped in pretrained/ixi-t1-128")
def test_the_shipped_ixi_card_states_the_sampling_settings_the_model_samples_at():
    # an export copies the training run's settings: the card and hyperparameters.json once
    # disagreed, and the first test figures were taken at the run's settings, not the card's
    card = (SHIPPED / run_folder.MODEL_CARD_FILE).read_text()
    saved = json.loads((SHIPPED / "hyperparameters.json").read_text())
    stated = re.search(r"\*\*Temperature ([\d.]+), top-k (\d+)\*\*", card)
    assert stated, "the card names no temperature and top-k"
    assert float(stated[1]) == saved["temperature"] and int(stated[2]) == saved["top_k"]
    for name, key in (("Slice guidance", "guidance"),
                      ("Covariate guidance", "covariate_guidance")):
        stated = re.search(rf"\*\*{name} ([\d.]+)\*\*", card)
        assert stated and float(stated[1]) == saved[key], name
    # a sample that requests no covariate: drawn at a training subject's, as the card says
    assert ("**Age and sex drawn**" in card) == (saved["unconditional_covariates"] == "drawn")


@pytest.mark.skipif(not SHIPPED_VOLUMES.is_dir(),
                    reason="no volume model shipped in pretrained/ixi-t1-128-volumes")
def test_the_shipped_volume_model_draws_a_seeded_stack_and_refuses_a_damaged_copy(tmp_path):
    from brainvq.generation import stacks

    values, vqvae = run_folder.load_run(SHIPPED_VOLUMES)
    assert (values["slice_spacing"], values["slices_per_volume"]) == (2.0, 64)
    prior = run_folder.load_prior(SHIPPED_VOLUMES)
    volume_prior = run_folder.load_prior(SHIPPED_VOLUMES, "volume")

    def stack(seed):  # the first three slices of a volume, from its base up
        return stacks.sample_stack_codes(prior, volume_prior, 1, vqvae.grid_size, 3,
                                         top_k=values["top_k"], seed=seed,
                                         guidance=values["guidance"])

    codes = stack(5)
    np.testing.assert_array_equal(codes, stack(5))
    images = stacks.decode_stacks(vqvae, codes)
    assert images.shape == (1, 3, 128, 128)
    assert 0.02 < images.mean() < 0.6  # the base of a head on a dark background
    copy = tmp_path / "ixi-t1-128-volumes"
    shutil.copytree(SHIPPED_VOLUMES, copy)
    target = copy / run_folder.VOLUME_PRIOR_FILE
    flip_middle_byte(target)
    with pytest.raises(run_folder.RunError, match=re.escape(str(target))):
        run_folder.load_run(copy)
