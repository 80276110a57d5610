"""End to end: a run with --volume-latent 3d trains a volume VQ-VAE over its stacks and a stack
prior over its 3D codes, and predict.py, similarity.py and an export draw whole heads through
them."""
import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.slow, pytest.mark.traced, pytest.mark.usefixtures("quick_evaluation")]

import predict  # noqa: E402
import similarity  # noqa: E402
import train  # noqa: E402
from brainvq.data import volumes  # noqa: E402
from brainvq.generation import stacks  # noqa: E402
from brainvq.models.stack_prior import StackPixelCNN  # noqa: E402
from brainvq.models.volume_vqvae import VolumeVQVAE  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from helpers import TINY, run_python, write_phantom_heads  # noqa: E402

STACK_3D = ["--slice-spacing", "3", "--slices-per-volume", "8", "--num-slice-positions", "8",
            "--field-of-view", "48", "--split", "2,1,1", "--prior-augment-copies", "0",
            "--volume-latent", "3d", "--volume-channels", "4", "--volume-vqvae-epochs", "1",
            "--steps-per-epoch", "3"]


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("volume3d")
    write_phantom_heads(root / "data")
    output_dir = root / "run"
    train.main(["--data-dir", str(root / "data"), "--output-dir", str(output_dir),
                "--epochs", "1", "--prior-epochs", "1", *STACK_3D, *TINY])
    return root, output_dir


def test_a_3d_run_trains_a_volume_vqvae_and_a_stack_prior_over_its_codes(run_3d):
    _, output_dir = run_3d
    state = run_folder.read_state(output_dir)
    assert state["volume_vqvae"]["epochs_done"] == 1
    # 2 training subjects and their mirror images; the validation and test subject
    assert state["volume"]["stacks"] == {"train": 4, "validate": 1, "test": 1}
    volume_vqvae = run_folder.load_checkpoint(output_dir / run_folder.VOLUME_VQVAE_FILE)
    assert (state["volume"]["volume_codebook_fingerprint"]
            == run_folder.codebook_fingerprint(volume_vqvae))
    prior = run_folder.load_prior(output_dir, "volume")
    assert isinstance(volume_vqvae, VolumeVQVAE) and isinstance(prior, StackPixelCNN)
    # 8 slices of 32 x 32 at 4x in-plane and 4x along the slices: 2 layers of 8 x 8 codes
    assert volume_vqvae.code_shape((8, 32, 32)) == (2, 8, 8)
    assert (prior.grid_size, prior.context_layers, prior.num_codes) == (8, 1, 16)


def test_3d_volumes_are_whole_seeded_stacks(run_3d, tmp_path):
    _, output_dir = run_3d
    values, vqvae = run_folder.load_run(output_dir)
    images, codes, _ = stacks.generate_stacks(values, vqvae, output_dir, 2, seed=1)
    assert images.shape == (2, 8, 32, 32) and codes.shape == (2, 2, 8, 8)
    assert 0.0 <= images.min() and images.max() <= 1.0 and codes.max() < 16
    np.testing.assert_array_equal(
        images, stacks.generate_stacks(values, vqvae, output_dir, 2, seed=1)[0])
    assert not np.array_equal(
        codes, stacks.generate_stacks(values, vqvae, output_dir, 2, seed=2)[1])
    predict.main(["--output-dir", str(output_dir), "--volumes", "1",
                  "--images-dir", str(tmp_path)])
    volume = volumes.read_volume(tmp_path / "samples" / "volume_000.nii.gz")
    assert volume.voxels.shape[:2] == (32, 32)
    with pytest.raises(run_folder.RunError, match="trained without covariates"):
        stacks.generate_stacks(values, vqvae, output_dir, 1, covariates=np.array([0.5]))


def test_a_new_interpreter_loads_the_run_as_predict_py_does(run_3d):
    """Only the run-loading modules imported: every class the 3D run's files hold registered."""
    _, output_dir = run_3d
    shapes = run_python(f"""
        import json
        from brainvq.runs import run_folder
        volume_vqvae = run_folder.load_prior({str(output_dir)!r}, "volume_vqvae")
        prior = run_folder.load_prior({str(output_dir)!r}, "volume")
        print(json.dumps([type(volume_vqvae).__name__, type(prior).__name__]))
    """)
    assert shapes == ["VolumeVQVAE", "StackPixelCNN"]


def test_similarity_judges_3d_volumes(run_3d, capsys):
    _, output_dir = run_3d
    similarity.main(["--output-dir", str(output_dir), "--volumes", "2",
                     "--feature-network", "no"])
    printed = capsys.readouterr().out
    assert "coronal reslices plausible" in printed and "streak" in printed


def test_a_stack_prior_conditioned_on_age_draws_heads_of_an_age(run_3d, tmp_path):
    root, output_dir = run_3d
    copy = tmp_path / "run"
    shutil.copytree(output_dir, copy)
    table = tmp_path / "ages.csv"
    table.write_text("subject,age\nSUBJ000,30\nSUBJ001,70\nSUBJ002,40\nSUBJ003,50\n")
    train.main(["--data-dir", str(root / "data"), "--output-dir", str(copy), "--stage",
                "volume", "--overwrite", "--epochs", "1", "--prior-epochs", "1", *STACK_3D,
                *TINY, "--covariates", str(table), "--volume-condition-on", "age",
                "--unconditional-covariates", "drawn"])
    record = run_folder.read_state(copy)["volume"]
    assert [spec["name"] for spec in record["covariates"]] == ["age"]
    # the 2 training subjects, once each, their ages scaled to their range [0, 1]
    assert sorted(row[0] for row in record["subject_covariates"]) == [0.0, 1.0]
    values, vqvae = run_folder.load_run(copy)
    young, old = (stacks.generate_stacks(values, vqvae, copy, 2, seed=5,
                                         covariates=np.array([age], np.float32))[1]
                  for age in (0.0, 1.0))
    assert not np.array_equal(young, old)  # the same seed, another age: other heads
    drawn = stacks.generate_stacks(values, vqvae, copy, 2, seed=5)[1]  # a training row each
    assert drawn.shape == young.shape
    predict.main(["--output-dir", str(copy), "--volumes", "1", "--condition", "age=50",
                  "--images-dir", str(tmp_path / "images")])
    assert (tmp_path / "images" / "samples" / "volume_000.nii.gz").is_file()


@pytest.mark.parametrize("changed", ["decoder", "encoder", "quantizer"])
def test_the_stack_prior_keeps_to_the_codes_of_its_volume_vqvae(run_3d, tmp_path, changed):
    _, output_dir = run_3d
    copy = tmp_path / "run"
    shutil.copytree(output_dir, copy)
    model = run_folder.load_checkpoint(copy / run_folder.VOLUME_VQVAE_FILE)
    part = getattr(model, changed)
    part.set_weights([weights + 0.01 for weights in part.get_weights()])
    model.save(copy / run_folder.VOLUME_VQVAE_FILE)
    if changed == "decoder":  # a decoder tuned over the same codes: the prior still fits
        assert isinstance(run_folder.load_prior(copy, "volume"), StackPixelCNN)
        return
    with pytest.raises(run_folder.RunError, match="trained over another VQ-VAE than .*"
                                                  "volume_vqvae.keras"):
        run_folder.load_prior(copy, "volume")


def test_an_export_ships_the_volume_vqvae_and_draws_the_same_heads(run_3d, tmp_path):
    _, output_dir = run_3d
    shipped = tmp_path / "shipped"
    train.main(["--output-dir", str(output_dir), "--export", str(shipped)])
    state = run_folder.read_state(shipped)
    assert run_folder.VOLUME_VQVAE_FILE in state[run_folder.FILES_KEY]
    run_folder.verify_shipped(shipped)
    values, vqvae = run_folder.load_run(output_dir)
    ours = stacks.generate_stacks(values, vqvae, output_dir, 1, seed=4)[0]
    values, vqvae = run_folder.load_run(shipped)
    np.testing.assert_allclose(stacks.generate_stacks(values, vqvae, shipped, 1, seed=4)[0],
                               ours, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--volume-latent", "3d"], "--volume-latent 3d codes whole stacks"),
    (["--volume-latent", "3d", "--slice-spacing", "3", "--slices-per-volume", "6",
      "--num-slice-positions", "6"], "--slices-per-volume 6 is not divisible by"),
    (["--volume-latent", "3d", "--slice-spacing", "3", "--slices-per-volume", "8",
      "--num-slice-positions", "8", "--volume-slice-downsamples", "3"], "is more than "
                                                                         "--num-downsamples 2"),
    (["--volume-condition-on", "age"], "needs --volume-latent 3d and --covariates"),
])
def test_bad_3d_flags_are_refused_before_anything_is_written(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        train.main(["--output-dir", str(tmp_path / "run"), *flags, *TINY])
    assert not (tmp_path / "run").exists()
