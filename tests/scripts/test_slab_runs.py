"""End to end: a run cut as stacks with --slab-depth trains the slab autoencoder, then both
priors over its slab codes, and predict.py --volumes draws whole volumes through it."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.slow, pytest.mark.traced, pytest.mark.usefixtures("quick_evaluation")]

import predict  # noqa: E402
import train  # noqa: E402
from brainvq.data import volumes  # noqa: E402
from brainvq.generation import stacks  # noqa: E402
from brainvq.runs import run_folder  # noqa: E402
from brainvq.training import slab_codes  # noqa: E402
from helpers import TINY, write_phantom_heads  # noqa: E402

STACK = ["--slice-spacing", "3", "--slices-per-volume", "8", "--num-slice-positions", "8",
         "--field-of-view", "48", "--split", "2,1,1", "--prior-augment-copies", "0",
         "--slab-depth", "4", "--slab-num-codes", "8", "--slab-channels", "8"]


@pytest.fixture(scope="module")
def slab_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("slabs")
    write_phantom_heads(root / "data")
    output_dir = root / "run"
    train.main(["--data-dir", str(root / "data"), "--output-dir", str(output_dir),
                "--epochs", "1", "--prior-epochs", "1", "--slab-epochs", "1", *STACK, *TINY])
    return root, output_dir


def test_a_slab_run_trains_the_priors_on_slab_codes(slab_run):
    _, output_dir = slab_run
    state = run_folder.read_state(output_dir)
    assert state["slab"]["epochs_done"] == 1
    assert (output_dir / run_folder.SLAB_FILE).is_file()
    # 2 training subjects and their 2 mirror images, each 8 slices = 2 slabs of 4: one pair each
    assert state["volume"]["pairs"]["train"] == 4 * 1
    # the prior saw the slab positions 0 and 1 only, each once per (mirrored) stack
    assert state["prior"]["slice_position_counts"][:3] == [4, 4, 0]
    with np.load(output_dir / slab_codes.SLAB_CODES_FILE) as stored:
        assert stored["train_codes"].shape == (4, 2, 8, 8)  # 32 px / 4 = 8x8 grids
        assert stored["train_codes"].max() < 8


def test_slab_volumes_are_whole_stacks_of_slices(slab_run, tmp_path):
    _, output_dir = slab_run
    values, vqvae = run_folder.load_run(output_dir)
    images, codes, _ = stacks.generate_stacks(values, vqvae, output_dir, 2, seed=1)
    assert images.shape == (2, 8, 32, 32) and codes.shape == (2, 8, 8, 8)
    assert codes.max() < 16  # slice codes of the VQ-VAE's codebook, decoded from the slabs
    again = stacks.generate_stacks(values, vqvae, output_dir, 2, seed=1)[0]
    np.testing.assert_array_equal(images, again)
    predict.main(["--output-dir", str(output_dir), "--volumes", "1",
                  "--images-dir", str(tmp_path)])
    volume = volumes.read_volume(tmp_path / "samples" / "volume_000.nii.gz")
    assert volume.voxels.shape[:2] == (32, 32)  # 8 slices 3 mm apart, read at 1.5 mm
    # its prior draws slabs, not slices: single slices are refused with the command that works
    with pytest.raises(SystemExit, match="draws whole heads as slabs"):
        predict.main(["--output-dir", str(output_dir), "--samples", "2",
                      "--images-dir", str(tmp_path / "slices")])


def test_slab_depth_must_divide_the_stack(tmp_path):
    with pytest.raises(SystemExit, match="--slab-depth 4 must be a power of 2 that divides "
                                         "--slices-per-volume 6"):
        train.main(["--output-dir", str(tmp_path / "run"), "--slice-spacing", "3",
                    "--slices-per-volume", "6", "--num-slice-positions", "6",
                    "--slab-depth", "4", *TINY])
    assert not (tmp_path / "run").exists()


def test_similarity_judges_slab_volumes_without_independent_slices(slab_run, capsys):
    import similarity

    _, output_dir = slab_run
    similarity.main(["--output-dir", str(output_dir), "--volumes", "2",
                     "--feature-network", "no"])
    printed = capsys.readouterr().out
    assert "coronal reslices plausible" in printed and "streak" in printed
    assert "independent" not in printed
    # --feature-network no: no figure in a feature network's space, and no network trained
    assert "Fréchet" not in printed and "recall" not in printed
    assert not list(output_dir.glob("**/feature_network.keras"))
