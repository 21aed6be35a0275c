"""Hostile values in published files and in threshold flags, as a user meets them: every
one is refused before any work with one line naming the file or the flag, never a
traceback, never a NaN statistic or a zero that looks like a finding.

Commands run in fresh processes (`tool_runs.run_script`) on files written here, some
derived from the real published files in ../shared/data (skipped where absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tool_runs import run_script, run_tool

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
CIFAR10_CSCORES = SHARED_DATA / "cifar10-cscores-orig-order.npz"
CIFAR100_PAIRS = SHARED_DATA / "cifar100_high_infl_pairs_infl0.15_mem0.25.npz"


def _shared(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is absent (the published files live in ../shared/data)")
    return path


def _one_line_error(done, command: str, *needles: str, status: int | None = None) -> str:
    """The process failed with exactly one `<command>: error: ...` line holding `needles`."""
    assert done.returncode != 0, done.stdout + done.stderr
    if status is not None:
        assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{command}: error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _cscores(tmp_path: Path, name: str, scores: np.ndarray, **extra) -> Path:
    path = tmp_path / name
    np.savez(path, labels=np.arange(scores.size) % 10, scores=scores, **extra)
    return path


def _inspect(path: Path):
    return run_script("tools/published_scores.py", f"--inspect={path}", timeout=120)


# ------------------------------------------------------------------- published files


@pytest.mark.parametrize(
    "value, shown", [(np.inf, "inf"), (-np.inf, "-inf"), (1.5, "1.5"), (-0.25, "-0.25")]
)
def test_a_cscore_file_with_a_value_no_cscore_can_take_is_refused(tmp_path, value, shown):
    scores = np.linspace(0.1, 0.9, 50)
    scores[7] = value
    path = _cscores(tmp_path, "c.npz", scores)
    line = _one_line_error(_inspect(path), "published_scores", str(path), "[0, 1]", "[7]")
    assert shown in line


def test_a_real_cscore_file_with_one_infinity_is_refused(tmp_path):
    arrays = dict(np.load(_shared(CIFAR10_CSCORES)))
    arrays["scores"] = arrays["scores"].copy()
    arrays["scores"][123] = np.inf
    path = tmp_path / "cifar10-cscores-orig-order.npz"
    np.savez(path, **arrays)
    _one_line_error(_inspect(path), "published_scores", str(path), "inf", "[123]")


@pytest.mark.parametrize(
    "scores, why", [(np.full(20, np.nan), "all 20 are NaN"), (np.zeros(0), "empty")]
)
def test_a_cscore_file_with_no_defined_score_is_one_line(tmp_path, scores, why):
    """Was numpy's "zero-size array to reduction operation" traceback."""
    path = _cscores(tmp_path, "c.npz", scores)
    _one_line_error(_inspect(path), "published_scores", str(path), "no defined C-score", why)


def test_nan_marks_an_undefined_cscore_and_is_still_accepted(tmp_path):
    scores = np.linspace(0.0, 1.0, 20)
    scores[3] = np.nan  # an example no run held out: our own exports hold these
    done = _inspect(_cscores(tmp_path, "c.npz", scores))
    assert done.returncode == 0, done.stderr
    assert "19 defined, range [0.0000, 1.0000]" in done.stdout


def test_a_deeply_nested_provenance_is_one_line(tmp_path):
    """Was a RecursionError from json.loads."""
    deep = "[" * 100_000 + "]" * 100_000
    path = _cscores(tmp_path, "c.npz", np.linspace(0, 1, 10), provenance=np.asarray(deep))
    _one_line_error(_inspect(path), "published_scores", str(path), "provenance", "nested")


def test_a_scores_file_with_a_deeply_nested_provenance_is_one_line(tmp_path):
    scores = tmp_path / "scores.npz"
    np.savez(scores, cscore=np.linspace(0, 1, 10), provenance=np.asarray("[" * 100_000))
    done = run_script(
        "tools/published_scores.py",
        "--export=cscores",
        f"--scores_file={scores}",
        f"--labels={_labels(tmp_path, 10)}",
        f"--output={tmp_path / 'out.npz'}",
        timeout=120,
    )
    _one_line_error(done, "published_scores", str(scores), "provenance")
    assert not (tmp_path / "out.npz").exists()


def _labels(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "labels.npz"
    np.savez(path, tr_labels=np.arange(n) % 3, tt_labels=np.arange(4) % 3)
    return path


@pytest.mark.parametrize("key, value", [("infl", np.nan), ("mem", np.inf), ("infl", 2.0)])
def test_a_pairs_file_with_a_non_finite_or_impossible_value_is_refused(tmp_path, key, value):
    arrays = dict(np.load(_shared(CIFAR100_PAIRS)))
    arrays[key] = arrays[key].copy()
    arrays[key][3] = value
    path = tmp_path / "pairs.npz"
    np.savez(path, **arrays)
    _one_line_error(_inspect(path), "published_scores", str(path), key, "[-1, 1]", "[3]")


def test_a_pairs_file_missing_mem_is_named_as_such(tmp_path):
    """Was: "no `scores` array" (it was taken for a C-score file)."""
    arrays = dict(np.load(_shared(CIFAR100_PAIRS)))
    del arrays["mem"]
    path = tmp_path / "pairs.npz"
    np.savez(path, **arrays)
    line = _one_line_error(_inspect(path), "published_scores", str(path), "pairs", "mem")
    assert "`scores`" not in line


@pytest.fixture
def classwise_file(scores_experiment, tmp_path):
    """A class-wise influence file exported from the synthetic experiment's runs."""
    labels = tmp_path / "labels.npz"
    np.savez(labels, tr_labels=np.arange(120) % 3, tt_labels=np.arange(30) % 3)
    path = tmp_path / "classwise.npz"
    done = run_script(
        "tools/published_scores.py",
        "--export=classwise",
        f"--experiment_dir={scores_experiment.path}",
        f"--labels={labels}",
        f"--output={path}",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.mark.parametrize(
    "key, where, value, shown",
    [("tr_mem", 2, np.inf, "at entry [2]"), ("infl_matrix_class1", (1, 1), 5.0, "(1, 1)")],
)
def test_a_classwise_file_with_an_impossible_value_is_refused(
    classwise_file, tmp_path, key, where, value, shown
):
    arrays = dict(np.load(classwise_file))
    assert _inspect(classwise_file).returncode == 0  # as exported
    arrays[key] = arrays[key].copy()
    arrays[key][where] = value
    path = tmp_path / "hostile.npz"
    np.savez(path, **arrays)
    _one_line_error(_inspect(path), "published_scores", str(path), key, "[-1, 1]", shown)


def test_a_classwise_file_missing_tr_mem_is_named_as_such(classwise_file, tmp_path):
    arrays = dict(np.load(classwise_file))
    del arrays["tr_mem"]
    path = tmp_path / "hostile.npz"
    np.savez(path, **arrays)
    line = _one_line_error(_inspect(path), "published_scores", str(path), "class-wise")
    assert "lacks tr_mem" in line


# -------------------------------------------------------------------------- compare


def _ours(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "ours.npz"
    np.savez(path, **arrays)
    return path


def test_compare_with_an_all_nan_reference_is_one_line(tmp_path):
    ours = _ours(tmp_path, cscore=np.linspace(0, 1, 30))
    reference = tmp_path / "ref.npz"
    np.savez(reference, cscore=np.full(30, np.nan))
    done = run_script(
        "tools/compare_scores.py", f"--scores_file={ours}", f"--reference={reference}", timeout=120
    )
    _one_line_error(done, "compare_scores", "no example has a score on both sides")


def test_compare_where_no_example_is_defined_on_both_sides_is_one_line(tmp_path):
    left = np.full(30, np.nan)
    left[:10] = np.linspace(0, 1, 10)
    right = np.full(30, np.nan)
    right[20:] = np.linspace(0, 1, 10)
    ours = _ours(tmp_path, cscore=left)
    reference = tmp_path / "ref.npz"
    np.savez(reference, cscore=right)
    done = run_script(
        "tools/compare_scores.py", f"--scores_file={ours}", f"--reference={reference}", timeout=120
    )
    _one_line_error(done, "compare_scores", "ours define 10 and the reference 10 of 30")


def test_compare_with_an_infinite_score_is_one_line(tmp_path):
    values = np.linspace(0, 1, 30)
    values[4] = np.inf
    ours = _ours(tmp_path, cscore=values)
    reference = tmp_path / "ref.npz"
    np.savez(reference, cscore=np.linspace(0, 1, 30))
    done = run_script(
        "tools/compare_scores.py", f"--scores_file={ours}", f"--reference={reference}", timeout=120
    )
    _one_line_error(done, "compare_scores", "infinite", "[4]")


def test_pairs_outside_a_topk_file_are_an_error_not_precision_zero(tmp_path):
    """The real CIFAR-100 pairs name test examples a 30-test top-k file does not have:
    was "precision 0.000, recall 0.000", exit 0."""
    pairs = _shared(CIFAR100_PAIRS)
    rng = np.random.default_rng(0)
    ours = _ours(
        tmp_path,
        influence_topk_index=rng.integers(0, 120, (30, 3)),
        influence_topk_value=np.full((30, 3), 0.5),
        memorization=np.full(120, 0.5),
    )
    done = run_script(
        "tools/compare_scores.py", f"--scores_file={ours}", f"--pairs={pairs}", timeout=120
    )
    _one_line_error(done, "compare_scores", str(pairs), "outside", "30 test x 120 training")
    assert "precision" not in done.stdout


# --------------------------------------------------------------------- threshold flags


@pytest.mark.parametrize("value", ["nan", "inf", "-0.5", "1.5"])
def test_export_pairs_refuses_a_min_influence_that_is_no_threshold(tmp_path, value):
    """--min_influence=nan was a traceback (provenance JSON) after all the work."""
    scores = _ours(tmp_path, influence=np.zeros((4, 10)), memorization=np.zeros(10))
    output = tmp_path / "pairs.npz"
    done = run_script(
        "tools/published_scores.py",
        "--export=pairs",
        f"--scores_file={scores}",
        f"--output={output}",
        f"--min_influence={value}",
        timeout=120,
    )
    _one_line_error(done, "published_scores", "--min_influence", "[0, 1]", status=2)
    assert not output.exists()


@pytest.mark.parametrize(
    "flag", ["--min_influence=nan", "--min_memorization=nan", "--threshold=nan"]
)
def test_compare_refuses_nan_thresholds(tmp_path, flag):
    pairs = _shared(CIFAR100_PAIRS)
    ours = _ours(tmp_path, influence=np.zeros((4, 10)), memorization=np.zeros(10))
    done = run_script(
        "tools/compare_scores.py", f"--scores_file={ours}", f"--pairs={pairs}", flag, timeout=120
    )
    _one_line_error(done, "compare_scores", flag.split("=")[0], status=2)


@pytest.mark.parametrize(
    "flag, needle",
    [
        ("--min_memorization=nan", "--min_memorization"),
        ("--min_memorization=inf", "--min_memorization"),
        ("--fdr=nan", "false-discovery rate"),
        ("--confidence=nan", "confidence"),
    ],
)
def test_compute_scores_refuses_non_finite_values_before_reading(
    scores_experiment, tmp_path, flag, needle
):
    """--min_memorization=nan tested no pair and reported "0 selected", exit 0."""
    output = tmp_path / "s.npz"
    done = run_tool(
        "compute_scores",
        f"--experiment_dir={scores_experiment.path}",
        f"--output={output}",
        "--scores=influence_pairs",
        flag,
    )
    _one_line_error(done, "compute_scores", needle, status=2)
    assert not output.exists()


def test_an_exported_pairs_file_keeps_its_provenance_json(tmp_path):
    """The thresholds still reach the provenance (finite values stay JSON)."""
    influence = np.zeros((4, 10))
    influence[1, 2] = 0.5
    scores = _ours(tmp_path, influence=influence, memorization=np.full(10, 0.5))
    output = tmp_path / "pairs.npz"
    done = run_script(
        "tools/published_scores.py",
        "--export=pairs",
        f"--scores_file={scores}",
        f"--output={output}",
        "--min_influence=0.2",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    provenance = json.loads(str(np.load(output)["provenance"]))
    assert provenance["min_influence"] == 0.2
