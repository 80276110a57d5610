"""Every custom layer of brainvq/models/layers and the models' building blocks: built and run,
config round-trip, and `.keras` save/load with the same outputs (helpers.run_layer_test)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from brainvq.models.layers.attention import CausalAttentionBlock, SpatialSelfAttention  # noqa: E402
from brainvq.models.layers.gated import GatedPixelCNNLayer  # noqa: E402
from brainvq.models.layers.masked_conv import MaskedConv2D  # noqa: E402
from brainvq.models.layers.quantizer import VectorQuantizer  # noqa: E402
from brainvq.models.vqvae import ResidualBlock  # noqa: E402
from helpers import run_layer_test  # noqa: E402

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(2, 6, 6, 8)).astype("float32")
SEQUENCE = RNG.normal(size=(2, 9, 8)).astype("float32")

CASES = {
    "VectorQuantizer": (VectorQuantizer, {"num_codes": 16, "code_dim": 8}, [FEATURES],
                        "quantized"),
    "MaskedConv2D": (MaskedConv2D, {"filters": 4, "kernel_size": 3, "mask_type": "A"},
                     [FEATURES], None),
    "CausalAttentionBlock": (CausalAttentionBlock, {"filters": 8, "heads": 2},
                             [SEQUENCE, SEQUENCE], None),
    "SpatialSelfAttention": (SpatialSelfAttention, {"heads": 2}, [FEATURES], None),
    "ResidualBlock": (ResidualBlock, {"channels": 8}, [FEATURES], None),
    "GatedPixelCNNLayer": (GatedPixelCNNLayer, {"filters": 8, "mask_type": "A"},
                           [FEATURES, FEATURES], None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_custom_layer_config_and_save_load(name, tmp_path):
    layer_class, init_kwargs, inputs, output_key = CASES[name]
    outputs = run_layer_test(layer_class, init_kwargs, inputs, tmp_path, output_key=output_key)
    assert all(np.isfinite(keras.ops.convert_to_numpy(output)).all()
               for output in keras.tree.flatten(outputs))
