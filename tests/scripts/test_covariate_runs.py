"""train.py --covariates FILE --condition-on age,sex and predict.py --age --sex end to end on a
tiny PNG dataset: the run records each covariate's range or classes, requests outside them and
runs without covariates are refused in one line, subjects without a row are refused or
dropped."""
import pytest

keras = pytest.importorskip("keras")
# train.py, predict.py end to end, their evaluation networks kept small
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quick_evaluation")]

import hyperparameters  # noqa: E402
import predict  # noqa: E402
import train  # noqa: E402
from brainvq.generation.generate import draw_subject_covariates  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from helpers import REPO, TINY, write_oasis_layout  # noqa: E402

TABLE = "subject,age,sex\n1,30,F\n2,60,M\n3,45,F\n4,50,M\n"


@pytest.fixture(scope="module")
def covariate_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("covariates")
    data = write_oasis_layout(root / "oasis")  # cases 1, 2 train; 3 validate; 4 test
    (root / "table.csv").write_text(TABLE)
    train.main(["--data-dir", str(data), "--covariates", str(root / "table.csv"),
                "--condition-on", "age,sex", "--epochs", "1", "--prior-epochs", "1",
                "--output-dir", str(root / "run"), *TINY])
    return root


def test_the_run_records_the_covariates_of_its_training_subjects(covariate_run):
    import json
    import os

    saved = json.loads((covariate_run / "run" / "hyperparameters.json").read_text())
    assert os.path.isabs(saved["covariates"]) and saved["condition_on"] == "age,sex"
    specs = run_folder.read_state(covariate_run / "run")["prior"]["covariates"]
    assert specs == [{"name": "age", "kind": "continuous", "low": 30.0, "high": 60.0},
                     {"name": "sex", "kind": "categorical", "classes": ["F", "M"]}]


def test_unconditional_samples_draw_a_training_subjects_covariates_unguided(covariate_run,
                                                                            monkeypatch):
    import numpy as np

    from brainvq.generation import generate, sampling

    run = covariate_run / "run"
    # one row per training subject (cases 1 and 2: 30 F, 60 M), as the prior takes them
    recorded = run_folder.read_state(run)["prior"]["subject_covariates"]
    np.testing.assert_allclose(recorded, [[0.0, 0.0], [1.0, 1.0]])
    drawn = draw_subject_covariates(run, 5, seed=3)
    _, counts = np.unique(drawn, axis=0, return_counts=True)
    assert sorted(counts) == [2, 3]  # stratified: each subject 5 / 2 times, give or take one
    np.testing.assert_array_equal(drawn, draw_subject_covariates(run, 5, seed=3))

    calls = []
    sample_codes = sampling.sample_codes
    monkeypatch.setattr(sampling, "sample_codes",
                        lambda *args, **kwargs: calls.append(kwargs) or sample_codes(*args,
                                                                                     **kwargs))
    values, vqvae = run_folder.load_run(run)
    requests = [generate.Request(4), generate.Request(2, 1, np.array([0.5, 1.0], np.float32)),
                generate.Request(3, 1)]
    null = generate.generate_together(dict(values, unconditional_covariates="null",
                                           covariate_guidance=2.0), vqvae, run, requests)
    drawn = generate.generate_together(dict(values, unconditional_covariates="drawn",
                                            covariate_guidance=2.0), vqvae, run, requests)
    rows, scales = calls[1]["covariates"], calls[1]["covariate_guidance"]
    assert np.isnan(calls[0]["covariates"][[0, 1, 2, 3, 6, 7, 8]]).all()  # null: none given
    # drawn: every sample that requests none, at a slice position or not, unguided
    assert {tuple(row) for row in rows[[0, 1, 2, 3, 6, 7, 8]].tolist()} <= {(0, 0), (1, 1)}
    np.testing.assert_array_equal(scales, [1, 1, 1, 1, 2, 2, 1, 1, 1])
    np.testing.assert_array_equal(rows[4:6], [[0.5, 1.0], [0.5, 1.0]])  # requests unchanged
    assert not np.array_equal(null[0][1], drawn[0][1])  # the drawn rows change the samples
    assert not np.array_equal(null[2][1], drawn[2][1])
    np.testing.assert_array_equal(null[1][1], drawn[1][1])  # and nothing else


def test_drawn_covariates_of_a_run_without_the_record_are_refused_before_any_work(
        covariate_run, tmp_path):
    import json
    import shutil

    older = tmp_path / "older"  # a run trained before the subjects' rows were recorded
    shutil.copytree(covariate_run / "run", older)
    state = run_folder.read_state(older)
    del state["prior"]["subject_covariates"]
    (older / "training_state.json").write_text(json.dumps(state))
    with pytest.raises(SystemExit, match="prior records no training subjects' covariates.*"
                                         "--unconditional-covariates null"):
        predict.main(["--output-dir", str(older), "--images-dir", str(tmp_path / "figures"),
                      "--samples", "1", "--unconditional-covariates", "drawn"])
    assert not (tmp_path / "figures" / "reconstructions.png").exists()


def test_samples_at_an_age_and_sex_and_refusals(covariate_run, tmp_path, capsys):
    run = str(covariate_run / "run")
    predict.main(["--output-dir", run, "--images-dir", str(tmp_path), "--samples", "2",
                  "--age", "40", "--sex", "F", "--covariate-guidance", "2"])
    assert len(list((tmp_path / "samples").glob("sample_*.png"))) == 2
    assert not list(tmp_path.glob("samples_by_age.png"))
    assert "add --by-covariate" in capsys.readouterr().out
    predict.main(["--output-dir", run, "--images-dir", str(tmp_path), "--samples", "2",
                  "--by-covariate"])
    for name in ("age", "sex"):
        assert (tmp_path / f"samples_by_{name}.png").stat().st_size > 1000, name
    with pytest.raises(SystemExit, match="--age 90: outside the training range 30 to 60"):
        predict.main(["--output-dir", run, "--images-dir", str(tmp_path), "--samples", "1",
                      "--age", "90"])
    with pytest.raises(SystemExit, match=r"--sex X: a class the training data did not have "
                                         r"\(it had F, M\)"):
        predict.main(["--output-dir", run, "--images-dir", str(tmp_path), "--samples", "1",
                      "--sex", "X"])
    with pytest.raises(SystemExit, match="trained on the covariates age, sex, not height"):
        predict.main(["--output-dir", run, "--images-dir", str(tmp_path), "--samples", "1",
                      "--condition", "height=180"])
    for flags, message in ((["--condition", "age=30", "--age", "40"], "age is asked for twice"),
                           (["--condition", "age"], "give NAME=VALUE"),
                           (["--condition", "age="], "give NAME=VALUE")):
        with pytest.raises(SystemExit, match=message):
            predict.main(["--output-dir", run, "--images-dir", str(tmp_path), "--samples", "1",
                          *flags])
    with pytest.raises(SystemExit, match="--by-covariate draws its figures beside --samples"):
        predict.main(["--output-dir", run, "--images-dir", str(tmp_path), "--by-covariate"])


def test_a_run_without_covariates_refuses_them(tmp_path):
    plain = REPO / "pretrained" / "ixi-t1-128-volumes"  # a trained run without covariates
    assert not hyperparameters.load(plain)["condition_on"]
    with pytest.raises(SystemExit, match="was trained without covariates: drop --age"):
        predict.main(["--output-dir", str(plain), "--images-dir", str(tmp_path), "--samples",
                      "1", "--age", "40"])
    with pytest.raises(run_folder.RunError, match="records no training subjects' covariates"):
        draw_subject_covariates(plain, 2, seed=0)


def test_subjects_without_a_row_are_refused_by_name_or_dropped(covariate_run, tmp_path,
                                                               capsys):
    table = tmp_path / "partial.csv"
    table.write_text("subject,age,sex\n1,30,F\n3,45,F\n4,50,M\n")  # no case 2
    arguments = ["--data-dir", str(covariate_run / "oasis"), "--covariates", str(table),
                 "--condition-on", "age", "--epochs", "1", "--prior-epochs", "1", *TINY]
    with pytest.raises(SystemExit, match="no row in the covariates file: case_002_slice_0"):
        train.main([*arguments, "--output-dir", str(tmp_path / "refused")])
    train.main([*arguments, "--output-dir", str(tmp_path / "dropped"), "--skip-bad", "true"])
    assert "left out 6 slice(s) whose subject has no row" in capsys.readouterr().out


def test_similarity_checks_the_covariates_with_rulers(covariate_run, tmp_path, capsys,
                                                      monkeypatch):
    import similarity
    from brainvq.runs import run_folder

    loaded = []
    load_prior = run_folder.load_prior
    monkeypatch.setattr(run_folder, "load_prior",
                        lambda *args, **kwargs: loaded.append(args) or load_prior(*args, **kwargs))
    similarity.main(["--output-dir", str(covariate_run / "run"), "--images-dir", str(tmp_path),
                     "--samples", "4", "--feature-network", "no",
                     "--covariates", str(covariate_run / "table.csv")])
    out = capsys.readouterr().out
    assert "Covariates: rulers trained on 12 real training slices" in out
    assert "age r: held-out real" in out and "sex accuracy: held-out real" in out
    assert "shuffled control" in out
    assert "age samples anatomically plausible:" in out and "highest tenth" in out
    assert len(loaded) == 1  # the sample and covariate reports share one prior and sampler


def test_utility_benchmark_trains_on_real_synthetic_and_mixed_slices_and_keeps_the_samples(
        covariate_run, tmp_path, capsys, monkeypatch):
    import json

    import benchmark
    from brainvq.generation import generate

    cache, figure = tmp_path / "cache", tmp_path / "utility.png"
    arguments = ["utility", "--output-dir", str(covariate_run / "run"), "--subjects", "1,all",
                 "--multiples", "1,2", "--seeds", "0", "--images-seen", "64", "--report-test",
                 "--cache-dir", str(cache), "--figure", str(figure)]
    summary = benchmark.main(arguments)
    out = capsys.readouterr().out
    assert list(summary) == ["real 1", "real 2", "synthetic x1", "synthetic x2",
                             "real 1 + synthetic x1", "real 2 + synthetic x1",
                             "synthetic x1, labels shuffled"]
    # 12 real training slices of 2 subjects; synthetic sets of 12 and 24 at their label rows
    sizes = {name: entry["slices"] for name, entry in summary.items()}
    assert sizes["real 2"] == 12 and sizes["synthetic x1"] == 12 and sizes["synthetic x2"] == 24
    assert sizes["real 1"] == 6 and sizes["real 1 + synthetic x1"] == 18
    for entry in summary.values():
        assert set(entry) == {"slices", "seeds", "validate", "test"}
        figures = entry["validate"]["mean"]
        assert 0 <= figures["sex accuracy"] <= 1 and 0 <= figures["position within 2"] <= 1
        assert figures["age MAE"] >= 0
    assert "comparisons (validation):" in out and "shuffled control" in out
    assert figure.is_file()
    (folder,) = cache.iterdir()  # one synthetic set per model and settings: two rounds of 12
    chunks = sorted(path.name for path in folder.glob("*.npz"))
    assert chunks == ["seed0_round0_0000.npz", "seed0_round1_0000.npz"]
    rows = json.loads((folder / "utility.json").read_text())["rows"]
    assert len(rows) == 7

    def no_sampling(*args, **kwargs):
        raise AssertionError("a kept synthetic set was sampled again")

    monkeypatch.setattr(generate, "generate", no_sampling)
    again = benchmark.main(arguments)  # every row and synthetic slice kept: nothing redone
    assert again == summary


def test_a_bad_covariates_file_is_refused_before_any_training(covariate_run, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,age,sex\n1,30,F\n2,forty,M\n3,45,F\n4,50,M\n")
    with pytest.raises(SystemExit, match="'forty' \\(subject 2, line 3"):
        train.main(["--data-dir", str(covariate_run / "oasis"), "--covariates", str(bad),
                    "--condition-on", "age", "--epochs", "1", "--prior-epochs", "1",
                    "--output-dir", str(tmp_path / "run"), *TINY])
    assert not (tmp_path / "run" / run_folder.VQVAE_FILE).exists()  # refused before the VQ-VAE


def test_a_covariates_file_without_condition_on_is_said_unused_and_not_recorded(
        covariate_run, tmp_path, capsys):
    train.main(["--stage", "vqvae", "--data-dir", str(covariate_run / "oasis"), "--covariates",
                str(covariate_run / "table.csv"), "--epochs", "1",
                "--output-dir", str(tmp_path / "run"), *TINY])
    assert "is not used: no --condition-on" in capsys.readouterr().out
    import hyperparameters

    assert hyperparameters.load(tmp_path / "run")["covariates"] == ""


def test_resuming_the_prior_with_another_covariates_file_is_refused(covariate_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(covariate_run / "run", run)
    other = tmp_path / "other.csv"
    other.write_text("subject,age,sex\n1,20,F\n2,80,M\n3,45,F\n4,50,M\n")
    with pytest.raises(SystemExit, match="other covariates than the prior stage .*age 30-60.*"
                                         "age 20-80"):
        train.main(["--stage", "prior", "--resume", "--data-dir", str(covariate_run / "oasis"),
                    "--covariates", str(other), "--condition-on", "age,sex",
                    "--prior-epochs", "2", "--output-dir", str(run), *TINY])
