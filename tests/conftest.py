"""Fixtures shared by the test modules."""
import pytest
from helpers import write_oasis_layout


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tiny OASIS PNG layout of synthetic brains: 2 train, 1 validate, 1 test subject."""
    return write_oasis_layout(tmp_path_factory.mktemp("oasis"))
