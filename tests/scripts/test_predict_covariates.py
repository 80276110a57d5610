"""predict.py's covariate rows: the samples take the slice prior's, the volumes of a run with a
3D code take its stack prior's (its own --volume-condition-on), each checked against its prior."""
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("keras")

import predict  # noqa: E402
from brainvq.runs.run_folder import RunError  # noqa: E402

AGE = {"name": "age", "kind": "continuous", "low": 20.0, "high": 80.0}
SEX = {"name": "sex", "kind": "categorical", "classes": ["F", "M"]}
HEAD = {"name": "head_volume", "kind": "continuous", "low": 2000.0, "high": 3000.0}
SLICE_PRIOR = SimpleNamespace(covariates=[AGE, SEX])
STACK_PRIOR = SimpleNamespace(covariates=[AGE, SEX, HEAD])
THREE_D = {"slice_spacing": 3.0, "volume_latent": "3d"}
SLICES = {"slice_spacing": 3.0, "volume_latent": "slices"}


def rows(values, samples, volumes, stack_prior=STACK_PRIOR):
    return predict.covariate_rows("run", values, {"age": "50"}, SLICE_PRIOR, stack_prior,
                                  samples, volumes)


def test_samples_and_3d_volumes_take_each_their_own_priors_row():
    slice_row, volume_row = rows(THREE_D, samples=4, volumes=2)
    np.testing.assert_array_equal(slice_row, [0.5, np.nan])
    np.testing.assert_array_equal(volume_row, [0.5, np.nan, np.nan])
    slice_row, volume_row = rows(THREE_D, samples=0, volumes=2)
    assert slice_row is None
    np.testing.assert_array_equal(volume_row, [0.5, np.nan, np.nan])


def test_volumes_drawn_slice_by_slice_take_the_slice_priors_row():
    slice_row, volume_row = rows(SLICES, samples=4, volumes=2)
    np.testing.assert_array_equal(slice_row, [0.5, np.nan])
    assert volume_row is slice_row


def test_a_3d_prior_without_covariates_refuses_the_request():
    with pytest.raises(RunError, match="trained without covariates"):
        rows(THREE_D, samples=0, volumes=2, stack_prior=SimpleNamespace(covariates=[]))
