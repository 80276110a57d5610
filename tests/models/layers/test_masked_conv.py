"""Tests of the masked convolution (masked_conv.py): each mask sees exactly its causal window,
checked by perturbation."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

import modules  # noqa: E402
from helpers import (  # noqa: E402
    GRID,
    MASK_RULES,
    assert_dependencies,
    dependency_matrix,
    expected_matrix,
    perturb_vector,
)


@pytest.mark.parametrize("stack,mask_type", sorted(MASK_RULES))
def test_masked_conv_sees_exactly_its_causal_window(stack, mask_type):
    layer = modules.MaskedConv2D(4, 3, mask_type=mask_type, stack=stack)
    layer.build((None, GRID, GRID, 2))
    base = np.random.default_rng(0).normal(size=(GRID, GRID, 2)).astype("float32")
    change = dependency_matrix(lambda batch: ops.convert_to_numpy(layer(batch)), base,
                               perturb_vector(np.random.default_rng(1)))
    assert_dependencies(change, expected_matrix(GRID, MASK_RULES[(stack, mask_type)]))


def test_mask_is_applied_in_call_and_the_kernel_is_untouched():
    layer = modules.MaskedConv2D(1, 3, mask_type="A", stack="full", use_bias=False)
    layer.build((None, 5, 5, 1))
    layer.kernel.assign(np.ones((3, 3, 1, 1), "float32"))  # nonzero at masked entries too
    image = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    output = ops.convert_to_numpy(layer(image))
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.kernel), np.ones((3, 3, 1, 1)))
    # Type A full mask at (2, 2): the three pixels above and the one to the left.
    pixels = image[0, :, :, 0]
    assert output[0, 2, 2, 0] == pixels[1, 1] + pixels[1, 2] + pixels[1, 3] + pixels[2, 1]
    assert output[0, 0, 0, 0] == 0.0  # nothing before the first position
    # What call convolves with is kernel * mask.
    masked = ops.convert_to_numpy(layer.masked_kernel())[:, :, 0, 0]
    np.testing.assert_array_equal(masked, modules.pixelcnn_mask(3, "A", "full"))


def test_masked_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mask_type"):
        modules.MaskedConv2D(4, 3, mask_type="C")
    with pytest.raises(ValueError, match="stack"):
        modules.MaskedConv2D(4, 3, stack="diagonal")
    with pytest.raises(ValueError, match="odd"):
        modules.MaskedConv2D(4, 4)
