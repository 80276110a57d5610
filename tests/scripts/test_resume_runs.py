"""The fault handling of long runs, end to end on a tiny PNG dataset: architecture values that
do not match the run, the NaN guard, SIGKILL and --resume (checkpoints that are not the run's
own: tests/runs/test_runs.py)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quick_evaluation")]

import hyperparameters  # noqa: E402
import train  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from brainvq.training import stages  # noqa: E402
from helpers import REPO, TINY, TINY_TRACED, read_csv  # noqa: E402


def test_a_vqvae_run_refuses_other_architecture_values(data_dir, tmp_path):
    """One VQ-VAE run, three refusals that leave it as it was: --resume with another codebook,
    a prior stage over it with another codebook, and loading it at another image size."""
    output_dir = tmp_path / "run"
    common = ["--data-dir", str(data_dir), "--output-dir", str(output_dir),
              "--images-dir", str(tmp_path / "images")]
    train.main(["--stage", "vqvae", "--epochs", "1", *common, *TINY])
    with pytest.raises(SystemExit) as refusal:
        train.main(["--stage", "vqvae", "--epochs", "2", "--resume", *common, *TINY,
                    "--num-codes", "32"])
    assert "num_codes: checkpoint has 16, this run asks for 32" in str(refusal.value)
    with pytest.raises(SystemExit) as refusal:
        train.main(["--stage", "prior", *common, *TINY, "--num-codes", "32"])
    assert "num_codes: checkpoint has 16, this run asks for 32" in str(refusal.value)
    with pytest.raises(hyperparameters.IncompatibleCheckpoint,
                       match="image_size: checkpoint has 32"):
        run_folder.load_run(output_dir, {"image_size": 64})
    assert run_folder.read_state(output_dir)["vqvae"]["epochs_done"] == 1
    assert not (output_dir / run_folder.PRIOR_FILE).exists()


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
    arguments = ["--stage", "vqvae", "--data-dir", str(data_dir), "--epochs", "3",
                 "--steps-per-epoch", "10", "--output-dir", str(output_dir),
                 "--images-dir", str(tmp_path / "images"), *TINY_TRACED]  # traced, as a user's run
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
    assert 1 <= epochs_done < 3
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
    assert capture.iterations == 10 * epochs_done  # optimizer state came back too
    for loaded, kept in zip(capture.weights, saved.weights):
        np.testing.assert_array_equal(loaded, keras.ops.convert_to_numpy(kept))
    assert run_folder.read_state(output_dir)["vqvae"]["epochs_done"] == 3
    epochs_logged = [int(row["epoch"]) for row in read_csv(output_dir / "vqvae_log.csv")]
    assert epochs_logged == list(range(3))  # no epoch lost, none repeated
    assert all(np.isfinite(float(row["loss"])) for row in read_csv(output_dir / "vqvae_log.csv"))
