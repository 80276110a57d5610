"""Run folders never lose, overwrite or mix work (run_folder.py, train.py): one test per way a user
lost or mixed work before, each on a tiny PNG dataset."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")
# train.py, predict.py, similarity.py end to end, their evaluation networks kept small
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quick_evaluation")]

import hyperparameters  # noqa: E402
import train  # noqa: E402
from brainvq.generation.generate import draw_slice_positions  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from brainvq.runs.lock import RunLock  # noqa: E402
from brainvq.training import stages  # noqa: E402
from helpers import REPO, TINY, write_oasis_layout  # noqa: E402


def train_args(data_dir, output_dir, *extra, stage="all", epochs="1"):
    return ["--stage", stage, "--data-dir", str(data_dir), "--epochs", epochs,
            "--prior-epochs", epochs, "--output-dir", str(output_dir),
            "--images-dir", str(pathlib.Path(output_dir).parent / "images"), *TINY, *extra]


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    train.main(train_args(data_dir, output_dir))
    return output_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def snapshot(folder):
    return {path.name: run_folder.file_fingerprint(path) for path in pathlib.Path(folder).iterdir()
            if path.is_file()}


def test_a_finished_run_is_not_overwritten_without_resume_or_overwrite(data_dir, run_copy):
    before = snapshot(run_copy)
    with pytest.raises(SystemExit) as refusal:
        train.main(train_args(data_dir, run_copy))
    message = str(refusal.value)
    assert "already holds a trained vqvae and prior stage" in message
    assert "--resume" in message and "--overwrite" in message
    assert snapshot(run_copy) == before
    # Retraining only the VQ-VAE would leave the prior stale: refused as well.
    with pytest.raises(SystemExit, match="prior"):
        train.main(train_args(data_dir, run_copy, stage="vqvae"))
    assert snapshot(run_copy) == before


def test_overwrite_of_the_vqvae_removes_the_prior_trained_over_it(data_dir, run_copy, capsys):
    train.main(train_args(data_dir, run_copy, "--overwrite", "--seed", "7", stage="vqvae"))
    assert not (run_copy / run_folder.PRIOR_FILE).exists()
    assert "prior" not in run_folder.read_state(run_copy)
    assert "removed the earlier prior stage" in capsys.readouterr().out


def test_a_failed_run_leaves_the_good_one_intact(run_copy, tmp_path):

    bad_data = tmp_path / "some_file"
    bad_data.write_text("not a folder")
    before = snapshot(run_copy)
    with pytest.raises(SystemExit):
        train.main(train_args(bad_data, run_copy, "--overwrite", "--image-size", "64",
                              "--num-codes", "64"))
    assert snapshot(run_copy) == before
    values, _ = run_folder.load_run(run_copy)
    assert values["image_size"] == 32 and values["num_codes"] == 16


def test_a_prior_over_another_vqvae_is_refused(data_dir, run_copy, finished_run):
    from brainvq.generation import generate

    # The VQ-VAE file changes under the prior (as after `--stage vqvae` on an older version).
    shutil.copyfile(run_copy / run_folder.last_checkpoint_name(run_folder.VQVAE_FILE),
                    run_copy / run_folder.VQVAE_FILE)
    state = run_folder.read_state(run_copy)
    state["prior"]["vqvae_fingerprint"] = "0" * 64
    run_folder.write_state(run_copy, state)
    values, vqvae = run_folder.load_run(run_copy)
    with pytest.raises(run_folder.RunError, match="trained over another VQ-VAE.*--stage prior"):
        generate.generate(values, vqvae, run_copy, 2)
    with pytest.raises(SystemExit, match="trained over another VQ-VAE"):
        train.main(train_args(data_dir, run_copy, "--resume", stage="prior", epochs="2"))


def test_a_second_writer_is_refused_by_the_lock_and_a_stale_lock_is_taken_over(
        data_dir, run_copy, capsys):
    lock = run_copy / run_folder.LOCK_FILE
    lock.write_text(json.dumps({"pid": os.getpid(), "host": __import__("socket").gethostname(),
                                "command": "python train.py (the other run)"}))
    with pytest.raises(SystemExit) as refusal:
        train.main(train_args(data_dir, run_copy, "--resume", epochs="2"))
    assert f"in use by process {os.getpid()}" in str(refusal.value)
    assert lock.exists()  # the other run's lock is left alone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": __import__("socket").gethostname(),
                                "command": "python train.py"}))
    with RunLock(run_copy):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    assert "stale lock" in capsys.readouterr().err


def test_a_foreign_or_corrupt_checkpoint_is_named_and_resume_falls_back_to_the_previous_one(
        data_dir, tmp_path):
    import predict

    output_dir = tmp_path / "run"
    train.main(train_args(data_dir, output_dir, stage="vqvae", epochs="2"))
    last = output_dir / run_folder.last_checkpoint_name(run_folder.VQVAE_FILE)
    assert run_folder.previous_name(last).is_file()  # epoch 1's checkpoint, kept by epoch 2's save
    # Another checkpoint in the last one's place (epoch 1's here; another run's file is the same
    # case): refused by name, instead of resuming the wrong weights at the state file's epoch.
    own = last.read_bytes()
    shutil.copyfile(run_folder.previous_name(last), last)
    with pytest.raises(SystemExit, match="vqvae_last.keras is not the checkpoint .* records"):
        train.main(train_args(data_dir, output_dir, "--resume", stage="vqvae", epochs="3"))
    last.write_bytes(own)
    for path in (last, output_dir / run_folder.VQVAE_FILE):
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])  # cut in half
    with pytest.raises(run_folder.CorruptCheckpoint, match=r"vqvae.keras is corrupt"):
        run_folder.load_run(output_dir)
    with pytest.raises(SystemExit, match="corrupt"):
        predict.main(["--output-dir", str(output_dir), "--images-dir", str(tmp_path / "img")])
    model, done = stages.load_for_resume(
        output_dir, "vqvae", hyperparameters.resolve(train.parse_args(
            train_args(data_dir, output_dir, stage="vqvae"))))
    assert done == 1 and model is not None
    train.main(train_args(data_dir, output_dir, "--resume", stage="vqvae", epochs="3"))
    assert run_folder.epochs_done(output_dir, "vqvae") == 3
    run_folder.load_run(output_dir)  # a good best checkpoint again


@pytest.mark.parametrize("edit,message", [
    (lambda values: values.update(num_codes="abc"), "num_codes must be a whole number"),
    (lambda values: values.pop("code_dim"), "missing key 'code_dim'"),
    (lambda values: values.update(batch_size=0), "batch_size must be >= 1"),
])
def test_a_hand_edited_hyperparameters_file_is_reported_as_such(run_copy, edit, message):

    path = run_copy / hyperparameters.HYPERPARAMETERS_FILE
    values = json.loads(path.read_text())
    edit(values)
    path.write_text(json.dumps(values))
    with pytest.raises(hyperparameters.InvalidHyperparameters, match=message):
        run_folder.load_run(run_copy)


def test_keys_newer_than_a_run_take_the_value_that_run_used(run_copy):
    path = run_copy / hyperparameters.HYPERPARAMETERS_FILE
    values = json.loads(path.read_text())
    for key in hyperparameters.LEGACY_VALUES:
        values.pop(key)
    path.write_text(json.dumps(values))
    loaded = hyperparameters.load(run_copy)
    assert loaded["prior_attention_blocks"] == 0 and loaded["prior_augment_copies"] == 0


# The keys of hyperparameters.json as the version before the NIfTI, layout and architecture
# issues wrote it: such a run must still load (every key added since is in LEGACY_VALUES).
PREVIOUS_KEYS = (
    "batch_size", "channels", "code_dim", "commitment_cost", "data_dir", "dead_code_threshold",
    "demo_copies", "ema_decay", "epochs", "image_size", "images_dir", "learning_rate",
    "mixed_precision", "num_codes", "num_downsamples", "num_residual_blocks",
    "num_slice_positions", "output_dir", "patience", "prior_attention_blocks",
    "prior_attention_heads", "prior_augment_copies", "prior_augment_shift", "prior_batch_size",
    "prior_dropout", "prior_epochs", "prior_filters", "prior_kernel_size", "prior_layers",
    "prior_learning_rate", "prior_patience", "prior_position_embedding", "prior_weight_decay",
    "seed", "skip_bad", "slices_per_volume", "ssim_warmup_steps", "ssim_weight", "ssim_window",
    "steps_per_epoch", "strategy", "temperature", "top_k", "use_ema")


def test_a_run_written_by_the_previous_version_loads(run_copy):
    path = run_copy / hyperparameters.HYPERPARAMETERS_FILE
    values = json.loads(path.read_text())
    path.write_text(json.dumps({key: values[key] for key in PREVIOUS_KEYS}))
    loaded, _ = run_folder.load_run(run_copy)
    assert loaded["crop_to_head"] is False and loaded["adversarial_weight"] == 0.0
    assert loaded["attention"] is False and loaded["split"] == "0.8,0.1,0.1"


@pytest.mark.parametrize("flags,message", [
    (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["--epochs", "-1"], "argument --epochs: must be >= 1, got -1"),
    (["--learning-rate", "0"], "argument --learning-rate: must be > 0.0"),
    (["--prior-kernel-size", "4"], "must be odd"),
    (["--strategy", "cluster"], "must be one of none, mirrored, multiworker"),
])
def test_bad_flag_values_are_refused_in_one_line(flags, message):
    result = subprocess.run([sys.executable, "train.py", *flags], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr


def test_predict_and_similarity_read_the_sampling_flags_alike():
    import predict
    import similarity

    flags = ["--temperature", "0.7", "--top-k", "5", "--seed", "3", "--unconditional", "null"]
    for script in (predict, similarity):
        args = script.parse_args(flags)
        assert (args.temperature, args.top_k, args.seed, args.unconditional) == (0.7, 5, 3,
                                                                                 "null")
        for bad in (["--seed", "-1"], ["--temperature", "0"], ["--top-k", "-2"]):
            with pytest.raises(SystemExit) as refusal:
                script.parse_args(bad)
            assert refusal.value.code == 2


def test_predict_refuses_bad_sample_counts_and_slices(finished_run, tmp_path):
    import predict

    with pytest.raises(SystemExit) as refusal:
        predict.parse_args(["--samples", "-1"])
    assert refusal.value.code == 2
    with pytest.raises(SystemExit, match=r"--slice 99 is out of range.*0 to 31"):
        predict.main(["--output-dir", str(finished_run), "--images-dir", str(tmp_path / "i"),
                      "--samples", "2", "--slice", "99"])


def test_similarity_skips_the_feature_network_on_demo_data_unless_asked(run_copy, tmp_path,
                                                                          capsys, monkeypatch):
    import similarity

    images_dir = tmp_path / "images"
    # The default data folder, absent here: the embedded demo data.
    demo_data = ["--data-dir", hyperparameters.DEFAULTS["data_dir"]]
    similarity.main(["--output-dir", str(run_copy), "--images-dir", str(images_dir),
                     "--samples", "2", *demo_data])
    out = capsys.readouterr().out
    assert "demo data: the realism feature network is not trained" in out
    assert "anatomically plausible" in out and "k-NN precision" not in out
    assert not (run_copy / "feature_network.keras").exists()

    # Asked for, the sample report computes the feature figures (what they print, and the
    # network they train, the end-to-end test in tests/scripts/test_train.py checks).
    class Asked(Exception):
        pass

    def sample_report(*args, feature_figures, **kwargs):
        raise Asked(feature_figures)

    from brainvq.evaluation import reports

    monkeypatch.setattr(reports, "sample_report", sample_report)
    with pytest.raises(Asked) as asked:
        similarity.main(["--output-dir", str(run_copy), "--images-dir", str(images_dir),
                         "--samples", "2", "--feature-network", "yes", *demo_data])
    assert asked.value.args == (True,)


def test_an_unwritable_images_dir_is_refused_before_training(data_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    output_dir = tmp_path / "run"
    arguments = train_args(data_dir, output_dir, stage="vqvae")
    arguments[arguments.index("--images-dir") + 1] = str(blocker / "images")
    with pytest.raises(SystemExit, match="--images-dir .* is not writable"):
        train.main(arguments)
    assert not (output_dir / run_folder.VQVAE_FILE).exists()
    assert not (output_dir / hyperparameters.HYPERPARAMETERS_FILE).exists()


def test_png_names_without_case_and_slice_are_accepted_with_a_warning(tmp_path, capsys):
    import dataset

    root = write_oasis_layout(tmp_path / "oasis", cases=(1, 1, 1), slices=2, size=32)
    train_folder = root / "keras_png_slices_train"
    (train_folder / "case_001_slice_1.nii.png").rename(train_folder / "brain_scan.png")
    splits = dataset.load_oasis_png(root, 32)
    err = capsys.readouterr().err
    assert "1 of 2 file(s)" in err and "brain_scan.png" in err
    assert "own subject at slice position 0" in err and "case_NNN_slice_S" in err
    assert len(splits["train"]) == 2


def test_ctrl_c_ends_with_one_line_naming_the_checkpoint_and_the_resume_command(
        data_dir, tmp_path):
    output_dir = tmp_path / "run"
    arguments = train_args(data_dir, output_dir, "--steps-per-epoch", "4", stage="vqvae",
                           epochs="6")  # interrupted in the second of six short epochs
    # A shell starts background jobs with SIGINT ignored, and a child inherits that; restore
    # the default so Python turns SIGINT into KeyboardInterrupt as it does at a terminal.
    process = subprocess.Popen([sys.executable, "train.py", *arguments], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    try:
        while time.time() < deadline and run_folder.epochs_done(output_dir) < 1:
            assert process.poll() is None, "training ended before its first checkpoint"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    # TensorFlow's C++ logging (absl: "I0000 ...", "E0000 ...") writes to the same stream on
    # its own schedule, at import and at shutdown; what Python printed is the rest.
    absl = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages)")
    lines = [line for line in stderr.strip().splitlines()
             if line.strip() and not absl.match(line)]
    assert "Traceback" not in stderr
    assert lines and lines[-1].startswith("interrupted: the last checkpoint is "), \
        (process.returncode, stderr[-3000:])
    assert "vqvae_last.keras" in lines[-1] and "--resume" in lines[-1]
    assert process.returncode != 0
    assert not (output_dir / run_folder.LOCK_FILE).exists()


def test_scripts_print_no_tensorflow_start_up_lines(finished_run, tmp_path):
    """predict.py on a finished run prints its results, and on stderr none of TensorFlow's
    start-up lines (I0000/E0000 ..., the CPU instruction notice); --verbose brings them back."""
    command = [sys.executable, str(REPO / "predict.py"), "--output-dir", str(finished_run),
               "--images-dir", str(tmp_path / "images"), "--count", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "mean SSIM" in result.stdout
    noise = [line for line in result.stderr.splitlines()
             if line.startswith(("I0000", "E0000", "W0000", "WARNING: All log messages"))
             or "rebuild TensorFlow" in line]
    assert noise == [], noise


def test_image_size_not_divisible_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"--image-size 100 is not divisible by .* = 8: use "
                                         r"--image-size 96 or 104"):
        train.main(["--image-size", "100", "--output-dir", str(tmp_path / "run")])


def test_prior_with_weight_averaging_keeps_the_average_resumes_and_the_vqvae_record(
        data_dir, run_copy):
    """A prior stage trained again over a run (--overwrite) keeps the moving average of its
    weights, resumes with it, and keeps the record of how the VQ-VAE was trained."""
    before = hyperparameters.load(run_copy)
    # The defaults of the flags not given (epochs 10, learning rate 5e-4) must not replace the
    # values the VQ-VAE was trained with; the prior's own values are this command's.
    vqvae_training = TINY.index("--learning-rate")
    prior_flags = TINY[:vqvae_training] + TINY[vqvae_training + 4:]  # no rate, no warm-up
    assert "--warmup-steps" not in prior_flags
    arguments = ["--stage", "prior", "--data-dir", str(data_dir), "--output-dir", str(run_copy),
                 "--images-dir", str(run_copy.parent / "images"), *prior_flags,
                 "--prior-weight-averaging", "0.9"]
    train.main([*arguments, "--prior-epochs", "2", "--overwrite"])
    after = hyperparameters.load(run_copy)
    assert (before["epochs"], before["learning_rate"], before["warmup_steps"]) == (1, 1e-3, 0)
    assert (after["epochs"], after["learning_rate"], after["warmup_steps"]) == (1, 1e-3, 0)
    assert after["prior_epochs"] == 2 != before["prior_epochs"]
    kept = keras.saving.load_model(run_copy / run_folder.PRIOR_FILE)
    assert kept.optimizer.use_ema and kept.optimizer.ema_momentum == 0.9
    # The first epoch's checkpoint (kept as the previous one) holds the average as the model's
    # weights and the weights as trained in the optimizer's average slots: the two differ.
    # (After the last epoch Keras makes the slots the average too.)
    first = run_folder.previous_name(
        run_copy / run_folder.last_checkpoint_name(run_folder.PRIOR_FILE))
    kept = keras.saving.load_model(first)
    assert any(not np.allclose(keras.ops.convert_to_numpy(weight), keras.ops.convert_to_numpy(slot))
               for weight, slot in zip(kept.trainable_weights,
                                       kept.optimizer._model_variables_moving_average))
    train.main([*arguments, "--prior-epochs", "3", "--resume"])
    assert run_folder.read_state(run_copy)["prior"]["epochs_done"] == 3


def test_unconditional_samples_draw_positions_as_the_training_slices_have_them(
        finished_run, tmp_path, capsys):
    # The prior stage records how many training slices each position has ...
    state = run_folder.read_state(finished_run)
    counts = state["prior"]["slice_position_counts"]
    values = hyperparameters.load(finished_run)
    assert len(counts) == values["num_slice_positions"] and sum(counts) > 0
    # ... and unconditional samples draw their positions from those counts, seeded.
    folder = tmp_path / "recorded"
    folder.mkdir()
    run_folder.write_state(folder, {"prior": {"slice_position_counts": [0, 5, 0, 15]}})
    drawn = draw_slice_positions(folder, 4, 4000, seed=1)
    assert set(drawn.tolist()) == {1, 3}
    np.testing.assert_array_equal(drawn, draw_slice_positions(folder, 4, 4000, seed=1))
    # In proportion, give or take one (stratified), in an order that changes with the seed.
    for count, seed in ((4000, 1), (7, 2), (30, 3)):
        drawn = draw_slice_positions(folder, 4, count, seed=seed)
        assert abs((drawn == 3).sum() - 0.75 * count) <= 1, (count, seed)
        assert abs((drawn == 1).sum() - 0.25 * count) <= 1, (count, seed)
    other = draw_slice_positions(folder, 4, 30, seed=4)
    assert not np.array_equal(drawn, other)
    # A run trained before the record: the cached code grids' positions ...
    cached = tmp_path / "cached"
    cached.mkdir()
    np.savez(cached / run_folder.CODES_FILE, train_slices=np.array([2, 2, 2], np.int32))
    assert set(draw_slice_positions(cached, 4, 50, seed=0).tolist()) == {2}
    # ... or, with neither, all positions alike, with a note that says so.
    capsys.readouterr()
    assert set(draw_slice_positions(tmp_path, 4, 400, seed=0).tolist()) == {0, 1, 2, 3}
    assert "records no slice positions" in capsys.readouterr().err


def test_unconditional_sampling_mode_changes_the_samples(finished_run):
    from brainvq.generation import generate

    values, vqvae = run_folder.load_run(finished_run)
    assert values["unconditional"] == "positions"  # the default for new runs
    drawn, _ = generate.generate(values, vqvae, finished_run, 4, seed=3)
    again, _ = generate.generate(values, vqvae, finished_run, 4, seed=3)
    null, _ = generate.generate(dict(values, unconditional="null"), vqvae, finished_run, 4,
                                 seed=3)
    np.testing.assert_array_equal(drawn, again)
    assert not np.array_equal(drawn, null)


def test_unconditional_guidance_sharpens_the_drawn_position_and_only_that(finished_run):
    from brainvq.generation import generate

    values, vqvae = run_folder.load_run(finished_run)
    assert values["unconditional_guidance"] == 1.0  # the default: samples as they always were
    plain, _ = generate.generate(values, vqvae, finished_run, 4, seed=3)
    guided, _ = generate.generate(dict(values, unconditional_guidance=3.0), vqvae,
                                   finished_run, 4, seed=3)
    assert not np.array_equal(plain, guided)
    # samples at a requested position keep the run's `guidance`; "null" samples have no
    # position to guide
    at_slice = [generate.generate(dict(values, unconditional_guidance=scale), vqvae,
                                   finished_run, 2, slice_index=1, seed=3)[0]
                for scale in (1.0, 3.0)]
    np.testing.assert_array_equal(*at_slice)
    null = [generate.generate(dict(values, unconditional="null", unconditional_guidance=scale),
                               vqvae, finished_run, 2, seed=3)[0] for scale in (1.0, 3.0)]
    np.testing.assert_array_equal(*null)


def test_a_state_keeps_its_lists_of_numbers_on_one_line_each_and_reads_back(tmp_path):
    state = {"prior": {"slice_poses": [[0, 1.5, -2.25], [3, 0.0, 4.0]], "counts": [1, 2],
                       "classes": ["F", "M"], "empty": [], "nested": {}}}
    run_folder.write_state(tmp_path, state)
    text = (tmp_path / run_folder.STATE_FILE).read_text()
    assert json.loads(text) == state
    assert '      [0, 1.5, -2.25],\n' in text and '"counts": [1, 2],' in text
    np.testing.assert_array_equal(run_folder.slice_poses(tmp_path), state["prior"]["slice_poses"])
    run_folder.write_state(tmp_path, {"prior": {}})
    with pytest.raises(run_folder.RunError, match="--pose-spread 0"):
        run_folder.slice_poses(tmp_path)
