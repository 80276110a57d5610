"""End to end: a run cut as stacks trains the volume prior beside the slice prior, and
predict.py --volumes writes NIfTI volumes the project's own reader takes back."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
# traced: a stack's sampling loop (64 slices, each a grid's worth of steps) run eagerly takes
# minutes where its graph takes seconds
pytestmark = [pytest.mark.slow, pytest.mark.traced, pytest.mark.usefixtures("quick_evaluation")]

import predict  # noqa: E402
import similarity  # noqa: E402
import train  # noqa: E402
from brainvq.benchmarks import harness  # noqa: E402
from brainvq.data import volumes  # noqa: E402
from brainvq.generation.generate import draw_subject_covariates  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from helpers import TINY, write_phantom_heads  # noqa: E402

STACK = ["--slice-spacing", "3", "--slices-per-volume", "8", "--num-slice-positions", "8",
         "--field-of-view", "48", "--split", "2,1,1", "--prior-augment-copies", "0",
         "--context-blocks", "2", "--context-epochs", "1"]


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacks")
    write_phantom_heads(root / "data")
    (root / "table.csv").write_text("subject,age\nSUBJ000,30\nSUBJ001,70\nSUBJ002,40\n"
                                    "SUBJ003,50\n")
    output_dir = root / "run"
    train.main(["--data-dir", str(root / "data"), "--output-dir", str(output_dir),
                "--covariates", str(root / "table.csv"), "--condition-on", "age",
                "--epochs", "2", "--prior-epochs", "2", *STACK, *TINY])
    return root, output_dir


def test_all_stages_of_a_stack_run_include_the_volume_prior(stack_run):
    _, output_dir = stack_run
    state = run_folder.read_state(output_dir)
    assert (output_dir / run_folder.VOLUME_PRIOR_FILE).is_file()
    assert state["volume"]["epochs_done"] == 2
    # pairs of consecutive slices: each of the 2 training subjects' stacks gives length - 1
    assert state["volume"]["pairs"]["train"] == 2 * 7
    assert state["volume"]["vqvae_fingerprint"] == state["prior"]["vqvae_fingerprint"]
    # a whole volume has one age: both priors are conditioned on it, with the same range
    assert state["volume"]["covariates"] == state["prior"]["covariates"]
    assert [spec["name"] for spec in state["volume"]["covariates"]] == ["age"]
    # and the slice-context refiner, over the same VQ-VAE
    assert (output_dir / run_folder.CONTEXT_FILE).is_file()
    assert state["context"]["epochs_done"] == 1
    assert state["context"]["vqvae_fingerprint"] == state["prior"]["vqvae_fingerprint"]


def test_volumes_are_decoded_through_the_slice_context_refiner(stack_run):
    from brainvq.generation import stacks

    _, output_dir = stack_run
    values, vqvae = run_folder.load_run(output_dir)
    images, codes, _ = stacks.generate_stacks(values, vqvae, output_dir, 1, seed=3)
    refiner = run_folder.load_prior(output_dir, "context")
    np.testing.assert_allclose(images, stacks.decode_stacks(vqvae, codes, refiner=refiner),
                               atol=1e-5)
    assert not np.allclose(images, stacks.decode_stacks(vqvae, codes), atol=1e-4)
    without, again, _ = stacks.generate_stacks(dict(values, context_blocks=0), vqvae,
                                               output_dir, 1, seed=3)
    np.testing.assert_array_equal(again, codes)  # the same codes, decoded slice by slice
    np.testing.assert_allclose(without, stacks.decode_stacks(vqvae, codes), atol=1e-5)


def test_volumes_can_draw_a_training_subjects_age(stack_run):
    from brainvq.generation import stacks

    _, output_dir = stack_run
    # the 2 training subjects' ages (40 and 50: the ends of their range), one row each
    recorded = run_folder.read_state(output_dir)["volume"]["subject_covariates"]
    np.testing.assert_allclose(sorted(recorded), [[0.0], [1.0]])
    values, vqvae = run_folder.load_run(output_dir)

    def codes(mode, seed=3):
        return stacks.generate_stacks(dict(values, unconditional_covariates=mode), vqvae,
                                      output_dir, 2, seed=seed)[1]

    drawn = codes("drawn")
    assert not np.array_equal(drawn, codes("null"))
    np.testing.assert_array_equal(drawn, codes("drawn"))  # seeded
    rows = draw_subject_covariates(output_dir, 2, seed=3, stage="volume")
    assert sorted(rows[:, 0].tolist()) == [0.0, 1.0]  # two volumes: each subject once


def test_a_volume_follows_its_requested_age(stack_run, tmp_path):
    _, output_dir = stack_run
    import nibabel

    def volume(age, folder):
        predict.main(["--output-dir", str(output_dir), "--volumes", "1", "--seed", "3",
                      "--age", age, "--images-dir", str(tmp_path / folder)])
        path = tmp_path / folder / "samples" / "volume_000.nii.gz"
        return np.asarray(nibabel.load(str(path)).dataobj)

    young, old = volume("40", "young"), volume("50", "old")
    assert young.shape == old.shape == (32, 32, 8)
    assert not np.array_equal(young, old)
    np.testing.assert_array_equal(volume("40", "again"), young)
    with pytest.raises(SystemExit, match="age"):
        volume("95", "outside")  # outside the training subjects' 40-50


def test_predict_writes_volumes_in_the_models_frame(stack_run, capsys):
    root, output_dir = stack_run
    predict.main(["--output-dir", str(output_dir), "--volumes", "2", "--seed", "3"])
    printed = capsys.readouterr().out
    assert "2 volume(s) of 8 slices" in printed and "s per volume" in printed
    import nibabel

    written = sorted((output_dir / "images" / "samples").glob("volume_*.nii.gz"))
    assert [path.name for path in written] == ["volume_000.nii.gz", "volume_001.nii.gz"]
    image = nibabel.load(str(written[0]))
    assert image.shape == (32, 32, 8)
    assert nibabel.aff2axcodes(image.affine) == ("R", "A", "S")
    np.testing.assert_allclose(image.header.get_zooms(), (1.5, 1.5, 3.0))
    assert (output_dir / "images" / "volumes.png").is_file()
    first = np.asarray(image.dataobj)
    predict.main(["--output-dir", str(output_dir), "--volumes", "2", "--seed", "3"])
    np.testing.assert_array_equal(np.asarray(nibabel.load(str(written[0])).dataobj), first)
    read = volumes.read_volume(written[0])  # resampled to 1.5 mm by the project's reader
    assert read.voxels.shape[:2] == (32, 32) and read.spacing == pytest.approx(1.5)


def test_similarity_compares_volumes_with_held_out_real_ones(stack_run, capsys):
    _, output_dir = stack_run
    similarity.main(["--output-dir", str(output_dir), "--volumes", "2",
                     "--feature-network", "yes"])
    printed = capsys.readouterr().out
    for line in ("neighbouring-slice SSIM (mean)", "coronal reslices plausible",
                 "sagittal reslices Fréchet distance", "axial slices plausible",
                 "axial slices Fréchet distance", "held-out real slices, Fréchet distance"):
        assert line in printed
    assert (output_dir / "images" / "volume_neighbour_ssim.png").is_file()
    assert (output_dir / "reslice_features_coronal" / "feature_network.keras").is_file()


def test_an_exported_stack_run_ships_its_volume_prior(stack_run, tmp_path):
    _, output_dir = stack_run
    shipped = tmp_path / "shipped"
    train.main(["--output-dir", str(output_dir), "--export", str(shipped)])
    assert (shipped / run_folder.VOLUME_PRIOR_FILE).is_file()
    assert run_folder.VOLUME_PRIOR_FILE in run_folder.read_state(shipped)[run_folder.FILES_KEY]
    assert run_folder.CONTEXT_FILE in run_folder.read_state(shipped)[run_folder.FILES_KEY]
    predict.main(["--output-dir", str(shipped), "--volumes", "1", "--images-dir",
                  str(tmp_path / "figures")])
    assert (tmp_path / "figures" / "samples" / "volume_000.nii.gz").is_file()


def test_the_volumes_benchmark_judges_each_covariate_setting_in_one_feature_space(
        stack_run, capsys):
    import benchmark

    _, output_dir = stack_run
    # the run's own folder: the feature networks the similarity test trained, when it ran first
    features = output_dir
    rows = benchmark.main(["volumes", "--output-dirs", str(output_dir), "--volumes", "2",
                           "--unconditional-covariates", "null,drawn", "--seeds", "3,4",
                           "--feature-network-dir", str(features)])
    assert [(setting, seed) for setting, seed, _ in rows] == [
        ((str(output_dir), "null"), 3), ((str(output_dir), "null"), 4),
        ((str(output_dir), "drawn"), 3), ((str(output_dir), "drawn"), 4)]
    null, other_seed, drawn, _ = (figures for _, _, figures in rows)
    assert null["neighbour_ssim_samples"] != other_seed["neighbour_ssim_samples"]
    # the same held-out volumes and feature networks: one floor; other volumes: other figures
    assert null["coronal_frechet_real"] == drawn["coronal_frechet_real"]
    assert null["head_volume_mean_real"] == drawn["head_volume_mean_real"] > 0
    assert null["neighbour_ssim_samples"] != drawn["neighbour_ssim_samples"]
    assert "plausible_independent" not in null  # --independent no: the stacks alone
    for plane in ("coronal", "sagittal"):
        assert (features / f"reslice_features_{plane}" / "feature_network.keras").is_file()
    printed = capsys.readouterr().out
    assert "head mL" in printed
    table = printed[printed.index("real (held out)"):].splitlines()
    # a row per setting and seed, and the seeds' mean per setting
    assert [line.split()[1:3] for line in table[1:]] == [
        ["null", "3"], ["null", "4"], ["null", "mean"],
        ["drawn", "3"], ["drawn", "4"], ["drawn", "mean"]]
    mean = harness.seeds_mean([null, other_seed])
    assert mean["coronal_frechet_samples"] == pytest.approx(
        (null["coronal_frechet_samples"] + other_seed["coronal_frechet_samples"]) / 2)
    assert f"{mean['neighbour_ssim_samples']:8.4f}" in table[3]


def test_train_refuses_subject_counts_the_data_cannot_fill(stack_run, tmp_path):
    root, _ = stack_run
    with pytest.raises(SystemExit, match="--split 10,10,10 asks for 30 subjects .* has 4"):
        train.main(["--data-dir", str(root / "data"), "--output-dir", str(tmp_path / "run"),
                    "--epochs", "1", "--prior-epochs", "1", *STACK[:-4], "--split", "10,10,10",
                    *TINY])
    assert not (tmp_path / "run" / run_folder.VQVAE_FILE).exists()
