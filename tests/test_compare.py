"""Comparing our scores with published ones: statistics, loaders and the command line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heldout import compare

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_rankdata_averages_ties():
    np.testing.assert_array_equal(compare.rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])


def test_agreement_skips_nans_and_is_rank_based():
    reference = np.array([0.1, 0.5, 0.9, np.nan, 0.3])
    ours = reference**3  # monotone: Spearman 1, Pearson below 1
    ours[0] = np.nan
    agreement = compare.compare_scores(ours, reference)
    assert (agreement.num_examples, agreement.num_compared) == (5, 3)
    assert agreement.spearman == pytest.approx(1.0)
    assert agreement.pearson < 0.999
    assert agreement.max_abs_difference == pytest.approx(0.5 - 0.125)


def test_reversed_order_is_anticorrelated():
    values = np.linspace(0, 1, 11)
    assert compare.compare_scores(values, values[::-1]).spearman == pytest.approx(-1.0)


def test_length_mismatch_is_an_error():
    with pytest.raises(compare.CompareError, match="equally long"):
        compare.compare_scores(np.zeros(3), np.zeros(4))


def _pairs_file(path, **overrides):
    arrays = {
        "tr_idx": np.array([0, 2]),
        "tt_idx": np.array([1, 0]),
        "infl": np.array([0.2, 0.3]),
        "mem": np.array([0.5, 0.6]),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_pair_recovery_looks_up_test_row_train_column(tmp_path):
    pairs = compare.load_influence_pairs(_pairs_file(tmp_path / "p.npz"))
    influence = np.zeros((2, 3), np.float32)
    influence[1, 0] = 0.25  # pair (train 0, test 1) recovered
    influence[0, 2] = np.nan  # pair (train 2, test 0) undefined here
    recovery = compare.pair_recovery(pairs, influence, threshold=0.15)
    assert (recovery.num_pairs, recovery.num_defined, recovery.num_above_threshold) == (2, 1, 1)
    assert recovery.mean_abs_difference == pytest.approx(0.05)


def test_pair_file_errors_name_the_file(tmp_path):
    path = _pairs_file(tmp_path / "p.npz", mem=None)
    with pytest.raises(compare.CompareError, match=r"p.npz: missing keys \['mem'\]"):
        compare.load_influence_pairs(path)
    pairs = compare.load_influence_pairs(_pairs_file(tmp_path / "q.npz"))
    with pytest.raises(compare.CompareError, match="q.npz: pair indices reach"):
        compare.pair_recovery(pairs, np.zeros((1, 1), np.float32))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="published files not available")
def test_published_pair_files_load():
    pairs = compare.load_influence_pairs(
        SHARED_DATA / "cifar100_high_infl_pairs_infl0.15_mem0.25.npz"
    )
    assert pairs.train_index.size == 1015
    assert np.all(pairs.influence >= 0.15) and np.all(pairs.memorization >= 0.25)


def _run(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "compare_scores.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_cli_compares_with_a_published_style_file_and_pairs(tmp_path):
    rng = np.random.default_rng(0)
    cscore = rng.random(50)
    influence = rng.random((4, 50)).astype(np.float32)
    np.savez(tmp_path / "ours.npz", cscore=cscore, influence=influence)
    np.savez(tmp_path / "published.npz", scores=cscore, labels=np.zeros(50, np.int64))
    _pairs_file(tmp_path / "pairs.npz")
    result = _run(
        f"--scores={tmp_path / 'ours.npz'}",
        f"--reference={tmp_path / 'published.npz'}",
        f"--pairs={tmp_path / 'pairs.npz'}",
    )
    assert result.returncode == 0, result.stderr
    assert "cscore: 50 of 50 examples compared" in result.stdout
    assert "Spearman 1.0000" in result.stdout
    assert "influence pairs: 2 published, 2 defined here" in result.stdout


def test_cli_reports_unusable_input(tmp_path):
    np.savez(tmp_path / "ours.npz", cscore=np.zeros(3))
    result = _run(
        f"--scores={tmp_path / 'ours.npz'}",
        f"--reference={tmp_path / 'ours.npz'}",
        "--key=memorization",
    )
    assert result.returncode == 2
    assert "ours.npz: no `memorization`" in result.stderr
