"""End-to-end tests of train.py / predict.py / similarity.py on a tiny PNG dataset (the fault
handling of long runs is in test_resume_runs.py)."""
import json
import pathlib

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
from helpers import TINY, TINY_TRACED, read_csv, write_oasis_layout  # noqa: E402


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
    best = run_folder.load_prior(run, shared=False)  # its own copy: weights load into it
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
