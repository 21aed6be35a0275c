"""Every influence backend gives the same result, the plain definition's; auto and --backend.

The backends: numpy (float32 GEMMs), popcount (numba), tf-gpu (TensorFlow float16 blocks).
tf-gpu itself runs only where TensorFlow sees a GPU; its block arithmetic is the same on
any device, so it is also checked on TensorFlow's CPU device here.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.scores import experiment as scores
from heldout.scores.backends import tf_gpu as influence_gpu
from heldout.scores.backends.base import finish_topk
from heldout.scores.backends.bitplanes import MAX_EXACT_RUNS, PlaneProblem, RunBits
from heldout.scores.influence import (
    POPCOUNT_MIN_WORK,
    InfluenceAccumulator,
    choose_backend,
    compute_influence,
)
from heldout.scores.request import ScoreRequest
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment
from tests.scores.influence_cases import influence_by_definition, random_runs

TOOL = Path(__file__).resolve().parents[2] / "tools" / "compute_scores.py"
# Runs crossing 64-run words and 2048-run float16 blocks; odd N and N_test.
SIZES = [(63, 37, 11), (64, 515, 6), (65, 101, 7), (2049, 45, 5)]
NO_GPU = influence_gpu.why_no_gpu()


def _problem(num_runs, num_train, num_test, seed=0, ties=False):
    return random_runs(num_runs, num_train, num_test, seed, p_in=0.7, p_correct=0.6, ties=ties)


def _expected_topk(dense, k):
    """Each row's k best by (value descending, index ascending); -1 / NaN padding."""
    filled = np.nan_to_num(dense, nan=-np.inf)
    columns = np.broadcast_to(np.arange(dense.shape[1]), dense.shape)
    order = np.lexsort((columns, -filled), axis=1)[:, :k]
    values = np.take_along_axis(filled, order, axis=1)
    index = np.where(np.isfinite(values), order, -1)
    pad = k - index.shape[1]
    index = np.pad(index, ((0, 0), (0, pad)), constant_values=-1)
    values = np.pad(
        np.where(index[:, : k - pad] >= 0, values, np.nan),
        ((0, 0), (0, pad)),
        constant_values=np.nan,
    )
    return index, values.astype(np.float32)


def _tf_cpu(runs, topk):
    """The tf-gpu backend's arithmetic on TensorFlow's CPU device."""
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    num_train, num_test = runs[0].num_train, runs[0].num_test
    masks, tests = RunBits(num_train), RunBits(num_test)
    for aux in runs:
        masks.append(aux.train_mask())
        tests.append(aux.test_correctness())
    count_in = np.sum([aux.train_mask() for aux in runs], axis=0)
    correct = np.sum([aux.test_correctness() for aux in runs], axis=0)
    with np.errstate(divide="ignore"):
        scale = 1.0 / (count_in * (len(runs) - count_in).astype(np.float64))
    scale[~np.isfinite(scale)] = np.nan
    problem = PlaneProblem(
        tests.planes(),
        masks.planes(),
        correct,
        count_in,
        scale.astype(np.float32),
        len(runs),
    )
    if topk == 0:
        return influence_gpu.dense_influence(problem, device="/CPU:0")
    values, index = influence_gpu.topk_influence(problem, topk, device="/CPU:0")
    return finish_topk(values, index)


@pytest.mark.parametrize("num_runs, num_train, num_test", SIZES)
def test_dense_influence_is_identical_on_every_backend(num_runs, num_train, num_test):
    runs, masks, tests = _problem(num_runs, num_train, num_test, seed=num_runs)
    definition = influence_by_definition(masks, tests)
    numpy_result = compute_influence(runs, backend="numpy")
    popcount_result = compute_influence(runs, backend="popcount")
    assert (numpy_result.backend, popcount_result.backend) == ("numpy", "popcount")
    np.testing.assert_allclose(numpy_result.matrix, definition, rtol=0, atol=1e-6)
    # Up to 4096 runs the float32 path is exact too: the same float32 numbers, bit for bit.
    np.testing.assert_array_equal(popcount_result.matrix, numpy_result.matrix)
    np.testing.assert_array_equal(popcount_result.count_in, numpy_result.count_in)
    np.testing.assert_array_equal(popcount_result.count_out, numpy_result.count_out)
    np.testing.assert_array_equal(_tf_cpu(runs, 0), numpy_result.matrix)


@pytest.mark.parametrize("num_runs, num_train, num_test", SIZES)
@pytest.mark.parametrize("k", [1, 5, 60])  # 60 > N for some sizes: padding
def test_topk_is_identical_on_every_backend_ties_included(num_runs, num_train, num_test, k):
    runs, masks, tests = _problem(num_runs, num_train, num_test, seed=k, ties=True)
    dense = compute_influence(runs, backend="numpy").matrix
    index, values = _expected_topk(dense, k)
    for backend in ("numpy", "popcount"):
        top = compute_influence(runs, topk=k, backend=backend)
        assert top.backend == backend
        np.testing.assert_array_equal(top.topk_index, index, err_msg=backend)
        np.testing.assert_array_equal(top.topk_value, values, err_msg=backend)
    tf_index, tf_values = _tf_cpu(runs, k)
    np.testing.assert_array_equal(tf_index, index)
    np.testing.assert_array_equal(tf_values, values)


def test_more_than_4096_runs_agree_to_float32_precision():
    runs, masks, tests = _problem(4100, 9, 4, seed=5)
    exact = compute_influence(runs, backend="popcount").matrix
    np.testing.assert_allclose(exact, influence_by_definition(masks, tests), rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        compute_influence(runs, backend="numpy").matrix, exact, rtol=0, atol=1e-7
    )
    np.testing.assert_array_equal(_tf_cpu(runs, 0), exact)  # both exact integer counts


@pytest.mark.skipif(NO_GPU is not None, reason=f"the tf-gpu backend needs a GPU: {NO_GPU}")
@pytest.mark.parametrize("topk", [0, 5])
def test_tf_gpu_backend_on_the_gpu(topk):
    runs, *_ = _problem(2049, 515, 7, seed=9, ties=True)
    gpu = compute_influence(runs, topk=topk, backend="tf-gpu")
    cpu = compute_influence(runs, topk=topk, backend="popcount")
    assert gpu.backend == "tf-gpu"
    for field in ("matrix", "topk_index", "topk_value", "count_in"):
        if getattr(cpu, field) is not None:
            np.testing.assert_array_equal(getattr(gpu, field), getattr(cpu, field), field)


def test_auto_picks_by_problem_size_and_says_which():
    assert choose_backend(10, 50, 20).backend == "numpy"
    big = choose_backend(2000, 50000, 10000)  # CIFAR: 1e12 binary multiply-adds
    assert big.backend == "popcount"  # a GPU pays off only far beyond: GPU_MIN_WORK
    assert "binary multiply-adds" in big.reason
    assert choose_backend(MAX_EXACT_RUNS + 1, 50000, 10000).backend == "numpy"
    assert choose_backend(None, 50000, 10000).backend == "popcount"  # 1000 runs assumed
    runs, *_ = _problem(5, 9, 4)
    accumulator = InfluenceAccumulator(topk=2)
    assert accumulator.backend is None  # settled at the first run
    for aux in runs:
        accumulator.add(aux)
    assert accumulator.backend == "numpy" and accumulator.result().backend == "numpy"
    assert 5 * 9 * 4 < POPCOUNT_MIN_WORK


def test_backend_requests_that_cannot_run_are_refused_before_reading():
    with pytest.raises(UsageError, match="unknown influence backend"):
        InfluenceAccumulator(backend="cuda")
    with pytest.raises(UsageError, match="options of the numpy backend"):
        InfluenceAccumulator(backend="popcount", tile_test=64)
    if NO_GPU is not None:
        with pytest.raises(UsageError, match="tf-gpu backend cannot run here"):
            InfluenceAccumulator(backend="tf-gpu")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    spec = SyntheticSpec(num_train=90, num_test=17, subset_ratios=(0.7,), runs_per_ratio=70)
    return write_synthetic_experiment(tmp_path_factory.mktemp("backends") / "e", spec)


def test_score_experiment_records_the_backend(experiment):
    by_backend = {
        backend: scores.score_experiment(
            experiment, ScoreRequest(scores=["influence"], influence_topk=3, backend=backend)
        ).arrays()
        for backend in ("numpy", "popcount", "auto")
    }
    assert str(by_backend["popcount"]["influence_backend"]) == "popcount"
    assert str(by_backend["auto"]["influence_backend"]) == "numpy"  # a small problem
    for key in ("influence_topk_index", "influence_topk_value", "influence_count_in"):
        np.testing.assert_array_equal(by_backend["popcount"][key], by_backend["numpy"][key])


def _run_tool(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), "--noprogress", "--scores=influence", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_backend_flag(experiment, tmp_path):
    outputs = {}
    for backend in ("numpy", "popcount"):
        output = tmp_path / f"{backend}.npz"
        done = _run_tool(
            f"--experiment_dir={experiment.path}", f"--output={output}", f"--backend={backend}"
        )
        assert done.returncode == 0, done.stderr
        assert f"computed by the {backend} backend" in done.stdout
        with np.load(output) as npz:
            outputs[backend] = dict(npz)
    assert str(outputs["popcount"]["influence_backend"]) == "popcount"
    np.testing.assert_array_equal(outputs["popcount"]["influence"], outputs["numpy"]["influence"])
    done = _run_tool(
        f"--experiment_dir={experiment.path}", f"--output={tmp_path / 'x.npz'}", "--backend=fpga"
    )
    assert done.returncode == 2 and "backend" in done.stderr
    if NO_GPU is not None:
        done = _run_tool(
            f"--experiment_dir={experiment.path}",
            f"--output={tmp_path / 'g.npz'}",
            "--backend=tf-gpu",
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0 and "tf-gpu backend cannot run" in done.stderr
        assert not (tmp_path / "g.npz").exists()


@pytest.mark.parametrize("num_runs, num_train, num_test", SIZES)
def test_streamed_dense_influence_is_the_same_bits_block_by_block(num_runs, num_train, num_test):
    from heldout._core.row_blocks import RowBlocks
    from heldout.scores.backends import popcount

    runs, masks, tests = _problem(num_runs, num_train, num_test, seed=num_runs + 1)
    whole = compute_influence(runs, backend="popcount").matrix
    streamed = compute_influence(runs, backend="popcount", stream_dense=True)
    assert isinstance(streamed.matrix, RowBlocks) and streamed.matrix.shape == whole.shape
    np.testing.assert_array_equal(np.asarray(streamed.matrix), whole)
    with pytest.raises(ValueError, match="already consumed"):
        np.asarray(streamed.matrix)  # produced once
    # Blocks of 3 rows (a last, shorter one for odd N_test), one reused buffer.
    planes = [RunBits(num_test), RunBits(num_train)]
    for mask, test in zip(masks, tests, strict=True):
        planes[0].append(test)
        planes[1].append(mask)
    count_in = masks.sum(axis=0).astype(np.int32)
    with np.errstate(divide="ignore"):
        scale = (1.0 / (count_in * (num_runs - count_in))).astype(np.float32)
    scale[~np.isfinite(scale)] = np.nan
    problem = PlaneProblem(
        planes[0].planes(), planes[1].planes(), tests.sum(axis=0), count_in, scale, num_runs
    )
    blocks = [
        block.copy()
        for block in popcount.dense_influence_blocks(problem, block_bytes=3 * 4 * num_train)
    ]
    assert [len(b) for b in blocks[:-1]] == [3] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    # The numpy backend takes the option and returns the array, as always.
    assert isinstance(
        compute_influence(runs, backend="numpy", stream_dense=True).matrix, np.ndarray
    )
