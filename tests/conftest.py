"""Shared pytest set-up and fixtures: quiet TensorFlow, keep the tests out of the user's caches,
one Dask LocalCluster fixture, the score tools' synthetic experiment."""

import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Test helpers (tiny_release, training_slice, download_servers) import by their bare names
# from every test folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The embedded default experiment must never be built into the user's real cache by a
# test run: point HELDOUT_HOME at a fresh folder for the whole session.
os.environ["HELDOUT_HOME"] = tempfile.mkdtemp(prefix="heldout-test-home-")
atexit.register(shutil.rmtree, os.environ["HELDOUT_HOME"], ignore_errors=True)


@pytest.fixture(scope="module")
def dask_cluster():
    """A real Dask LocalCluster of 2 worker processes (`heldout.cluster.local_cluster`),
    reached by its address as a SLURM one is; closed after the module's tests."""
    pytest.importorskip("distributed", reason="the fan-out needs Dask's distributed")
    from heldout import cluster

    local = cluster.local_cluster(2)
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def scores_experiment(tmp_path_factory):
    """The synthetic experiment of `tool_runs.SCORES_SPEC`, written once per test module."""
    from tool_runs import SCORES_SPEC

    from heldout.testing.synthetic import write_synthetic_experiment

    return write_synthetic_experiment(tmp_path_factory.mktemp("cli") / "synthetic", SCORES_SPEC)


@pytest.fixture
def scores_experiment_copy(scores_experiment, tmp_path):
    """A copy of `scores_experiment` that one test may change."""
    from heldout.release import layout

    shutil.copytree(scores_experiment.path, tmp_path / "synthetic")
    return layout.open_experiment(tmp_path / "synthetic")
