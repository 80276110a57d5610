"""Helpers the test modules share: tiny data, tiny models, and the perturbation checks of
causality. (Fixtures built from them live in conftest.py.)"""
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Flags for a tiny model that trains in seconds on 32x32 slices.
# A tiny run trains for a few steps, so it starts at a full learning rate: the default 200-step
# warm-up would leave it all but untrained. Its steps run eagerly: tracing them into a graph
# took most of a tiny run's time. TINY_TRACED keeps the graph, as a user's run has it (the
# end-to-end test, and the SIGKILL test, whose 30-step epochs run faster traced).
TINY_TRACED = ["--image-size", "32", "--num-downsamples", "2", "--channels", "8",
               "--num-codes", "16", "--code-dim", "8", "--num-residual-blocks", "1",
               "--batch-size", "8", "--learning-rate", "1e-3", "--warmup-steps", "0",
               "--prior-filters", "16", "--prior-layers", "2", "--prior-batch-size", "8"]
TINY = [*TINY_TRACED, "--run-eagerly"]


# --- data ---------------------------------------------------------------------------------------

def write_oasis_layout(root, cases=(2, 1, 1), slices=6, size=48, seed=0):
    """Synthetic 'brains' (ellipses with a ventricle-like hole) in the OASIS PNG layout."""
    rng = np.random.RandomState(seed)
    grid = np.linspace(-1, 1, size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    case = 0
    for split, count in zip(("train", "validate", "test"), cases):
        folder = pathlib.Path(root) / f"keras_png_slices_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            case += 1
            for slice_number in range(slices):
                radius = 0.5 + 0.3 * np.sin(np.pi * (slice_number + 1) / (slices + 1))
                brain = ((yy / (radius * 1.2)) ** 2 + (xx / radius) ** 2) < 1
                hole = ((yy / 0.25) ** 2 + (xx / (0.1 + 0.02 * slice_number)) ** 2) < 1
                image = 0.7 * brain - 0.5 * hole + rng.normal(0, 0.03, brain.shape)
                pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
                name = f"case_{case:03d}_slice_{slice_number}.nii.png"
                Image.fromarray(pixels).save(folder / name)
    return pathlib.Path(root)


def smooth_images(count, size, seed=0):
    """Blurry random blobs in [0, 1]: learnable in a few steps."""
    rng = np.random.RandomState(seed)
    grid = np.linspace(-1, 1, size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = []
    for _ in range(count):
        cy, cx, radius = rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(0.3, 0.7)
        images.append(np.clip(1.2 - np.hypot(yy - cy, xx - cx) / radius, 0, 1))
    return np.array(images, "float32")[..., None]


# --- tiny models and images ------------------------------------------------------------------

def tiny_vqvae(**kwargs):
    settings = dict(image_size=32, num_codes=16, code_dim=8, num_downsamples=2, channels=16,
                    num_residual_blocks=1, ssim_warmup_steps=10)
    settings.update(kwargs)
    import keras

    import modules

    model = modules.VQVAETrainer(**settings)
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def smooth_image(seed, size=64, sigma=3.0):
    """A random smooth image spread over [0.1, 0.9]."""
    from scipy import ndimage

    noise = np.random.default_rng(seed).random((size, size))
    image = ndimage.gaussian_filter(noise, sigma)
    image = (image - image.min()) / (image.max() - image.min())
    return (0.1 + 0.8 * image).astype(np.float32)


def run_python(code, backend="tensorflow", timeout=300):
    """Runs `code` in a new interpreter at the repo root; returns the JSON it prints last."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    import json
    import textwrap

    finished = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


# --- NIfTI volumes -------------------------------------------------------------------------------

def phantom(shape=(40, 48, 45)):
    """An asymmetric head in RAS voxel order (1 mm): a smooth ellipsoid with a bright ball in
    the right-anterior-superior part and a dark hole in the left-posterior part, so a left-right,
    front-back or up-down flip, or a wrong axis, changes the slices."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")

    def soft(distance):  # 1 inside, 0 outside, a few voxels of smooth edge
        return 1.0 / (1.0 + np.exp(np.clip(distance / 0.06, -50, 50)))

    head = 60.0 * soft(np.sqrt((x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.85) ** 2) - 1.0)
    ball = 40.0 * soft(np.sqrt((x - 0.35) ** 2 + (y - 0.4) ** 2 + (z - 0.2) ** 2) - 0.25)
    hole = 50.0 * soft(np.sqrt((x + 0.35) ** 2 + (y + 0.45) ** 2 + (z + 0.1) ** 2) - 0.2)
    return np.clip(head + ball - hole, 0.0, None).astype(np.float32)


def write_phantom_heads(folder, count=4):
    """`count` phantom heads of slightly different sizes, SUBJ000_T1.nii.gz ..., in `folder`:
    the stack runs' data."""
    for case in range(count):
        write_volume(pathlib.Path(folder) / f"SUBJ{case:03d}_T1.nii.gz",
                     phantom((40 + 2 * case, 48, 45 + case)), np.eye(4))


def write_volume(path, voxels, affine, header_codes=True):
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    # Without an affine nibabel writes sform and qform codes 0: no orientation in the header.
    image = nibabel.Nifti1Image(np.asarray(voxels, dtype=np.float32),
                                affine if header_codes else None)
    nibabel.save(image, str(path))
    return path


# --- PixelCNN causality -------------------------------------------------------------------------

GRID, CODES, FILTERS, LAYERS, SLICES = 8, 8, 16, 2, 4
UNCHANGED, CHANGED = 1e-6, 1e-5  # max |difference| of an output that must not / must move


def make_prior(grid=GRID, kernel_size=3, num_layers=LAYERS, seed=0, **kwargs):
    """A tiny built prior with larger-than-default embeddings, so every dependency shows."""
    import keras

    import modules

    keras.utils.set_random_seed(seed)
    prior = modules.GatedPixelCNN(num_codes=CODES, grid_size=grid, filters=FILTERS,
                                  num_layers=num_layers, kernel_size=kernel_size, dropout=0.0,
                                  num_slice_positions=SLICES, **kwargs)
    prior.build()
    rng = np.random.default_rng(seed)
    for embedding in (prior.code_embedding, prior.slice_embedding):
        shape = tuple(embedding.embeddings.shape)
        embedding.embeddings.assign(rng.normal(size=shape).astype("float32"))
    return prior


def logits_of(prior, codes, slices=None):
    from keras import ops

    inputs = {"code_indices": np.asarray(codes, "int32")}
    if slices is not None:
        inputs["slice_index"] = np.asarray(slices, "int32")
    return ops.convert_to_numpy(prior(inputs, training=False))


def dependency_matrix(apply, base, perturb):
    """D[p, q] = max |change| of the outputs at raster position p when input q is perturbed.

    `base` is one example [g, g, ...]; `apply` maps a batch of examples to outputs
    [B, g, g, C]; `perturb(example, row, column)` returns a copy changed at one position.
    """
    size = base.shape[0]
    batch = [base] + [perturb(base, row, column)
                      for row in range(size) for column in range(size)]
    outputs = np.asarray(apply(np.stack(batch)))
    change = np.abs(outputs[1:] - outputs[:1]).reshape(size * size, size * size, -1).max(-1)
    return change.T


def expected_matrix(size, depends):
    """E[p, q] = depends(row_p, column_p, row_q, column_q) over all position pairs."""
    rows, columns = np.divmod(np.arange(size * size), size)
    return depends(rows[:, None], columns[:, None], rows[None, :], columns[None, :])


def assert_dependencies(change, expected):
    leaks = np.argwhere(~expected & (change > UNCHANGED))
    assert len(leaks) == 0, f"outputs p depend on inputs q they must not see: (p, q) {leaks[:5]}"
    blind = np.argwhere(expected & (change <= CHANGED))
    assert len(blind) == 0, f"outputs p ignore inputs q they should see: (p, q) {blind[:5]}"


def perturb_vector(rng):
    def perturb(example, row, column):
        changed = example.copy()
        changed[row, column] += rng.normal(size=example.shape[-1]).astype(example.dtype)
        return changed
    return perturb


def perturb_code(rng):
    def perturb(example, row, column):
        changed = example.copy()
        changed[row, column] = (changed[row, column] + rng.integers(1, CODES)) % CODES
        return changed
    return perturb


# Which inputs q = (rq, cq) each masked 3x3 convolution output p = (r, c) may see.
H = 1  # half-width of a 3-wide kernel

MASK_RULES = {
    ("vertical", "A"): lambda r, c, rq, cq: (r - rq >= 1) & (r - rq <= H) & (abs(cq - c) <= H),
    ("vertical", "B"): lambda r, c, rq, cq: (r - rq >= 0) & (r - rq <= H) & (abs(cq - c) <= H),
    ("horizontal", "A"): lambda r, c, rq, cq: (rq == r) & (c - cq >= 1) & (c - cq <= H),
    ("horizontal", "B"): lambda r, c, rq, cq: (rq == r) & (c - cq >= 0) & (c - cq <= H),
    ("full", "A"): lambda r, c, rq, cq: (((r - rq >= 1) & (r - rq <= H) & (abs(cq - c) <= H))
                                         | ((rq == r) & (c - cq >= 1) & (c - cq <= H))),
    ("full", "B"): lambda r, c, rq, cq: (((r - rq >= 1) & (r - rq <= H) & (abs(cq - c) <= H))
                                         | ((rq == r) & (c - cq >= 0) & (c - cq <= H))),
}


# --- backends -----------------------------------------------------------------------------------

def run_on_jax(script, timeout=300):
    """Runs `script` with `python -c` in the repository under KERAS_BACKEND=jax (the backend is
    fixed at Keras's import, so it needs a process of its own) and checks it printed "jax ok"."""
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=timeout, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax ok" in result.stdout


# --- layers ---------------------------------------------------------------------------------------

def run_layer_test(layer_class, init_kwargs, inputs, tmp_path, output_key=None):
    """Checks a custom layer the way keras-hub's `run_layer_test` does: it builds and runs on
    `inputs` (a list of arrays, passed positionally), its config round-trips (`get_config` ->
    `from_config` -> the same config), and a model around it saved as `.keras` loads back with
    the same outputs. `output_key` picks one output of a layer that returns a dict.

    Returns:
        The layer's output on `inputs` (the picked one).
    """
    import keras
    from keras import ops

    layer = layer_class(**init_kwargs)
    outputs = layer(*[ops.convert_to_tensor(array) for array in inputs])
    config = layer.get_config()
    clone = layer_class.from_config(config)
    assert clone.get_config() == config, f"{layer_class.__name__}: config does not round-trip"

    symbolic = [keras.Input(shape=array.shape[1:], dtype=str(array.dtype)) for array in inputs]
    symbolic_outputs = layer_class.from_config(config)(*symbolic)
    if output_key is not None:
        outputs, symbolic_outputs = outputs[output_key], symbolic_outputs[output_key]
    model = keras.Model(symbolic, symbolic_outputs)
    expected = model.predict(inputs, verbose=0)
    path = pathlib.Path(tmp_path) / f"{layer_class.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.predict(inputs, verbose=0)
    for before, after in zip(keras.tree.flatten(expected), keras.tree.flatten(restored)):
        np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-5)
    return outputs


def read_csv(path):
    """A CSV file's rows as dicts (a Keras CSVLogger log, a metrics table)."""
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
