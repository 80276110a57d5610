"""End-to-end tests of train.py / predict.py / similarity.py on a tiny PNG dataset, and of the
fault handling of long runs: NaN guard, mismatched checkpoints, SIGKILL and --resume."""
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
# train.py, predict.py, similarity.py end to end, their evaluation networks kept small
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quick_evaluation")]

import hyperparameters  # noqa: E402
import train  # noqa: E402
from brainvq.evaluation import reports  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from brainvq.training import stages  # noqa: E402
from helpers import REPO, TINY, TINY_TRACED, write_oasis_layout  # noqa: E402


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.traced  # the graphs a user's run has
def test_train_predict_similarity_end_to_end(data_dir, tmp_path, capsys):
    output_dir, images_dir = tmp_path / "run", tmp_path / "images"
    train.main(["--stage", "vqvae", "--data-dir", str(data_dir), "--epochs", "2",
                "--output-dir", str(output_dir), "--images-dir", str(tmp_path / "images"),
                *TINY_TRACED])  # traced into graphs, as a user's run is
    assert (output_dir / run_folder.VQVAE_FILE).is_file()
    saved = json.loads((output_dir / hyperparameters.HYPERPARAMETERS_FILE).read_text())
    assert saved["image_size"] == 32 and saved["num_codes"] == 16
    rows = read_csv(output_dir / "vqvae_log.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    for column in ("loss", "reconstruction_loss", "vq_loss", "codebook_usage", "perplexity",
                   "val_loss", "val_ssim", "images_per_second"):
        assert column in rows[0], column
    assert (images_dir / "vqvae_loss.png").stat().st_size > 1000
    from PIL import Image as PILImage

    with PILImage.open(images_dir / "training_progress.gif") as gif:
        assert gif.n_frames == 2  # one reconstruction frame per epoch

    train.main(["--stage", "prior", "--data-dir", str(data_dir), "--prior-epochs", "2",
                "--output-dir", str(output_dir), "--images-dir", str(images_dir), *TINY_TRACED])
    assert (output_dir / run_folder.PRIOR_FILE).is_file()
    prior_rows = read_csv(output_dir / "prior_log.csv")
    assert [int(row["epoch"]) for row in prior_rows] == [0, 1]
    assert float(prior_rows[-1]["bits_per_code"]) < 4.0  # log2(16) = 4 bits is a uniform guess
    assert "val_bits_per_code" in prior_rows[0]
    with np.load(output_dir / run_folder.CODES_FILE) as codes:
        assert codes["train_codes"].shape == (12, 8, 8)  # 2 cases x 6 slices, 32 / 4 = 8
    assert "test-split NLL" in capsys.readouterr().out

    import predict
    import similarity

    predict.main(["--output-dir", str(output_dir), "--images-dir", str(images_dir),
                  "--samples", "4", "--slice", "2"])
    assert (images_dir / "reconstructions.png").stat().st_size > 1000
    assert "mean SSIM over 6 test slices" in capsys.readouterr().out
    assert (images_dir / "samples.png").stat().st_size > 1000
    assert len(list((images_dir / "samples").glob("sample_*.png"))) == 4

    assert (images_dir / "samples_by_slice.png").stat().st_size > 1000
    state = run_folder.read_state(output_dir)["prior"]
    assert 1 <= state["best_epoch"] <= 2 and state["monitor"] == "val_loss"

    similarity.main(["--output-dir", str(output_dir), "--images-dir", str(images_dir),
                     "--samples", "4"])
    out = capsys.readouterr().out
    assert "ssim" in out.lower()
    for line in ("anatomically plausible", "k-NN precision", "position within 2"):
        assert line in out, line
    assert (output_dir / "feature_network.keras").is_file()
    for figure in ("ssim_histogram.png", "ssim_by_slice.png", "best_worst.png"):
        assert (images_dir / figure).stat().st_size > 1000, figure
    assert len(read_csv(output_dir / "reconstruction_metrics.csv")) == 6
    recorded = json.loads((output_dir / "sample_metrics.json").read_text())
    assert recorded["settings"]["samples"] == 4
    assert 0.0 <= recorded["figures"]["plausible_samples"] <= 1.0
    assert recorded["figures"]["nearest_ssim"]["count"] == 4
    assert "held-out real slices" in out and "(copies): " in out
    # a run of single slices draws no volumes: refused with the flag that cuts stacks
    with pytest.raises(SystemExit, match="--volumes needs a run cut as whole stacks"):
        predict.main(["--output-dir", str(output_dir), "--volumes", "1"])
    with pytest.raises(SystemExit, match="needs whole stacks"):
        train.main(["--stage", "volume", "--data-dir", str(data_dir), "--output-dir",
                    str(output_dir), *TINY_TRACED])


@pytest.mark.traced  # the graphs a user's run has
def test_run_eagerly_trains_without_tracing_the_steps(data_dir, tmp_path, monkeypatch):
    import tensorflow as tf

    import dataset
    import modules

    # Each time the training step runs as Python, record whether it runs eagerly (it runs once,
    # not eagerly, when Keras traces it into a graph).
    eager, step = [], modules.VQVAETrainer.train_step

    def recording_step(self, *args):
        eager.append(tf.executing_eagerly())
        return step(self, *args)

    monkeypatch.setattr(modules.VQVAETrainer, "train_step", recording_step)
    arguments = ["--data-dir", str(data_dir), "--epochs", "1", "--output-dir",
                 str(tmp_path / "run"), "--images-dir", str(tmp_path / "images"), *TINY]
    assert "--run-eagerly" in arguments
    values = hyperparameters.resolve(train.parse_args(arguments))
    splits, _ = dataset.load_splits(str(data_dir), 32)
    stages.train_vqvae(values, splits, tmp_path / "run")
    assert eager == [True, True]  # 12 training slices in batches of 8, both steps eager
    assert np.isfinite(float(read_csv(tmp_path / "run" / "vqvae_log.csv")[0]["loss"]))


def test_resume_with_other_hyperparameters_is_refused(data_dir, tmp_path):
    output_dir = tmp_path / "run"
    train.main(["--stage", "vqvae", "--data-dir", str(data_dir), "--epochs", "1",
                "--output-dir", str(output_dir), "--images-dir", str(tmp_path / "images"), *TINY])
    with pytest.raises(SystemExit) as refusal:
        train.main(["--stage", "vqvae", "--data-dir", str(data_dir), "--epochs", "2", "--resume",
                    "--output-dir", str(output_dir), "--images-dir", str(tmp_path / "images"),
                    *TINY, "--num-codes", "32"])
    message = str(refusal.value)
    assert "num_codes: checkpoint has 16, this run asks for 32" in message


def test_resume_refuses_a_checkpoint_its_state_file_does_not_record(data_dir, tmp_path):
    """One run's prior_last.keras beside another run's training_state.json: refused, naming
    the file, instead of resuming the wrong weights at the other run's epoch."""
    import shutil

    first, second = tmp_path / "first", tmp_path / "second"
    for run, seed in ((first, "1"), (second, "2")):
        train.main(["--data-dir", str(data_dir), "--epochs", "1", "--prior-epochs", "1",
                    "--seed", seed, "--output-dir", str(run), *TINY])
    shutil.copyfile(second / "prior_last.keras", first / "prior_last.keras")
    with pytest.raises(SystemExit, match="prior_last.keras is not the checkpoint .* records"):
        train.main(["--stage", "prior", "--resume", "--data-dir", str(data_dir),
                    "--prior-epochs", "2", "--seed", "1", "--output-dir", str(first), *TINY])


def test_prior_stage_refuses_a_vqvae_with_another_codebook(data_dir, tmp_path):
    output_dir = tmp_path / "run"
    common = ["--data-dir", str(data_dir), "--output-dir", str(output_dir),
              "--images-dir", str(tmp_path / "images")]
    train.main(["--stage", "vqvae", "--epochs", "1", *common, *TINY])
    with pytest.raises(SystemExit) as refusal:
        train.main(["--stage", "prior", *common, *TINY, "--num-codes", "32"])
    assert "num_codes: checkpoint has 16, this run asks for 32" in str(refusal.value)


def test_predict_refuses_a_run_with_other_image_size(data_dir, tmp_path):

    output_dir = tmp_path / "run"
    train.main(["--stage", "vqvae", "--data-dir", str(data_dir), "--epochs", "1",
                "--output-dir", str(output_dir), "--images-dir", str(tmp_path / "images"), *TINY])
    with pytest.raises(hyperparameters.IncompatibleCheckpoint,
                       match="image_size: checkpoint has 32"):
        run_folder.load_run(output_dir, {"image_size": 64})


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    import modules

    values = dict(hyperparameters.DEFAULTS, steps_per_epoch=1)
    model = modules.VQVAETrainer(image_size=32, num_codes=16, code_dim=8, num_downsamples=2,
                                 channels=8, num_residual_blocks=1)
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    good = np.random.RandomState(0).rand(4, 32, 32, 1).astype("float32")
    bad = np.full_like(good, np.nan)
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices(np.stack([good, bad, bad]))  # one batch an epoch
    with pytest.raises(stages.TrainingFailed, match="vqvae stage: loss became nan at epoch 2"):
        stages.fit_stage(model, "vqvae", batches, None, values, 3, 4, tmp_path,
                         run_folder.VQVAE_FILE, resume=False)
    kept = keras.saving.load_model(tmp_path / run_folder.VQVAE_FILE)
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in kept.weights)
    assert run_folder.read_state(tmp_path)["vqvae"]["epochs_done"] == 1


@pytest.mark.traced  # the graphs a user's run has
def test_sigkill_then_resume_continues_from_the_last_checkpoint(data_dir, tmp_path):
    output_dir = tmp_path / "run"
    arguments = ["--stage", "vqvae", "--data-dir", str(data_dir), "--epochs", "4",
                 "--steps-per-epoch", "30", "--output-dir", str(output_dir),
                 "--images-dir", str(tmp_path / "images"), *TINY_TRACED]  # 30 steps: traced
    process = subprocess.Popen([sys.executable, "train.py", *arguments], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.time() + 240
    try:
        while time.time() < deadline and run_folder.epochs_done(output_dir) < 1:
            assert process.poll() is None, "training ended before its first checkpoint"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # mid-epoch 2 (or right at its start)
    finally:
        process.kill()
        process.wait()
    epochs_done = run_folder.epochs_done(output_dir)
    assert 1 <= epochs_done < 4
    saved = keras.saving.load_model(
        output_dir / run_folder.last_checkpoint_name(run_folder.VQVAE_FILE))

    class CaptureStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [keras.ops.convert_to_numpy(w) for w in self.model.weights]
            self.iterations = int(self.model.optimizer.iterations.numpy())

        def on_epoch_begin(self, epoch, logs=None):
            self.first_epoch = getattr(self, "first_epoch", epoch)

    capture = CaptureStart()
    values = hyperparameters.resolve(train.parse_args(arguments + ["--resume"]))
    import dataset

    splits, _ = dataset.load_splits(str(data_dir), 32)
    stages.train_vqvae(values, splits, output_dir, resume=True, extra_callbacks=[capture])
    assert capture.first_epoch == epochs_done
    assert capture.iterations == 30 * epochs_done  # optimizer state came back too
    for loaded, kept in zip(capture.weights, saved.weights):
        np.testing.assert_array_equal(loaded, keras.ops.convert_to_numpy(kept))
    assert run_folder.read_state(output_dir)["vqvae"]["epochs_done"] == 4
    epochs_logged = [int(row["epoch"]) for row in read_csv(output_dir / "vqvae_log.csv")]
    assert epochs_logged == list(range(4))  # no epoch lost, none repeated
    assert all(np.isfinite(float(row["loss"])) for row in read_csv(output_dir / "vqvae_log.csv"))


def test_similarity_uses_oasis_segmentations_when_present(tmp_path):
    import dataset

    root = write_oasis_layout(tmp_path / "oasis", cases=(1, 1, 1), slices=2, size=32)
    test = dataset.load_oasis_png(root, 32)["test"]
    assert reports.segmentation_masks(test, 32) is None  # no seg folder: threshold masks
    seg_folder = root / "keras_png_slices_seg_test"
    seg_folder.mkdir()
    for path in test.paths:
        labels = np.zeros((32, 32), np.uint8)
        labels[8:24, 8:24] = 255
        Image.fromarray(labels).save(seg_folder / pathlib.Path(path).name.replace("case_", "seg_"))
    masks = reports.segmentation_masks(test, 32)
    assert masks.shape == (2, 32, 32) and masks.sum() == 2 * 16 * 16


def test_prior_snapshots_are_kept_and_judged_by_the_realism_benchmark(data_dir, tmp_path,
                                                                      capsys):
    """--prior-snapshot-every keeps the (averaged) weights of each epoch; `benchmark.py realism
    --snapshots` judges each in one feature space, and names the kept ones when asked for
    another."""
    import benchmark

    run = tmp_path / "run"
    train.main(["--data-dir", str(data_dir), "--epochs", "1", "--prior-epochs", "2",
                "--prior-snapshot-every", "1", "--prior-weight-averaging", "0.9",
                "--output-dir", str(run), *TINY])
    kept = sorted(path.name for path in (run / run_folder.SNAPSHOTS_DIR).iterdir())
    assert kept == ["prior_epoch_001.weights.h5", "prior_epoch_002.weights.h5"]
    best = run_folder.load_prior(run)
    best.load_weights(run / run_folder.SNAPSHOTS_DIR / kept[-1])  # epoch 2 is the best (of 2 here)
    rows = benchmark.main(["realism", "--output-dir", str(run), "--data-dir", str(data_dir),
                           "--samples", "3", "--temperatures", "1.0", "--top-ks", "0",
                           "--seeds", "0", "--snapshots", "1,2"])
    assert [setting[0] for setting, _, _ in rows] == [1, 2]
    assert rows[0][2]["frechet_samples"] != rows[1][2]["frechet_samples"]
    assert all(0.0 <= figures["worst_outside_samples"] <= 1.0 for _, _, figures in rows)
    with pytest.raises(SystemExit, match="prior_epoch_002.weights.h5"):
        benchmark.main(["realism", "--output-dir", str(run), "--data-dir", str(data_dir),
                        "--samples", "3", "--snapshots", "7"])


def test_a_prior_told_the_head_pose_measures_every_slice_once_and_trains(data_dir, tmp_path,
                                                                         capsys):
    run = tmp_path / "run"
    arguments = ["--data-dir", str(data_dir), "--epochs", "1", "--prior-epochs", "1",
                 "--prior-pose-condition", "true", "--prior-augment-copies", "2",
                 "--output-dir", str(run), *TINY]
    train.main(arguments)
    with np.load(run / "poses.npz") as stored:
        # 12 training slices and their 2 copies each; 6 validation and 6 test slices
        shapes = {name: stored[name].shape for name in ("train_augmented", "validate", "test")}
        poses = stored["train_augmented"]
    assert shapes == {"train_augmented": (36, 2), "validate": (6, 2), "test": (6, 2)}
    assert run_folder.load_prior(run).augmentation_inputs == 5
    assert hyperparameters.load(run)["prior_pose_condition"] is True
    # The training slices' poses, recorded for --pose-spread to draw from
    recorded = np.array(run_folder.read_state(run)["prior"]["slice_poses"])
    with np.load(run / "codes.npz") as stored:
        np.testing.assert_array_equal(recorded[:, 0], stored["train_slices"])
    np.testing.assert_allclose(recorded[:, 1:], poses[:12], atol=0.006)
    import predict

    images = tmp_path / "images"
    predict.main(["--output-dir", str(run), "--images-dir", str(images), "--samples", "2",
                  "--pose-spread", "1"])
    assert len(list((images / "samples").glob("sample_*.png"))) == 2
