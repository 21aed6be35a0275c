"""The paper's per-class analyses: class means and SDs, r, the table and the figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from tool_runs import run_script

from heldout.datasets.base import ArraySplit
from heldout.datasets.numpy_source import save_npz
from heldout.errors import ScoresError
from heldout.published import analysis

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_class_statistics_leave_nan_out_and_count_it():
    scores = np.array([0.9, 0.7, np.nan, 0.2, 0.4, 0.6])
    labels = np.array([0, 0, 0, 1, 1, 1])
    stats = analysis.class_statistics(scores, labels)
    np.testing.assert_array_equal(stats.counts, [2, 3])
    np.testing.assert_allclose(stats.mean, [0.8, 0.4])
    np.testing.assert_allclose(stats.std, [np.std([0.9, 0.7]), np.std([0.2, 0.4, 0.6])])
    assert (stats.num_examples, stats.num_undefined) == (5, 1)
    assert stats.ranked().tolist() == [0, 1]
    with pytest.raises(ScoresError, match="equally long"):
        analysis.class_statistics(scores, labels[:3])


def test_published_cifar10_class_means_and_sds_correlate_at_minus_096():
    path = SHARED_DATA / "cifar10-cscores-orig-order.npz"
    if not path.is_file():
        pytest.skip(f"the published CIFAR-10 C-scores are not in {SHARED_DATA}")
    from heldout.published import load_cscores

    record = load_cscores(path)
    stats = analysis.class_statistics(record.scores, record.labels)
    assert stats.num_examples == 50_000 and stats.counts.tolist() == [5000] * 10
    assert stats.mean_std_correlation == pytest.approx(-0.959, abs=0.001)
    # cat (3) is the least regular class, automobile (1) the most.
    assert stats.labels[stats.ranked()[0]] == 1 and stats.labels[stats.ranked()[-1]] == 3


def _cli(*args):
    return run_script("tools/analyze_scores.py", *args)


def test_cli_on_the_published_cifar10_file(tmp_path):
    path = SHARED_DATA / "cifar10-cscores-orig-order.npz"
    if not path.is_file():
        pytest.skip(f"the published CIFAR-10 C-scores are not in {SHARED_DATA}")
    result = _cli(f"--scores_file={path}", f"--output_dir={tmp_path}", "--formats=png", "--top=2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: 50000 examples with a score (0 undefined) in 10 classes"
    assert lines[1] == "r(class mean, class SD) = -0.959 over 10 classes (50000 examples)"
    assert lines[4].split()[:2] == ["automobile", "5000"]  # most regular
    assert lines[8].split()[:2] == ["cat", "5000"]  # least regular
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["class_statistics.png", "cscore_histogram.png"]  # no images, no ratios
    assert matplotlib.image.imread(tmp_path / "class_statistics.png").shape[2] in (3, 4)


def _tiny_dataset(tmp_path: Path, labels: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    split = ArraySplit(
        images=rng.integers(0, 256, (len(labels), 8, 8, 1), dtype=np.uint8), labels=labels
    )
    path = tmp_path / "tiny.npz"
    save_npz(path, {"train": split, "test": split}, num_classes=3)
    return path


def test_cli_on_our_scores_with_images_draws_every_figure(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.arange(60) % 3
    by_ratio = rng.random((2, 60))
    np.savez(
        tmp_path / "scores.npz",
        cscore=by_ratio.mean(0),
        cscore_by_ratio=by_ratio,
        subset_ratios=np.array([0.5, 0.7]),
    )
    data = _tiny_dataset(tmp_path, labels)
    out = tmp_path / "figures"
    result = _cli(
        f"--scores_file={tmp_path / 'scores.npz'}",
        "--dataset=npz",
        f"--data_dir={data}",
        f"--output_dir={out}",
        "--formats=png",
    )
    assert result.returncode == 0, result.stderr
    assert "60 examples with a score (0 undefined) in 3 classes" in result.stdout
    assert sorted(p.stem for p in out.iterdir()) == [
        "class_statistics",
        "cscore_bins",
        "cscore_histogram",
        "examples",
    ]


def test_cli_refuses_a_file_whose_labels_disagree_with_the_dataset(tmp_path):
    """A published file in the original order against a dataset in another order."""
    labels = np.arange(30) % 3
    np.savez(tmp_path / "published.npz", scores=np.linspace(0, 1, 30), labels=labels)
    data = _tiny_dataset(tmp_path, np.roll(labels, 1))
    result = _cli(
        f"--scores_file={tmp_path / 'published.npz'}", "--dataset=npz", f"--data_dir={data}"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "its labels disagree with" in result.stderr and "for 30 of 30" in result.stderr
    no_labels = tmp_path / "mnist-like.npy"
    np.save(no_labels, np.zeros(30))
    result = _cli(f"--scores_file={no_labels}")
    assert result.returncode == 2 and "has no labels" in result.stderr
