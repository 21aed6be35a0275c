"""Identity before comparison: files that record another dataset or order are refused."""

import json
from pathlib import Path

import numpy as np
import pytest
from tool_runs import run_script

from heldout.datasets.idx import write_idx
from heldout.errors import IdentityMismatchError
from heldout.published import load_cscores
from heldout.published.identity import (
    DataIdentity,
    check_same_data,
    identity_from_provenance,
    identity_of_published,
)
from heldout.scores.file import provenance_array, scores_provenance

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
FASHION = {"dataset": "fashion_mnist_idx", "index_order": "idx", "n_train": 60_000}


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"the published file {name} is not in {SHARED_DATA}")
    return path


def _scores_file(path: Path, experiment: dict = FASHION, **arrays) -> Path:
    """A scores file whose provenance records `experiment` (as `scores_provenance` does)."""
    record = {"heldout_version": "0", "experiment": {"name": "x", "path": "/x", **experiment}}
    np.savez(path, provenance=provenance_array(record), **arrays)
    return path


def test_the_scores_provenance_gives_the_identity():
    class Meta:
        dataset, index_order, num_train, num_test = "fashion_mnist_idx", "idx", 60_000, 10_000

    class Experiment:
        meta, name, path = Meta(), "fashion_mnist-mlp", "/x/fashion_mnist-mlp"

    identity = identity_from_provenance(scores_provenance(Experiment(), [], {}), "s.npz")
    assert identity == DataIdentity("s.npz", "fashion_mnist", "idx", 60_000)


def test_published_files_are_known_by_name_and_shape():
    mnist = identity_of_published("/d/mnist-cscores.npy", (60_000,))
    assert (mnist.dataset, mnist.index_order, mnist.num_examples) == ("mnist", "tfds", 60_000)
    cifar = identity_of_published("cifar10-cscores-orig-order.npz", (50_000,))
    assert (cifar.dataset, cifar.index_order) == ("cifar10", "original")
    assert identity_of_published("mnist-cscores.npy", (10,)) is None  # renamed: unknown
    assert identity_of_published("mine.npy", (60_000,)) is None


def test_mismatches_are_refused_naming_both_sides_unless_allowed():
    ours = DataIdentity("scores.npz", "cifar10", "tfds", 50_000)
    published = DataIdentity("cifar10-cscores-orig-order.npz", "cifar10", "original", 50_000)
    with pytest.raises(IdentityMismatchError) as caught:
        check_same_data(ours, published)
    message = str(caught.value)
    assert message.startswith("order mismatch: scores.npz (cifar10, tfds order, 50000 ")
    assert "cifar10-cscores-orig-order.npz (cifar10, original order" in message
    assert "\n" not in message and "--allow_mismatch" in message
    assert check_same_data(ours, published, allow_mismatch=True).startswith("order mismatch")
    assert check_same_data(ours, DataIdentity("x", "cifar10", None)) is None  # order unknown
    assert check_same_data(ours, None) is None


def _compare(*args):
    return run_script("tools/compare_scores.py", *args)


def _one_line(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_fashion_mnist_scores_against_the_published_mnist_cscores_are_refused(tmp_path):
    mnist = _shared("mnist-cscores.npy")
    scores = _scores_file(tmp_path / "scores.npz", cscore=np.random.default_rng(0).random(60_000))
    line = _one_line(_compare(f"--scores_file={scores}", f"--reference={mnist}"))
    assert line.startswith("compare_scores: error: dataset and order mismatch: "), line
    assert f"{scores} (fashion_mnist, idx order, 60000 examples)" in line
    assert f"{mnist} (mnist, tfds order, 60000 examples)" in line
    allowed = _compare(f"--scores_file={scores}", f"--reference={mnist}", "--allow_mismatch")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("--allow_mismatch given: dataset and order mismatch: ")
    assert "cscore: 60000 of 60000 examples compared" in allowed.stdout


def test_published_cifar100_pairs_against_fashion_mnist_influence_are_refused(tmp_path):
    """The pairs re-indexed into a small matrix, so that every pair is defined here: the
    comparison printed "1015 defined here" for a Fashion-MNIST matrix."""
    published = np.load(_shared("cifar100_high_infl_pairs_infl0.15_mem0.25.npz"))
    pairs = tmp_path / "cifar100_high_infl_pairs_infl0.15_mem0.25.npz"  # name and shape kept
    count = published["tr_idx"].size
    np.savez(
        pairs,
        tr_idx=np.arange(count) % 50,
        tt_idx=np.arange(count) // 50,
        infl=published["infl"],
        mem=published["mem"],
    )
    scores = _scores_file(
        tmp_path / "scores.npz",
        influence=np.full((count // 50 + 1, 50), 0.2, np.float32),
        memorization=np.zeros(50),
    )
    line = _one_line(_compare(f"--scores_file={scores}", f"--pairs={pairs}"))
    assert "dataset mismatch: " in line and "(fashion_mnist, idx order" in line
    assert f"{pairs} (cifar100)" in line
    allowed = _compare(f"--scores_file={scores}", f"--pairs={pairs}", "--allow_mismatch")
    assert allowed.returncode == 0, allowed.stderr
    assert f"influence pairs: {count} published, {count} defined here" in allowed.stdout


def _idx_folder(folder: Path, num_train: int) -> Path:
    """A tiny MNIST-like IDX folder (`mnist_idx`)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, count in (("train", num_train), ("t10k", 2)):
        write_idx(
            folder / f"{stem}-images-idx3-ubyte.gz",
            rng.integers(0, 255, (count, 28, 28)).astype(np.uint8),
        )
        labels = (np.arange(count) % 3).astype(np.uint8)
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", labels)
    return folder


def test_analyze_refuses_scores_of_another_dataset(tmp_path):
    fashion = dict(FASHION, n_train=6)
    scores = _scores_file(tmp_path / "scores.npz", fashion, cscore=np.linspace(0, 1, 6))
    data = _idx_folder(tmp_path / "idx", 6)
    args = (f"--scores_file={scores}", "--dataset=mnist_idx", f"--data_dir={data}")
    line = _one_line(run_script("tools/analyze_scores.py", *args))
    assert line.startswith("analyze_scores: error: dataset mismatch: "), line
    assert "--dataset=mnist_idx (mnist, idx order)" in line
    allowed = run_script("tools/analyze_scores.py", *args, "--allow_mismatch")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("--allow_mismatch given: dataset mismatch: ")


def test_published_export_refuses_labels_of_another_dataset_and_records_the_override(tmp_path):
    fashion = dict(FASHION, n_train=6)
    scores = _scores_file(tmp_path / "scores.npz", fashion, cscore=np.linspace(0, 1, 6))
    data = _idx_folder(tmp_path / "idx", 6)
    output = tmp_path / "exported.npz"
    args = (
        "--export=cscores",
        f"--scores_file={scores}",
        "--dataset=mnist_idx",
        f"--data_dir={data}",
        f"--output={output}",
    )
    line = _one_line(run_script("tools/published_scores.py", *args))
    assert line.startswith("published_scores: error: dataset mismatch: "), line
    assert not output.exists()
    allowed = run_script("tools/published_scores.py", *args, "--allow_mismatch")
    assert allowed.returncode == 0, allowed.stderr
    provenance = load_cscores(output).provenance
    assert provenance["allow_mismatch"] is True
    assert provenance["mismatch"].startswith("dataset mismatch: ")
    assert provenance["experiment"]["dataset"] == "fashion_mnist_idx"
    assert json.dumps(provenance)  # still JSON


def test_our_cifar10_scores_against_the_published_original_order_are_refused(tmp_path):
    published = _shared("cifar10-cscores-orig-order.npz")
    cifar10 = {"dataset": "cifar10:3.0.2", "index_order": "tfds", "n_train": 50_000}
    scores = _scores_file(tmp_path / "scores.npz", cifar10, cscore=np.zeros(50_000))
    line = _one_line(_compare(f"--scores_file={scores}", f"--reference={published}"))
    assert line.startswith("compare_scores: error: order mismatch: "), line
    assert f"{published} (cifar10, original order, 50000 examples)" in line
    assert "(heldout map-order)" in line
