"""Min-norm RBF kernel interpolation (issue 11): exactness, in-place memory, clear errors."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist
from training_slice import write_fashion_slice, write_idx

from heldout._core.npz import load_npz
from heldout.datasets import idx
from heldout.kernels import interpolation as kernels
from heldout.kernels import rbf
from heldout.release import label_corruption
from heldout.training import plan

REPO = Path(__file__).resolve().parents[2]
COMMAND = REPO / "tools" / "kernel_interpolation.py"


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 |a - b|^2 for every pair (float64 makes the GEMM form exact enough)."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0)


def _direct_float64(train_x, labels, test_x, gamma=0.02):
    """The reference: the whole kernel in float64, solved by LU (scipy.linalg.solve)."""
    k = np.exp(-gamma * _squared_distances(train_x, train_x))
    alpha = scipy.linalg.solve(k, np.eye(10)[labels])
    return np.argmax(np.exp(-gamma * _squared_distances(test_x, train_x)) @ alpha, axis=1)


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory) -> str:
    return write_fashion_slice(tmp_path_factory.mktemp("slice"), 400, 100)


def test_kernel_blocks_and_products_match_the_dense_kernel():
    rng = np.random.default_rng(0)
    x = rng.random((300, 20))
    dense = np.exp(-0.3 * cdist(x, x, "sqeuclidean"))
    lower = rbf.kernel_lower(x.copy(), 0.3, jitter=0.5, block_size=64)
    assert lower.flags.f_contiguous
    np.testing.assert_allclose(np.tril(lower), np.tril(dense + 0.5 * np.eye(300)), atol=1e-12)
    v = rng.standard_normal((300, 3))
    np.testing.assert_allclose(
        rbf.symmetric_kernel_times(x, v, 0.3, block_size=64), dense @ v, atol=1e-10
    )
    np.testing.assert_allclose(
        rbf.kernel_times(x[:50], x, v, 0.3, block_size=16), dense[:50] @ v, atol=1e-10
    )


def test_predictions_equal_a_direct_float64_solve_on_5000_examples():
    """The acceptance check: float32, in place, refined == scipy.linalg.solve in float64."""
    try:
        train = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST_DIR, "train")
        test = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST_DIR, "test")
    except (OSError, kernels.HeldoutError) as error:
        pytest.skip(f"Debian's Fashion-MNIST is not usable ({error}); setup.sh installs it")
    n, t = 5000, 1000
    run = kernels.interpolate_dataset(num_train=n, num_test=t)
    assert run.interpolant.dtype == "float32" and run.interpolant.relative_residual <= 1e-6
    assert run.train_error == 0.0
    train_x = train.images[:n].reshape(n, -1) / 255.0
    expected = _direct_float64(train_x, train.labels[:n], test.images[:t].reshape(t, -1) / 255.0)
    np.testing.assert_array_equal(run.test_predictions, expected)
    assert 0.1 < run.test_error < 0.2


def test_the_matrix_is_factored_in_place_without_a_second_copy():
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.random((n, 16)).astype(np.float32)
    targets = kernels.one_hot(rng.integers(0, 10, n), 10)
    matrix_bytes = n * n * 4
    tracemalloc.start()
    try:
        fit = kernels.solve_interpolant(x, targets, kernels.SolveOptions(gamma=0.5, block_size=128))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fit.relative_residual <= 1e-6
    # One n x n matrix, plus blocks and vectors of a few n x 128: never two matrices.
    assert matrix_bytes < peak < 1.5 * matrix_bytes, peak / matrix_bytes


@pytest.mark.parametrize("gamma", [0.0, -0.02, float("nan")])
def test_gamma_must_be_positive(gamma):
    with pytest.raises(kernels.KernelError, match="gamma must be a positive number"):
        kernels.solve_interpolant(np.zeros((3, 4)), np.eye(3), kernels.SolveOptions(gamma=gamma))


def test_num_train_larger_than_the_dataset_is_refused(slice_dir):
    with pytest.raises(kernels.KernelError, match="num_train must be between 1 and the 400"):
        kernels.interpolate_dataset(data_dir=slice_dir, num_train=401)


def _duplicated_images(folder: Path) -> str:
    """A training set in which images repeat with different labels: K is exactly singular."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    images[25:] = images[:25]
    labels = np.concatenate([np.zeros(25), np.ones(25)]).astype(np.uint8)
    folder.mkdir()
    for split in ("train", "test"):
        image_stem, label_stem = idx.IDX_FILES[split]
        write_idx(folder / f"{image_stem}.gz", images)
        write_idx(folder / f"{label_stem}.gz", labels)
    return str(folder)


def test_a_singular_system_says_what_to_change(tmp_path):
    data_dir = _duplicated_images(tmp_path / "dups")
    for dtype in ("float32", "float64"):
        with pytest.raises(kernels.SingularKernelError) as caught:
            kernels.interpolate_dataset(
                data_dir=data_dir, options=kernels.SolveOptions(dtype=dtype)
            )
        message = str(caught.value)
        assert f"50x50 kernel matrix is numerically singular in {dtype}" in message
        assert "a ridge (jitter" in message
        assert ("dtype float64" in message) == (dtype == "float32")
    # The ridge it suggests solves the system (no longer an interpolant of the duplicates).
    ridge = kernels.interpolate_dataset(
        data_dir=data_dir, options=kernels.SolveOptions(jitter=1e-3)
    )
    assert ridge.interpolant.relative_residual <= 1e-6 and ridge.interpolant.jitter == 1e-3


def test_refinement_that_cannot_reach_the_tolerance_is_an_error():
    """Near-duplicates with other labels: float32's factor succeeds but is too inaccurate
    for refinement to reach the tolerance (it stalls, or crawls); float64 solves it."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 200, (50, 784)).astype(np.float64)
    images[25:] = images[:25]
    images[25:, 0] += 2  # 2/255 apart in one pixel
    targets = kernels.one_hot(np.repeat([0, 1], 25), 10)
    with pytest.raises(kernels.KernelError, match="refine.*dtype float64") as caught:
        kernels.solve_interpolant(images / 255, targets, kernels.SolveOptions(max_refine_steps=4))
    assert "does not reduce the residual" in str(caught.value) or (
        "after 4 refinement steps, above the tolerance 1e-06" in str(caught.value)
    )
    exact = kernels.solve_interpolant(images / 255, targets, kernels.SolveOptions(dtype="float64"))
    assert exact.relative_residual <= 1e-6
    assert (exact.train_predictions() == np.repeat([0, 1], 25)).all()


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(COMMAND), *args], capture_output=True, text=True, timeout=120
    )


def test_command_fits_random_labels_and_writes_what_it_is_a_result_of(slice_dir, tmp_path):
    output = tmp_path / "out" / "random.npz"
    completed = _command(
        f"--data_dir={slice_dir}", "--label_corrupt_prob=1.0", "--seed=3", f"--output={output}"
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert "train err = 0.00% (400 examples)" in lines
    assert lines[-1].startswith("err = ") and lines[-1].endswith("%")
    arrays = load_npz(output)
    assert "coefficients" not in arrays
    assert float(arrays["train_error"]) == 0.0 and float(arrays["relative_residual"]) <= 1e-6
    assert lines[-1] == f"err = {100 * float(arrays['test_error']):.2f}%"
    assert (str(arrays["dataset"]), str(arrays["data_dir"])) == ("fashion_mnist_idx", slice_dir)
    assert (float(arrays["gamma"]), int(arrays["seed"]), int(arrays["num_train"])) == (0.02, 3, 400)
    # The same random labels as a heldout experiment with --label_corrupt_prob=1 --seed=3.
    clean = idx.load_idx_split(slice_dir, "train").labels
    expected = label_corruption.corrupt_labels(clean, 1.0, 10, plan.corruption_rng(3)).apply(clean)
    np.testing.assert_array_equal(arrays["train_labels"], expected)
    np.testing.assert_array_equal(arrays["train_predictions"], expected)
    np.testing.assert_array_equal(
        arrays["test_labels"], idx.load_idx_split(slice_dir, "test").labels
    )


def test_command_errors_are_one_line(slice_dir, tmp_path):
    cases = (
        (["--gamma=0"], "--gamma must be positive"),
        ([f"--data_dir={slice_dir}", "--num_train=401"], "num_train must be between 1 and"),
        ([f"--data_dir={_duplicated_images(tmp_path / 'd')}"], "numerically singular in float32"),
    )
    for args, needle in cases:
        completed = _command(*args)
        assert completed.returncode == 2, completed.stdout + completed.stderr
        (line,) = completed.stderr.strip().splitlines()
        assert line.startswith("kernel_interpolation: error: ") and needle in line, line


def test_the_command_does_not_import_tensorflow():
    code = (
        "import sys, heldout.cli.kernel_interpolation, heldout.kernels.interpolation; "
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
