"""Intervals beside the estimates: their definitions, their coverage, and the scores file."""

import numpy as np
import pytest
from scipy import stats
from tool_runs import run_tool

import heldout.testing as synthetic
from heldout.errors import ScoresError, UsageError
from heldout.scores import experiment as scores
from heldout.scores.counts import ScoreAccumulator
from heldout.scores.influence import compute_influence
from heldout.scores.request import ScoreRequest
from heldout.scores.uncertainty import (
    CorrectTestCounts,
    binomial_interval,
    influence_intervals,
    mean_of_proportions_interval,
    mee_interval,
    newcombe_interval,
    score_intervals,
)
from heldout.scores.uncertainty import intervals as intervals_module
from heldout.scores.uncertainty.intervals import _score_statistic

Z = stats.norm.isf(0.025)


def _wilson(x, n):
    p = x / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * np.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def test_one_proportion_is_wilson_with_jeffreys_limits_next_to_the_ends():
    n = 20
    x = np.arange(n + 1)
    low, high = binomial_interval(x, np.full(n + 1, n))
    wilson_low, wilson_high = _wilson(x, n)
    np.testing.assert_allclose(low[2:], wilson_low[2:])
    np.testing.assert_allclose(high[:-2], wilson_high[:-2])
    assert low[0] == 0.0 and high[-1] == 1.0
    assert low[1] == pytest.approx(stats.beta.ppf(0.025, 1.5, n - 0.5))
    assert high[-2] == pytest.approx(1 - stats.beta.ppf(0.025, 1.5, n - 0.5))
    assert low[1] < wilson_low[1]  # Wilson's limit there is too close to the estimate
    low, high = binomial_interval(np.array([0, 2]), np.array([0, 4]))
    assert np.isnan(low[0]) and np.isnan(high[0]) and not np.isnan(low[1])


def _exact_coverage(p: np.ndarray, n: int, interval) -> np.ndarray:
    x = np.arange(n + 1)
    low, high = interval(x, np.full(n + 1, n))
    pmf = stats.binom.pmf(x[None, :], n, p[:, None])
    return (pmf * ((low <= p[:, None]) & (p[:, None] <= high))).sum(axis=1)


def _stderr_interval(x, n):
    p = x / n
    half = Z * np.sqrt(p * (1 - p) / n)
    return p - half, p + half


@pytest.mark.parametrize("n", [8, 32, 128])
def test_exact_coverage_of_one_proportion_is_nominal_where_the_stderr_interval_fails(n):
    p = np.linspace(0.005, 0.995, 2000)  # every true value, uniformly
    coverage = _exact_coverage(p, n, binomial_interval)
    assert 0.94 <= coverage.mean() <= 0.96
    deciles = [group.mean() for group in np.array_split(coverage, 10)]
    assert min(deciles) >= 0.93
    baseline = _exact_coverage(p, n, _stderr_interval)
    assert baseline.mean() < 0.94
    if n == 8:
        assert baseline.mean() < 0.8 and min(np.array_split(baseline, 10)[0]) < 0.1


def _coverage_experiment(heldout: int, seed: int):
    """A fixed-count experiment: every example held out exactly `heldout` times a ratio."""
    truth = synthetic.probabilities_from_spec(
        synthetic.SyntheticSpec(
            num_train=1500, num_test=30, subset_ratios=(0.25, 0.5, 0.75), seed=seed
        )
    )
    runs = [round(heldout / (1 - r)) for r in truth.subset_ratios]
    experiment = synthetic.ProbabilityExperiment(truth, runs, design="fixed_count", seed=seed)
    counts = ScoreAccumulator(truth.subset_ratios)
    for ratio, _, aux in experiment.iter_runs(shuffle=False):
        counts.add(ratio, aux)
    return truth, counts.cscores(), counts.memorization(0.75)


@pytest.mark.parametrize("heldout", [8, 32])
def test_simulated_coverage_with_known_probabilities(heldout):
    # The acceptance, small: 3 seeds x 1 500 examples x 3 ratios; the bench runs
    # 20 000 examples and checks every decile (bench/bench_uncertainty.py).
    covered = {"per ratio": [], "integral": [], "memorization": []}
    baseline = {"per ratio": [], "memorization": []}
    for seed in range(3):
        truth, cscores, memorization = _coverage_experiment(heldout, seed)
        assert np.all(cscores.heldout_count_by_ratio == heldout)
        intervals = score_intervals(0.95, cscores, memorization)
        p = truth.p_heldout
        covered["per ratio"].append(
            ((intervals.cscore_by_ratio_low <= p) & (p <= intervals.cscore_by_ratio_high)).ravel()
        )
        estimate, stderr = cscores.cscore_by_ratio, cscores.cscore_stderr_by_ratio
        baseline["per ratio"].append(
            ((estimate - Z * stderr <= p) & (p <= estimate + Z * stderr)).ravel()
        )
        true = truth.true_cscore()
        covered["integral"].append((intervals.cscore_low <= true) & (true <= intervals.cscore_high))
        true = truth.true_memorization(0.75)
        covered["memorization"].append(
            (intervals.memorization_low <= true) & (true <= intervals.memorization_high)
        )
        m, se = memorization.memorization, memorization.stderr
        baseline["memorization"].append((m - Z * se <= true) & (true <= m + Z * se))
    for name, values in covered.items():
        rate = np.concatenate(values).mean()
        assert 0.935 <= rate <= 0.965, (name, heldout, rate)
    if heldout == 8:  # the binomial standard error claims certainty where data is least
        for name, values in baseline.items():
            assert np.concatenate(values).mean() < 0.85, name


def test_mean_of_proportions_interval():
    # Rows: three proportions (e.g. ratios); columns: examples.
    x = np.array([[8, 4, 0], [8, 0, 0], [0, 0, 0]])
    n = np.array([[8, 8, 0], [8, 8, 0], [0, 5, 0]])
    low, high = mean_of_proportions_interval(x, n)
    # Example 0: two proportions of 1 (the third has count 0 and is left out).
    assert high[0] == 1.0 and 0.5 < low[0] < 1.0
    two = mean_of_proportions_interval(x[:2, :1], n[:2, :1])
    assert (low[0], high[0]) == pytest.approx((two[0][0], two[1][0]))
    # Example 1: 4/8, 0/8 and 0/5, k = 3; Price & Bonett add 2/k successes and failures.
    k = 3
    adjusted = (np.array([4, 0, 0]) + 2 / k) / (np.array([8, 8, 5]) + 4 / k)
    half = Z * np.sqrt((adjusted * (1 - adjusted) / (np.array([8, 8, 5]) + 4 / k)).sum()) / k
    assert (low[1], high[1]) == pytest.approx((adjusted.mean() - half, adjusted.mean() + half))
    assert low[1] <= (0.5 + 0 + 0) / 3 <= high[1]
    # Example 2: nothing defined.
    assert np.isnan(low[2]) and np.isnan(high[2])


@pytest.mark.parametrize(
    "x1, n1, x2, n2", [(19, 19, 6, 8), (10, 19, 2, 8), (0, 5, 5, 5), (3, 40, 30, 31), (7, 7, 0, 3)]
)
def test_mee_interval_is_the_set_the_score_test_accepts(x1, n1, x2, n2):
    low, high = mee_interval(np.array([x1]), np.array([n1]), np.array([x2]), np.array([n2]))
    grid = np.linspace(-1, 1, 4001)
    args = [np.full(grid.shape, float(v)) for v in (x1, n1, x2, n2)]
    accepted = grid[np.abs(_score_statistic(*args, grid)) <= Z]
    assert low[0] == pytest.approx(accepted.min(), abs=1e-3)
    assert high[0] == pytest.approx(accepted.max(), abs=1e-3)
    estimate = x1 / n1 - x2 / n2
    assert low[0] <= estimate <= high[0]


def test_newcombe_interval_is_mover_on_the_one_proportion_limits():
    x1, n1, x2, n2 = np.array([19, 10]), np.array([19, 19]), np.array([6, 2]), np.array([8, 8])
    low, high = newcombe_interval(x1, n1, x2, n2)
    l1, u1 = binomial_interval(x1, n1)
    l2, u2 = binomial_interval(x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    np.testing.assert_allclose(low, p1 - p2 - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2))
    np.testing.assert_allclose(high, p1 - p2 + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))
    low, high = newcombe_interval(np.array([1]), np.array([0]), np.array([1]), np.array([2]))
    assert np.isnan(low[0]) and np.isnan(high[0])


@pytest.fixture(scope="module")
def influence_runs():
    spec = synthetic.SyntheticSpec(
        num_train=90, num_test=24, subset_ratios=(0.7,), runs_per_ratio=40, seed=2
    )
    return [aux for _, _, aux in synthetic.SyntheticExperiment(spec).iter_runs()]


@pytest.mark.parametrize("method", ["mee", "newcombe"])
def test_influence_intervals_are_the_named_method_on_the_exact_counts(
    influence_runs, method, monkeypatch
):
    # 40 runs: the table of count pairs is small, so Mee's; with no table allowed, Newcombe's.
    if method == "newcombe":
        monkeypatch.setattr(intervals_module, "MEE_TABLE_ENTRIES", 0)
    masks = np.stack([aux.train_mask() for aux in influence_runs]).astype(np.int64)
    tests = np.stack([aux.test_correctness() for aux in influence_runs]).astype(np.int64)
    both = tests.T @ masks  # runs with j in and t right
    n_in = masks.sum(axis=0)
    correct = tests.sum(axis=0)
    reference = mee_interval if method == "mee" else newcombe_interval
    expected_low, expected_high = reference(
        both, n_in[None, :], correct[:, None] - both, len(influence_runs) - n_in[None, :]
    )
    counter = CorrectTestCounts()
    for aux in influence_runs:
        counter.add(aux)
    np.testing.assert_array_equal(counter.counts, correct)
    dense = compute_influence(influence_runs, topk=0)
    low, high = influence_intervals(dense, counter.counts, tile_elements=100)  # many blocks
    assert low.dtype == np.float32 and low.shape == dense.matrix.shape
    np.testing.assert_allclose(low, expected_low, atol=1e-6)
    np.testing.assert_allclose(high, expected_high, atol=1e-6)
    top = compute_influence(influence_runs, topk=3)
    top_low, top_high = influence_intervals(top, counter.counts)
    rows = np.arange(top.topk_index.shape[0])[:, None]
    np.testing.assert_allclose(top_low, expected_low[rows, top.topk_index], atol=1e-6)
    np.testing.assert_allclose(top_high, expected_high[rows, top.topk_index], atol=1e-6)
    with pytest.raises(ScoresError, match="test examples"):
        influence_intervals(dense, counter.counts[:-1])


def test_scores_file_has_intervals_with_nan_exactly_where_the_estimates_are(tmp_path):
    # Two runs at 0.9: most examples are never held out there (NaN estimates).
    spec = synthetic.SyntheticSpec(
        num_train=60, num_test=10, subset_ratios=(0.5, 0.9), runs_per_ratio=2, seed=1
    )
    experiment = synthetic.write_synthetic_experiment(tmp_path / "e", spec)
    result = scores.score_experiment(
        experiment,
        ScoreRequest(
            scores=["cscore", "memorization", "influence"], subset_ratio=0.9, confidence=0.9
        ),
    )
    arrays = result.arrays()
    assert arrays["confidence"] == 0.9 and arrays["confidence"].dtype == np.float64
    for name in ("cscore_by_ratio", "cscore", "memorization", "influence"):
        estimate = arrays[name]
        low, high = arrays[f"{name}_ci_low"], arrays[f"{name}_ci_high"]
        assert low.shape == estimate.shape == high.shape, name
        assert low.dtype == (np.float32 if name == "influence" else np.float64), name
        np.testing.assert_array_equal(np.isnan(low), np.isnan(estimate), err_msg=name)
        np.testing.assert_array_equal(np.isnan(high), np.isnan(estimate), err_msg=name)
        defined = ~np.isnan(estimate)
        assert defined.any() and (~defined).any(), name
        assert np.all(low[defined] <= estimate[defined] + 1e-6), name
        assert np.all(estimate[defined] <= high[defined] + 1e-6), name
    without = scores.score_experiment(experiment, ScoreRequest()).arrays()
    assert not any(key.endswith(("_ci_low", "_ci_high")) for key in without)
    assert "confidence" not in without


def test_a_confidence_outside_0_1_is_refused_before_reading(tmp_path):
    with pytest.raises(UsageError, match="confidence"):
        score_intervals(1.0)
    spec = synthetic.SyntheticSpec(num_train=20, num_test=5, runs_per_ratio=1)
    experiment = synthetic.write_synthetic_experiment(tmp_path / "e", spec)
    (experiment.runs[0].aux_path).write_bytes(b"broken")  # never read: refused first
    with pytest.raises(UsageError, match="confidence"):
        scores.score_experiment(experiment, ScoreRequest(confidence=0))


def test_compute_scores_writes_intervals_and_refuses_a_bad_confidence(tmp_path):
    spec = synthetic.SyntheticSpec(num_train=40, num_test=8, subset_ratios=(0.5,), runs_per_ratio=6)
    experiment = synthetic.write_synthetic_experiment(tmp_path / "e", spec)
    output = tmp_path / "scores.npz"
    command = ["compute_scores", f"--experiment_dir={experiment.path}"]
    done = run_tool(
        *command, f"--output={output}", "--confidence=0.95", "--scores=cscore,influence"
    )
    assert done.returncode == 0, done.stderr
    assert "95% intervals written beside the estimates" in done.stdout
    with np.load(output) as npz:
        assert {"cscore_ci_low", "influence_ci_high", "confidence"} <= set(npz)
        defined = int(np.count_nonzero(~np.isnan(npz["cscore"])))
    assert f"over {defined} estimates" in done.stdout  # says how many are behind it
    bad = run_tool(*command, f"--output={tmp_path / 'x.npz'}", "--confidence=95")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "compute_scores: error: confidence must be between 0 and 1 (e.g. 0.95), got 95.0"
    ]
