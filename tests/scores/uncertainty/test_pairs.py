"""Influence pairs: exact Fisher tails, Benjamini-Hochberg, bounded memory, the scores file."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import heldout.testing as synthetic
from heldout.errors import UsageError
from heldout.scores import experiment as scores
from heldout.scores.request import ScoreRequest
from heldout.scores.uncertainty import (
    SignificantPairsAccumulator,
    benjamini_hochberg,
    compute_influence_pairs,
    q_values_of,
)
from heldout.scores.uncertainty import hypergeometric as hg

TOOL = Path(__file__).resolve().parents[3] / "tools" / "compute_scores.py"


@pytest.mark.parametrize("runs", [1, 2, 9, 60, 700])
def test_exact_tail_matches_scipy(runs):
    rng = np.random.default_rng(runs)
    n_in = rng.integers(0, runs + 1, 4000)
    correct = rng.integers(0, runs + 1, 4000)
    s = rng.integers(-1, runs + 2, 4000)
    log_fact = hg.log_factorials(runs)
    got = hg.log_sf(s, n_in, correct, runs, log_fact)
    with np.errstate(divide="ignore"):
        expected = np.log(stats.hypergeom.sf(s - 1, runs, n_in, correct))
    finite = np.isfinite(expected) & (expected > -600)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-9)
    assert np.all(np.isneginf(got[np.isneginf(expected) & (s > np.minimum(n_in, correct))]))
    # The cheap bound used for the first pass is never above the exact value.
    bound = hg.log_sf_lower_bound(s, n_in, correct, runs, log_fact)
    assert np.all(bound <= got + 1e-12)


def test_critical_counts_are_the_smallest_passing_ones():
    runs = 120
    log_fact = hg.log_factorials(runs)
    n_in = np.array([0, 1, 30, 84, 119, 120])
    correct = np.array([0, 1, 7, 60, 113, 120])
    critical = hg.critical_successes(n_in, correct, runs, 0.05, log_fact)
    for i, c in enumerate(correct):
        for j, n in enumerate(n_in):
            k = critical[i, j]
            assert stats.hypergeom.sf(k - 1, runs, n, c) <= 0.05 + 1e-12
            low = max(0, n + c - runs)
            assert k - 1 <= low or stats.hypergeom.sf(k - 2, runs, n, c) > 0.05


def test_benjamini_hochberg():
    p = np.array([0.001, 0.039, 0.029, 0.2, 0.011])
    chosen, q = benjamini_hochberg(np.log(p), 5, 0.05)
    assert chosen.tolist() == [0, 4, 2, 1]  # p_(4) = 0.039 <= 4 * 0.05 / 5
    # q_(i) = min over k >= i of m p_(k) / k
    np.testing.assert_allclose(q, [0.005, 0.0275, 5 * 0.029 / 3, 5 * 0.039 / 4])
    chosen, _ = benjamini_hochberg(np.log(p), 50, 0.05)  # 45 more tests, all with p = 1
    assert chosen.tolist() == [0]


@pytest.fixture(scope="module")
def planted():
    truth = synthetic.probabilities_from_spec(
        synthetic.SyntheticSpec(
            num_train=300, num_test=120, subset_ratios=(0.7,), num_influence_pairs=0, seed=3
        )
    )
    truth = synthetic.plant_pairs(truth, np.repeat([0.1, 0.3, 0.6], 8), 0.7, seed=3)
    runs = synthetic.ProbabilityExperiment(truth, runs_per_ratio=250, seed=3)
    return truth, [aux for _, _, aux in runs.iter_runs(shuffle=False)]


def _brute_force(runs, fdr, min_memorization=None):
    """Every pair's exact p-value (scipy), BH over the family: the reference."""
    masks = np.stack([aux.train_mask() for aux in runs]).astype(np.int64)
    tests = np.stack([aux.test_correctness() for aux in runs]).astype(np.int64)
    correct_train = np.stack([aux.train_correctness() for aux in runs]).astype(np.int64)
    num_runs = len(runs)
    n_in, correct = masks.sum(axis=0), tests.sum(axis=0)
    both = tests.T @ masks
    family = (n_in > 0) & (n_in < num_runs)
    with np.errstate(invalid="ignore", divide="ignore"):
        memorization = (correct_train * masks).sum(0) / n_in - (correct_train * (1 - masks)).sum(
            0
        ) / (num_runs - n_in)
    if min_memorization is not None:
        family &= memorization >= min_memorization
    p = stats.hypergeom.sf(both - 1, num_runs, n_in[None, :], correct[:, None])[:, family]
    order = np.argsort(p.ravel(), kind="stable")
    m = p.size
    passing = np.flatnonzero(p.ravel()[order] <= np.arange(1, m + 1) * fdr / m)
    chosen = order[: passing[-1] + 1] if passing.size else order[:0]
    columns = np.flatnonzero(family)
    return {(int(c // family.sum()), int(columns[c % family.sum()])) for c in chosen}, m


@pytest.mark.parametrize("min_memorization", [None, 0.3])
def test_selection_is_exactly_benjamini_hochberg_over_all_pairs(planted, min_memorization):
    truth, runs = planted
    expected, num_tests = _brute_force(runs, 0.05, min_memorization)
    result = compute_influence_pairs(runs, 0.7, 0.05, min_memorization, tile_test=16, tile_train=64)
    got = set(zip(result.test_index.tolist(), result.train_index.tolist(), strict=True))
    assert got == expected and len(got) > 0
    assert result.num_tests == num_tests
    assert np.all(result.q_value <= 0.05) and np.all(np.diff(result.p_value) >= 0)
    # Each reported value is exact for its pair.
    masks = np.stack([aux.train_mask() for aux in runs])
    tests = np.stack([aux.test_correctness() for aux in runs])
    for t, j, infl, p in zip(
        result.test_index, result.train_index, result.influence, result.p_value, strict=True
    ):
        inside, outside = tests[masks[:, j], t], tests[~masks[:, j], t]
        assert infl == pytest.approx(inside.mean() - outside.mean())
        both, n_in, correct = int(inside.sum()), int(masks[:, j].sum()), int(tests[:, t].sum())
        assert p == pytest.approx(stats.hypergeom.sf(both - 1, len(runs), n_in, correct))
    if min_memorization is not None:
        assert np.all(result.memorization >= min_memorization)


def test_an_overflowing_candidate_buffer_takes_a_second_pass_and_changes_nothing(planted):
    _, runs = planted
    accumulator = SignificantPairsAccumulator(0.7, 0.05, tile_test=16, tile_train=64)
    small = SignificantPairsAccumulator(0.7, 0.05, tile_test=16, tile_train=64, max_candidates=4)
    for aux in runs:
        accumulator.add(aux)
        small.add(aux)
    full, squeezed = accumulator.result(), small.result()
    assert accumulator.passes == 1 and small.passes == 2
    np.testing.assert_array_equal(full.test_index, squeezed.test_index)
    np.testing.assert_array_equal(full.train_index, squeezed.train_index)
    np.testing.assert_array_equal(full.q_value, squeezed.q_value)


def test_strong_planted_pairs_are_found_and_few_others(planted):
    truth, runs = planted
    result = compute_influence_pairs(runs, 0.7, 0.05)
    found = set(zip(result.test_index.tolist(), result.train_index.tolist(), strict=True))
    pairs = list(zip(truth.pair_test.tolist(), truth.pair_train.tolist(), strict=True))
    strong = [p for p, e in zip(pairs, truth.true_pair_influence, strict=True) if e >= 0.6]
    assert set(strong) <= found
    assert len(found - set(pairs)) <= max(1, 0.2 * len(found))


def test_bad_options_are_usage_errors():
    for options in ({"fdr": 0}, {"fdr": 1.5}, {"tile_test": 12}, {"max_candidates": 1}):
        with pytest.raises(UsageError):
            SignificantPairsAccumulator(**options)


def test_scores_file_and_command_line(tmp_path, planted):
    truth, _ = planted
    experiment = synthetic.ProbabilityExperiment(truth, runs_per_ratio=120, seed=4).write(
        tmp_path / "e"
    )
    result = scores.score_experiment(
        experiment, ScoreRequest(scores=["influence_pairs"], fdr=0.1, min_memorization=0.25)
    )
    arrays = result.arrays()
    pairs = result.influence_pairs
    assert arrays["pairs_fdr"] == 0.1 and arrays["pairs_min_memorization"] == 0.25
    assert arrays["pairs_num_runs"] == 120 and arrays["pairs_num_tests"] == pairs.num_tests
    for key in ("pairs_train_index", "pairs_test_index"):
        assert arrays[key].dtype == np.int64
    for key in ("pairs_influence", "pairs_p_value", "pairs_q_value", "pairs_memorization"):
        assert arrays[key].dtype == np.float64 and arrays[key].shape == (pairs.train_index.size,)
    output = tmp_path / "pairs.npz"
    command = [sys.executable, str(TOOL), "--noprogress", f"--experiment_dir={experiment.path}"]
    done = subprocess.run(
        [
            *command,
            f"--output={output}",
            "--scores=influence_pairs",
            "--fdr=0.1",
            "--min_memorization=0.25",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (
        f"influence pairs at 0.7 (120 runs): {pairs.train_index.size} selected at FDR 0.1 out "
        f"of {pairs.num_tests} pairs tested (training examples with memorization >= 0.25)"
    ) in done.stdout
    with np.load(output) as npz:
        np.testing.assert_array_equal(npz["pairs_train_index"], pairs.train_index)
    bad = subprocess.run(
        [*command, f"--output={output}", "--scores=influence_pairs", "--fdr=2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "false-discovery rate must be between 0 and 1" in bad.stderr


def test_q_values_of_looks_up_the_selection(planted):
    _, runs = planted
    result = compute_influence_pairs(runs, 0.7, 0.05)
    assert result.q_value.size > 2
    got = q_values_of(result, result.test_index[::-1], result.train_index[::-1])
    np.testing.assert_array_equal(got, result.q_value[::-1])
    # Pairs not selected, and "no pair" (-1), have no q-value at this FDR.
    chosen = set(zip(result.test_index.tolist(), result.train_index.tolist(), strict=True))
    other = next((t, j) for t in range(120) for j in range(300) if (t, j) not in chosen)
    assert np.isnan(q_values_of(result, [other[0], 0], [other[1], -1])).all()
    empty = compute_influence_pairs(runs[:3], 0.7, 0.05)
    assert empty.q_value.size == 0 and np.isnan(q_values_of(empty, [[0]], [[0]])).all()


@pytest.mark.parametrize("min_memorization", [None, 0.3])
def test_family_q_values_are_benjamini_hochberg_over_all_pairs(planted, min_memorization):
    """Every pair's q-value, selected or not, against scipy's p-values of the whole family."""
    _, runs = planted
    accumulator = SignificantPairsAccumulator(0.7, 0.05, min_memorization, 16, 64)
    for aux in runs:
        accumulator.add(aux)
    masks = np.stack([aux.train_mask() for aux in runs]).astype(np.int64)
    tests = np.stack([aux.test_correctness() for aux in runs]).astype(np.int64)
    n_in, correct = masks.sum(axis=0), tests.sum(axis=0)
    family = (n_in > 0) & (n_in < len(runs))
    if min_memorization is not None:
        with np.errstate(invalid="ignore"):
            family &= accumulator.memorization() >= min_memorization
    p = stats.hypergeom.sf(tests.T @ masks - 1, len(runs), n_in[None, :], correct[:, None])
    flat = p[:, family].ravel()
    order = np.argsort(flat, kind="stable")
    adjusted = flat[order] * flat.size / np.arange(1, flat.size + 1)
    expected = np.empty_like(flat)
    expected[order] = np.minimum(np.minimum.accumulate(adjusted[::-1])[::-1], 1.0)
    test_index, train_index = np.nonzero(np.ones_like(p, bool))
    got = accumulator.family_q_values(test_index, train_index).reshape(p.shape)
    assert np.all(np.isnan(got[:, ~family]))
    np.testing.assert_allclose(got[:, family].ravel(), expected, rtol=1e-9)
    # The selected pairs' q-values are the selection's.
    result = accumulator.result()
    selected = accumulator.family_q_values(result.test_index, result.train_index)
    np.testing.assert_allclose(selected, result.q_value, rtol=1e-12)
    assert accumulator.family_q_values([[0, -1]], [[-1, 0]]).shape == (1, 2)
    assert accumulator.family_q_values([0], [0], max_bins=10) is None
