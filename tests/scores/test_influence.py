"""The influence engine: registry, protocol, backends against the numpy reference."""

import numpy as np
import pytest

from heldout.errors import InconsistentRunError, ScoresError, UsageError
from heldout.scores.backends import base, registry
from heldout.scores.backends.base import InfluenceBackend, finish_topk
from heldout.scores.backends.bitplanes import BitPackedInfluenceAccumulator
from heldout.scores.influence import (
    BACKENDS,
    InfluenceAccumulator,
    choose_backend,
    compute_influence,
    influence_accumulator,
    plan_influence,
)
from tests.scores.influence_cases import influence_by_definition, random_runs


def _runs(num_runs=20, num_train=29, num_test=13, seed=0):
    return random_runs(num_runs, num_train, num_test, seed)


def test_the_registry_names_the_cli_backends_and_auto():
    assert BACKENDS == ("auto", "numpy", "popcount", "tf-gpu")
    assert set(registry.REGISTRY) == {"numpy", "popcount", "tf-gpu"}
    # tf-gpu is registered by its dotted path only: nothing imports it statically.
    assert all(isinstance(path, str) for path in registry.REGISTRY.values())


@pytest.mark.parametrize("name", ["numpy", "popcount", "tf-gpu"])
def test_every_registered_backend_implements_the_protocol(name):
    backend = registry.get_backend(name)
    assert isinstance(backend, InfluenceBackend)
    assert backend.name == name
    missing = backend.why_unavailable()
    assert missing is None or isinstance(missing, str)


def test_an_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown influence backend 'gemm'"):
        registry.get_backend("gemm")
    with pytest.raises(UsageError, match="choose from"):
        choose_backend(10, 10, 10, "gemm")


def test_numpy_reference_equals_the_definition():
    runs, masks, tests = _runs()
    result = compute_influence(runs, backend="numpy")
    np.testing.assert_allclose(
        result.matrix, influence_by_definition(masks, tests), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_array_equal(result.count_in, masks.sum(0))
    np.testing.assert_array_equal(result.count_out, len(runs) - masks.sum(0))
    assert result.backend == "numpy" and result.num_runs == len(runs)


@pytest.mark.parametrize("name", ["popcount", "tf-gpu"])
def test_bit_packed_backends_are_bit_identical_to_the_reference(name, monkeypatch):
    backend = registry.get_backend(name)
    if name == "popcount" and backend.why_unavailable():
        pytest.skip(backend.why_unavailable())
    if name == "tf-gpu":
        pytest.importorskip("tensorflow")
        # The same ops on the CPU device (no GPU needed).
        kernels = backend.kernels()
        monkeypatch.setattr(kernels, "_device", lambda device: "/CPU:0")
    runs, _, _ = _runs(seed=3)
    reference = compute_influence(runs, backend="numpy")
    accumulator = BitPackedInfluenceAccumulator(0, None, backend)
    for aux in runs:
        accumulator.add(aux)
    dense = accumulator.result()
    np.testing.assert_array_equal(dense.matrix, reference.matrix)
    assert dense.backend == name
    top = backend.accumulator(3, None, len(runs))
    for aux in runs:
        top.add(aux)
    want = compute_influence(runs, topk=3, backend="numpy")
    got = top.result()
    np.testing.assert_array_equal(got.topk_index, want.topk_index)
    np.testing.assert_array_equal(got.topk_value, want.topk_value)


def test_accumulator_settles_auto_at_the_first_run_and_records_it():
    runs, _, _ = _runs()
    accumulator = influence_accumulator(0, 0.7, "auto", len(runs))
    assert accumulator.backend is None
    for aux in runs:
        accumulator.add(aux)
    assert accumulator.backend == "numpy" and "small problem" in accumulator.choice.reason
    assert accumulator.result().subset_ratio == 0.7


def test_numpy_options_select_the_numpy_backend_and_are_refused_elsewhere():
    runs, _, _ = _runs()
    accumulator = InfluenceAccumulator(0, None, "auto", tile_test=8, tile_train=8)
    assert accumulator.backend == "numpy"
    with pytest.raises(UsageError, match="options of the numpy backend"):
        InfluenceAccumulator(0, None, "popcount", block_bytes=1 << 20)
    with pytest.raises(TypeError, match="unknown influence options"):
        InfluenceAccumulator(0, None, "numpy", tiles=3)


def test_an_unavailable_backend_is_refused_with_what_is_missing(monkeypatch):
    backend = registry.get_backend("popcount")
    monkeypatch.setattr(type(backend), "why_unavailable", lambda self: "needs numba (x)")
    with pytest.raises(UsageError, match="the popcount backend needs numba"):
        InfluenceAccumulator(0, None, "popcount")
    # auto falls back to numpy where popcount would have been chosen.
    assert choose_backend(2000, 50000, 10000).backend == "numpy"


def test_no_runs_and_inconsistent_runs_are_errors():
    with pytest.raises(ScoresError, match="no runs"):
        influence_accumulator().result()
    runs, _, _ = _runs()
    other, _, _ = _runs(num_train=30)
    accumulator = influence_accumulator(backend="numpy")
    accumulator.add(runs[0])
    with pytest.raises(InconsistentRunError):
        accumulator.add(other[0])


def test_finish_topk_orders_by_value_then_index_and_pads():
    values = np.array([[0.1, 0.5, 0.5, -np.inf]], np.float32)
    index = np.array([[4, 9, 2, -1]], np.int64)
    got_index, got_values = finish_topk(values, index)
    np.testing.assert_array_equal(got_index, [[2, 9, 4, -1]])
    np.testing.assert_array_equal(got_values, np.array([[0.5, 0.5, 0.1, np.nan]], np.float32))


def test_unknown_memory_allows_a_tebibyte(monkeypatch):
    monkeypatch.setattr(base, "memory_available", lambda: None)
    assert base.default_max_matrix_bytes() == 1 << 40
    monkeypatch.setattr(base, "memory_available", lambda: 12345)
    assert base.default_max_matrix_bytes() == 12345


def test_a_dense_matrix_over_the_limit_is_refused_before_storing_runs():
    runs, _, _ = _runs()
    accumulator = influence_accumulator(0, None, "numpy", max_matrix_bytes=16)
    with pytest.raises(base.InfluenceTooLargeError, match="top-k mode"):
        accumulator.add(runs[0])


def test_the_plan_names_the_backend_that_runs_and_bounds_its_peak():
    """#24: `--scores=influence` says its backend and peak memory before it starts."""
    import tracemalloc

    runs, _, _ = _runs(num_runs=16, num_train=4000, num_test=1000)
    plan = plan_influence(16, 4000, 1000)
    assert plan.choice.backend == "numpy" and "held whole" in plan.held
    tracemalloc.start()
    try:
        result = compute_influence(runs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.backend == plan.choice.backend
    assert 4 * 4000 * 1000 <= peak <= plan.peak_bytes


def test_at_the_default_experiments_size_numpy_holds_the_whole_matrix():
    """The docs' claim: only the popcount backend streams the dense matrix; auto picks
    numpy for 32 runs of 60 000 x 10 000, which holds all 2.4 GB of it."""
    plan = plan_influence(32, 60_000, 10_000, stream_dense=True)
    assert plan.choice.backend == "numpy" and plan.peak_bytes >= 4 * 60_000 * 10_000
    assert "held whole" in plan.held
    if registry.get_backend("popcount").why_unavailable() is None:
        streamed = plan_influence(32, 60_000, 10_000, 0, "popcount", stream_dense=True)
        assert streamed.peak_bytes < 128 << 20 and "blocks of rows" in streamed.held
    topk = plan_influence(32, 60_000, 10_000, topk=10)
    assert topk.peak_bytes < 128 << 20 and "top-10" in topk.held
