"""Fixtures shared by the test modules."""
import pytest

from helpers import write_oasis_layout


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tiny OASIS PNG layout of synthetic brains: 2 train, 1 validate, 1 test subject."""
    return write_oasis_layout(tmp_path_factory.mktemp("oasis"))


@pytest.fixture
def quick_evaluation(monkeypatch, request):
    """The evaluation networks (the realism feature network, the covariate rulers) trained for
    their fewest passes (3) over a few dozen images: the script tests check that their figures
    are computed and printed, while tests/evaluation checks what the networks learn at their
    real sizes."""
    from brainvq.evaluation import covariate_checks, feature_network

    monkeypatch.setattr(feature_network, "MAX_TRAINING_IMAGES", 32)
    monkeypatch.setattr(feature_network, "IMAGES_SEEN", 0)  # the fewest passes: 3
    monkeypatch.setattr(covariate_checks, "RULER_COPIES", 1)
    monkeypatch.setattr(covariate_checks, "IMAGES_SEEN", 0)  # the fewest passes: 3
    # ... and their fit, predict and evaluate run eagerly: tracing a tiny network's steps into a
    # graph costs seconds, running its few steps as Python a fraction of that. The samplers stay
    # compiled graphs (a grid's worth of steps run eagerly costs many times its tracing). Tests
    # marked `traced` keep the graphs a user's run has.
    if "traced" not in request.keywords:
        run_keras_eagerly(monkeypatch)
    yield


@pytest.fixture(autouse=True)
def eager(monkeypatch, request):
    """Tests marked `eager` run Keras's fit, predict and evaluate as Python: their few steps
    cost less than tracing each into a graph."""
    if "eager" in request.keywords:
        run_keras_eagerly(monkeypatch)


def run_keras_eagerly(monkeypatch):
    """Every Keras model runs its fit, predict and evaluate steps eagerly, whatever it asks."""
    import keras

    monkeypatch.setattr(keras.Model, "run_eagerly",
                        property(lambda model: True, lambda model, value: None))


@pytest.fixture(autouse=True)
def graph_samplers(monkeypatch):
    """The samplers compiled as TensorFlow graphs without XLA: on a tiny prior XLA's compile
    costs 2-3 s per sampler and the suite builds dozens of them.
    `test_sampling.py::test_xla_sampler_draws_what_the_graph_sampler_draws` runs XLA."""
    from brainvq.generation import sampling_loops

    monkeypatch.setattr(sampling_loops, "_XLA_WORKS", False)


def pytest_collection_modifyitems(items):
    """The end-to-end modules (tests/scripts, tests/runs: a minute or two each) first, then the
    rest in their order: the xdist workers take a module at a time, and ending on the small ones
    leaves no worker waiting on a long module at the end of the run."""
    def long_first(item):
        return item.path.parent.name not in ("scripts", "runs")

    items.sort(key=long_first)  # a stable sort: each module's tests keep their order
