"""The input pipeline off TensorFlow: `ArrayBatches` (a PyDataset), and train.py on JAX with no
TensorFlow importable."""
import importlib.util

import numpy as np
import pytest

from brainvq.data.input_pipeline import ArrayBatches
from helpers import run_python


def _rows(batch):
    """The item numbers in a batch of (ids, (ids * 10,)) pairs, checking the pairs held."""
    ids, (tens,) = batch
    np.testing.assert_array_equal(tens, ids * 10)
    return list(ids)


def test_a_pass_holds_every_item_once_in_a_new_order_each_epoch():
    ids = np.arange(10)
    data = ArrayBatches((ids, (ids * 10,)), batch_size=4, shuffle=True, seed=1)
    assert data.num_batches == 3
    first = [row for index in range(3) for row in _rows(data[index])]
    assert sorted(first) == list(range(10)) and first != list(range(10))
    data.on_epoch_end()
    second = [row for index in range(3) for row in _rows(data[index])]
    assert sorted(second) == list(range(10)) and second != first
    again = ArrayBatches((ids, (ids * 10,)), batch_size=4, shuffle=True, seed=1)
    assert [row for index in range(3) for row in _rows(again[index])] == first  # seeded


def test_unshuffled_batches_keep_the_order_and_drop_remainder_drops_the_last():
    ids = np.arange(10)
    data = ArrayBatches(ids, batch_size=4, shuffle=False)
    assert [list(data[index]) for index in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert ArrayBatches(ids, batch_size=4, shuffle=False, drop_remainder=True).num_batches == 2


def test_a_repeated_stream_runs_on_across_passes_whatever_index_is_asked():
    ids = np.arange(6)
    data = ArrayBatches((ids, (ids * 10,)), batch_size=4, shuffle=True, seed=0, repeat=True)
    assert data.num_batches is None  # infinite: fit needs steps_per_epoch
    stream = [row for _ in range(6) for row in _rows(data[0])]  # index 0 every time
    passes = [stream[start:start + 6] for start in range(0, 24, 6)]
    assert all(sorted(one) == list(range(6)) for one in passes)  # each pass a permutation
    assert len({tuple(one) for one in passes}) > 1  # reshuffled between passes


JAX_WITHOUT_TENSORFLOW = """
    import json, pathlib, runpy, sys, tempfile
    sys.modules["tensorflow"] = None  # `import tensorflow` fails, as where it is not installed
    from helpers import TINY_TRACED, write_oasis_layout
    work = pathlib.Path(tempfile.mkdtemp())
    write_oasis_layout(work / "data")
    sys.argv = ["train.py", "--data-dir", str(work / "data"), "--output-dir", str(work / "run"),
                "--images-dir", str(work / "images"), "--epochs", "2", "--prior-epochs", "2",
                *TINY_TRACED]
    runpy.run_path("train.py", run_name="__main__")
    import csv, keras
    logs = {stage: list(csv.DictReader(open(work / "run" / f"{stage}_log.csv")))
            for stage in ("vqvae", "prior")}
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow_loaded": sys.modules.get("tensorflow") is not None,
        "epochs": {stage: len(rows) for stage, rows in logs.items()},
        "saved": sorted(path.name for path in (work / "run").glob("*.keras")),
    }))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_train_py_runs_on_jax_without_tensorflow():
    result = run_python(JAX_WITHOUT_TENSORFLOW, backend="jax", timeout=600)
    assert result["backend"] == "jax" and not result["tensorflow_loaded"]
    assert result["epochs"] == {"vqvae": 2, "prior": 2}
    assert {"vqvae.keras", "prior.keras"} <= set(result["saved"])
