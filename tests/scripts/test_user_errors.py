"""The cases that used to end in the wrong result with exit 0, or broke a finished run: each is
now a clear one-line error or the right result (one test per case, on a tiny PNG dataset)."""
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

keras = pytest.importorskip("keras")
# train.py, predict.py, similarity.py end to end, their evaluation networks kept small
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quick_evaluation")]

import benchmark  # noqa: E402
import hyperparameters  # noqa: E402
import predict  # noqa: E402
import similarity  # noqa: E402
import train  # noqa: E402
from brainvq.runs import lock, run_folder  # noqa: E402
from brainvq.training import pipeline  # noqa: E402
from helpers import REPO, TINY, write_oasis_layout  # noqa: E402


def tiny_train(data_dir, output_dir, *extra, epochs="1"):
    return ["--data-dir", str(data_dir), "--epochs", epochs, "--prior-epochs", epochs,
            "--output-dir", str(output_dir), *TINY, *extra]


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory):
    """A finished tiny run trained from its data's parent folder with a relative --data-dir and
    no --images-dir."""
    root = tmp_path_factory.mktemp("relative")
    write_oasis_layout(root / "oasis")
    start = os.getcwd()
    os.chdir(root)
    try:
        train.main(tiny_train("oasis", "run"))
    finally:
        os.chdir(start)
    return root / "run"


@pytest.fixture
def run_copy(relative_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(relative_run, copy)
    return copy


def fingerprints(folder):
    return {path.name: run_folder.file_fingerprint(path) for path in pathlib.Path(folder).iterdir()
            if path.is_file() and path.name != run_folder.LOCK_FILE}


# --- wrong data, no error ---------------------------------------------------------------------

def test_a_named_data_folder_that_does_not_exist_is_an_error_not_the_demo(tmp_path):
    with pytest.raises(SystemExit, match="data folder .*nowhere does not exist"):
        train.main(tiny_train(tmp_path / "nowhere", tmp_path / "run"))
    assert not (tmp_path / "run" / run_folder.VQVAE_FILE).exists()


def test_the_run_finds_its_data_from_another_directory(relative_run, tmp_path, monkeypatch,
                                                       capsys):
    saved = json.loads((relative_run / hyperparameters.HYPERPARAMETERS_FILE).read_text())
    assert os.path.isabs(saved["data_dir"])
    monkeypatch.chdir(tmp_path)
    similarity.main(["--output-dir", str(relative_run), "--images-dir", str(tmp_path / "i")])
    assert "OASIS PNG slices from" in capsys.readouterr().out


def test_similarity_takes_the_runs_subject_split_and_refuses_another(relative_run, tmp_path,
                                                                    capsys):
    figures = ["--images-dir", str(tmp_path / "i")]
    similarity.main(["--output-dir", str(relative_run), "--split", "0.8,0.1,0.1", *figures])
    assert "metrics over 6 test slices" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="this run split its subjects 0.8,0.1,0.1"):
        similarity.main(["--output-dir", str(relative_run), "--split", "125,20,20", *figures])
    with pytest.raises(SystemExit):
        similarity.main(["--output-dir", str(relative_run), "--split", "tset", *figures])
    assert "125,20,20" in capsys.readouterr().err


def test_figures_of_a_run_go_to_its_own_folder_by_default(relative_run):
    assert (relative_run / "images" / "vqvae_loss.png").is_file()
    assert (relative_run / "images" / "prior_loss.png").is_file()


def test_a_slice_position_no_training_slice_had_is_refused(relative_run, tmp_path):
    with pytest.raises(SystemExit, match=r"--slice 20: no training slice had .*positions 0-5"):
        predict.main(["--output-dir", str(relative_run), "--images-dir", str(tmp_path),
                      "--samples", "1", "--slice", "20"])


def test_resume_of_a_folder_that_does_not_exist_says_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(SystemExit, match="nothing to resume: .*none does not exist"):
        train.main(["--resume", "--output-dir", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()


def test_nifti_only_flags_are_refused_for_png_data(relative_run, tmp_path):
    data = relative_run.parent / "oasis"
    for flag, value in (("--slice-axis", "coronal"), ("--crop-to-head", "false")):
        with pytest.raises(SystemExit, match=f"{flag} applies only to a folder of 3D NIfTI"):
            train.main(tiny_train(data, tmp_path / "run", flag, value))
    assert not (tmp_path / "run" / hyperparameters.HYPERPARAMETERS_FILE).exists()


def test_benchmark_steps_must_be_positive(capsys):
    with pytest.raises(SystemExit) as refusal:
        benchmark.main(["quality", "--steps", "0"])
    assert refusal.value.code == 2 and "must be >= 1" in capsys.readouterr().err


# --- a finished run broken --------------------------------------------------------------------

def test_training_the_vqvae_on_alone_is_refused_before_touching_the_run(run_copy):
    before = fingerprints(run_copy)
    with pytest.raises(SystemExit, match="would leave its prior trained over the earlier"):
        train.main(["--stage", "vqvae", "--resume", "--epochs", "2", "--output-dir",
                    str(run_copy)])
    assert fingerprints(run_copy) == before


def test_training_both_on_retrains_the_prior_over_the_new_vqvae(run_copy, tmp_path, capsys):
    train.main(["--resume", "--epochs", "2", "--output-dir", str(run_copy), "--run-eagerly"])
    assert "the prior trained over the earlier one is trained again" in capsys.readouterr().out
    assert run_folder.epochs_done(run_copy, "vqvae") == 2
    run_folder.check_prior_matches_vqvae(run_copy)  # sampling works
    predict.main(["--output-dir", str(run_copy), "--images-dir", str(tmp_path), "--samples", "1"])


def test_a_samples_folder_holds_one_calls_samples(relative_run, tmp_path, capsys):
    for count in (3, 1):
        predict.main(["--output-dir", str(relative_run), "--images-dir", str(tmp_path),
                      "--samples", str(count)])
    assert sorted(path.name for path in (tmp_path / "samples").iterdir()) == ["sample_000.png"]


# --- messages that mislead --------------------------------------------------------------------

def test_a_moved_run_keeps_its_figures_in_its_new_folder(relative_run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(relative_run, moved)
    train.main(["--resume", "--output-dir", str(moved)])
    saved = json.loads((moved / hyperparameters.HYPERPARAMETERS_FILE).read_text())
    assert saved["images_dir"] == str(moved / "images")


def test_resume_starts_from_the_runs_saved_values(run_copy, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    train.main(["--resume", "--output-dir", str(run_copy)])
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "all 1 epochs already done" in captured.out
    assert list(elsewhere.iterdir()) == []  # the figures stay with the run
    assert (run_copy / "images" / "vqvae_loss.png").is_file()


def test_a_hand_edited_architecture_value_is_not_reported_as_flags(run_copy, tmp_path):
    path = run_copy / hyperparameters.HYPERPARAMETERS_FILE
    path.write_text(json.dumps(dict(json.loads(path.read_text()), num_codes=32)))
    with pytest.raises(SystemExit) as refusal:
        predict.main(["--output-dir", str(run_copy), "--images-dir", str(tmp_path)])
    message = str(refusal.value)
    assert "num_codes: the checkpoint has 16, hyperparameters.json says 32" in message
    assert "was edited" in message and "drop the flags" not in message


@pytest.mark.parametrize("downsamples,advice", [("5", "--num-downsamples 3 or fewer"),
                                                ("6", "--num-downsamples 3 or fewer")])
def test_a_code_grid_under_4x4_is_refused(downsamples, advice, tmp_path):
    with pytest.raises(SystemExit) as refusal:
        train.main(["--image-size", "32", "--num-downsamples", downsamples,
                    "--output-dir", str(tmp_path / "run")])
    assert "at least 4x4" in str(refusal.value) and advice in str(refusal.value)
    assert "64 or 64" not in str(refusal.value)


def test_an_output_dir_that_is_a_file_is_named_as_such(tmp_path):
    not_a_folder = tmp_path / "run.txt"
    not_a_folder.write_text("")
    for script in (predict, similarity):
        with pytest.raises(SystemExit, match="run.txt is a file, not a run folder"):
            script.main(["--output-dir", str(not_a_folder)])


def test_too_many_train_subjects_of_png_data_names_the_flag_and_no_split(relative_run):
    with pytest.raises(SystemExit) as refusal:
        benchmark.main(["quality", "--data-dir", str(relative_run.parent / "oasis"),
                        "--train-subjects", "50", "--steps", "1", "--image-size", "32"])
    assert "--train-subjects 50" in str(refusal.value) and "--split" not in str(refusal.value)


def test_resume_with_other_data_names_the_folder(run_copy, tmp_path):
    other = write_oasis_layout(tmp_path / "other", cases=(3, 1, 1))
    with pytest.raises(SystemExit, match=f"other data than --data-dir {other} gives"):
        train.main(["--resume", "--data-dir", str(other), "--output-dir", str(run_copy)])


def test_resume_finds_the_same_data_by_another_path(relative_run, run_copy, tmp_path, capsys):
    # relative_run was trained with the relative --data-dir oasis from its parent folder; here
    # the same data by its absolute path, and a copy of it in another folder.
    moved = tmp_path / "moved"
    shutil.copytree(relative_run.parent / "oasis", moved)
    for data in (relative_run.parent / "oasis", moved):
        train.main(["--resume", "--data-dir", str(data), "--output-dir", str(run_copy)])
        assert "already done" in capsys.readouterr().out


def test_the_resume_command_after_ctrl_c_is_quoted(run_copy, tmp_path, monkeypatch):
    spaced = tmp_path / "my run"
    shutil.move(run_copy, spaced)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_vqvae", interrupt)
    with pytest.raises(SystemExit) as stop:
        train.main(["--resume", "--epochs", "3", "--output-dir", str(spaced)])
    command = str(stop.value).split("continue with: ", 1)[1]
    arguments = shlex.split(command)
    assert arguments[arguments.index("--output-dir") + 1] == str(spaced)


@pytest.mark.parametrize("script", [predict, similarity])
def test_ctrl_c_in_predict_and_similarity_is_one_line(script, relative_run, tmp_path,
                                                      monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_folder, "load_run", interrupt)
    with pytest.raises(SystemExit, match="^interrupted: "):
        script.main(["--output-dir", str(relative_run), "--images-dir", str(tmp_path)])


MISSING_BACKEND = next((name for name in ("openvino", "torch", "jax")
                        if importlib.util.find_spec(name) is None), None)


@pytest.mark.parametrize("backend,message", [("jaxx", "is not a Keras backend"),
                                             (MISSING_BACKEND, "is not installed")])
def test_a_keras_backend_that_is_misspelled_or_missing_is_one_line(backend, message):
    if backend is None:
        pytest.skip("every Keras backend is installed here")
    result = subprocess.run([sys.executable, "predict.py"], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "KERAS_BACKEND": backend}, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_things_in_the_way_of_the_figures_are_named(relative_run, tmp_path):
    blocked = tmp_path / "a"
    blocked.mkdir()
    (blocked / "samples").write_text("")
    with pytest.raises(SystemExit, match="samples is a file, not a folder"):
        predict.main(["--output-dir", str(relative_run), "--images-dir", str(blocked),
                      "--samples", "1"])
    folder = tmp_path / "b"
    (folder / "reconstructions.png").mkdir(parents=True)
    with pytest.raises(SystemExit, match="reconstructions.png is a folder"):
        predict.main(["--output-dir", str(relative_run), "--images-dir", str(folder)])


def move_case(root, case, to_split):
    """Moves every slice of `case_NNN` into another split's folder of an OASIS PNG layout."""
    target = root / f"keras_png_slices_{to_split}"
    for path in root.glob(f"keras_png_slices_*/case_{case:03d}_slice_*.png"):
        if path.parent != target:
            path.rename(target / path.name)


def test_a_run_scores_only_the_subjects_it_never_saw(run_copy, tmp_path, capsys):
    """The run records its subjects by name; another folder whose test split holds one of its
    training subjects beside a new one is scored on the new one only, and one that holds only
    training subjects is refused, naming them."""
    state = json.loads((run_copy / run_folder.STATE_FILE).read_text())
    assert state["subjects"] == {"train": ["case_001", "case_002"], "validate": ["case_003"],
                                 "test": ["case_004"]}
    other = write_oasis_layout(tmp_path / "other", cases=(2, 1, 2))  # case_001 .. case_005
    move_case(other, 1, "test")  # a training subject of the run among the test slices
    predict.main(["--output-dir", str(run_copy), "--data-dir", str(other), "--samples", "0"])
    out = capsys.readouterr().out
    assert "scoring 2 held-out subject(s) of the 3 test subjects" in out
    assert "1 in its training split (case_001)" in out
    assert "over 12 test slices" in out  # case_004 and case_005, 6 slices each
    only_trained = write_oasis_layout(tmp_path / "trained", cases=(2, 1, 1))
    for path in (only_trained / "keras_png_slices_test").iterdir():
        path.unlink()
    move_case(only_trained, 2, "test")
    with pytest.raises(SystemExit, match="none of the 1 test subjects .* is held out.*"
                                         "1 in its training split \\(case_002\\)"):
        similarity.main(["--output-dir", str(run_copy), "--data-dir", str(only_trained),
                         "--samples", "0"])


def test_similarity_volumes_on_a_slice_run_is_refused_before_writing_anything(run_copy):
    before = fingerprints(run_copy)
    images_before = sorted((run_copy / "images").rglob("*"))
    with pytest.raises(SystemExit, match="--volumes needs a run cut as whole stacks"):
        similarity.main(["--output-dir", str(run_copy), "--volumes", "2", "--samples", "2"])
    assert fingerprints(run_copy) == before
    assert sorted((run_copy / "images").rglob("*")) == images_before


def test_one_line_errors_instead_of_tracebacks(run_copy, tmp_path, capsys):
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a volume")
    for command in (["slice-positions", str(tmp_path / "missing.nii.gz")],
                    ["slice-positions", str(junk)]):
        with pytest.raises(SystemExit, match="^error: .*not a readable NIfTI file"):
            benchmark.main(command)
    for parse, argv, message in (
            (benchmark.main, ["sampling", "--naive-positions", "-1"], "must be >= 0"),
            (predict.main, ["--output-dir", str(run_copy), "--count", "0", "--samples", "1"],
             "must be >= 1")):
        with pytest.raises(SystemExit):
            parse(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--volumes 1000000: .* hours; draw at most 1000"):
        predict.main(["--output-dir", str(run_copy), "--volumes", "1000000"])


def test_an_explicit_data_dir_with_no_layout_does_not_point_at_the_demo(tmp_path):
    from brainvq.data import layouts
    from brainvq.errors import DatasetError

    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="holds no known data layout") as refusal:
        layouts.data_layout(tmp_path)
    assert "demo" not in str(refusal.value)


def test_a_second_predict_into_the_same_images_dir_is_refused_while_the_first_runs(
        run_copy, tmp_path):
    images = tmp_path / "images"
    with lock.RunLock(images, flag="--images-dir"):  # as a first predict.py holds it
        with pytest.raises(SystemExit, match=f"{images} is in use .* use another --images-dir"):
            predict.main(["--output-dir", str(run_copy), "--images-dir", str(images),
                          "--samples", "1"])
    assert not list(images.glob("samples/*"))
    predict.main(["--output-dir", str(run_copy), "--images-dir", str(images), "--samples", "1"])
    assert len(list(images.glob("samples/sample_*.png"))) == 1
    assert not (images / run_folder.LOCK_FILE).exists()
