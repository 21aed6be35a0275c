"""Split-half reliability, its prediction for more runs, and tools/plan_runs.py."""

import itertools
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from tool_runs import run_tool

import heldout.testing as synthetic
from heldout._core.ranks import spearman
from heldout.errors import ScoresError, UsageError
from heldout.scores.uncertainty import (
    SplitHalfAccumulator,
    plan_runs,
    predict_run_budget,
    spearman_brown,
)

CIFAR10 = Path(__file__).resolve().parents[4] / "shared" / "data" / "cifar10-cscores-orig-order.npz"
RATIOS = (0.1, 0.5, 0.9)
RATIOS_PM = (0.3, 0.5, 0.7)


def test_spearman_leaves_out_nan_and_ranks_ties_by_their_average():
    a = np.array([1.0, 2.0, 2.0, np.nan, 5.0, 3.0])
    b = np.array([1.0, 3.0, 2.0, 7.0, np.nan, 4.0])
    rho, count = spearman(a, b)
    assert count == 4
    assert rho == pytest.approx(stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4])[0])
    assert np.isnan(spearman(np.ones(5), np.arange(5.0))[0])
    assert spearman_brown(0.5, 1.0) == 0.5 and spearman_brown(0.5, 3.0) == pytest.approx(0.75)


def _halves(experiment, runs: int, repeats: int = 4, seed: int = 0) -> SplitHalfAccumulator:
    keys = {ratio: [(ratio, i) for i in range(runs)] for ratio in experiment.subset_ratios}
    halves = SplitHalfAccumulator(keys, repeats, memorization_ratio=0.5, seed=seed)
    for key in itertools.chain.from_iterable(keys.values()):  # ratio by ratio, run by run
        halves.add(key, experiment.draw_run(*key, shuffle=False))
    return halves


def test_each_half_holds_exactly_its_runs():
    truth = synthetic.probabilities_from_spec(
        synthetic.SyntheticSpec(num_train=50, num_test=5, subset_ratios=RATIOS)
    )
    experiment = synthetic.ProbabilityExperiment(truth, 7, seed=1)
    halves = _halves(experiment, 7, repeats=3)
    for q in range(3):
        for s, ratio in enumerate(RATIOS):
            first = [
                run for run in range(7) if q in halves._half_of[(ratio, run)][1]
            ]  # the runs drawn into half A of split q
            assert len(first) == 3  # floor(7 / 2); half B has the other 4
            held = sum(~experiment.draw_predictions(ratio, r)[0] for r in first)
            np.testing.assert_array_equal(halves.half_heldout_count[q, s], held)
        # Half A's memorization counts at 0.5 come from the same runs.
        first = [run for run in range(7) if q in halves._half_of[(0.5, run)][1]]
        trained = sum((lambda m, c: m & c)(*experiment.draw_predictions(0.5, r)[:2]) for r in first)
        np.testing.assert_array_equal(halves.half_trained_correct[q], trained)
    with pytest.raises(ScoresError, match="not one of the runs"):
        halves.add((0.5, 99), experiment.draw_run(0.5, 0))


def _prediction_error(truth, k: int, score: str) -> tuple[float, float, float]:
    experiment = synthetic.ProbabilityExperiment(truth, 4 * k, seed=5)
    plan = predict_run_budget(_halves(experiment, k), score, multipliers=(1.0, 4.0))
    measured = float(np.nanmean(_halves(experiment, 4 * k, seed=1).measured(score)[0]))
    return plan.predicted_rho[4.0], measured, plan.spearman_brown_rho[4.0]


def test_prediction_from_k_runs_matches_the_reliability_measured_with_4k():
    truth = synthetic.probabilities_from_spec(
        synthetic.SyntheticSpec(num_train=2000, num_test=5, subset_ratios=RATIOS, seed=2)
    )
    predicted, measured, _ = _prediction_error(truth, 8, "cscore")
    assert abs(predicted - measured) <= 0.03, (predicted, measured)


def test_prediction_on_cifar10_like_scores_where_spearman_brown_over_predicts():
    if not CIFAR10.is_file():
        pytest.skip(f"{CIFAR10} is absent: the CIFAR-10-like distribution needs it")
    with np.load(CIFAR10) as npz:
        published = npz["scores"]
    truth = synthetic.cscore_like_probabilities(
        published, RATIOS, num_train=2000, num_test=5, seed=4
    )
    predicted, measured, brown = _prediction_error(truth, 8, "cscore")
    assert abs(predicted - measured) <= 0.03, (predicted, measured)
    assert brown - measured > 0.05  # the reason for not stepping up with Spearman-Brown


def test_memorization_prediction_and_the_target_budget():
    truth = synthetic.probabilities_from_spec(
        synthetic.SyntheticSpec(num_train=2000, num_test=5, subset_ratios=RATIOS, seed=3)
    )
    experiment = synthetic.ProbabilityExperiment(truth, 64, seed=6)
    plan = predict_run_budget(_halves(experiment, 16), "memorization", target_rho=0.6)
    measured = float(np.nanmean(_halves(experiment, 64, seed=2).measured("memorization")[0]))
    assert abs(plan.predicted_rho[4.0] - measured) <= 0.04
    assert plan.multiplier_for_target is not None
    runs = plan.runs_for_target[0]
    assert runs == int(np.ceil(plan.multiplier_for_target * 16))
    _assert_the_target_rule(plan, 16)


def _assert_the_target_rule(plan, runs_now: int) -> None:
    """The budget found is the smallest checked one from which every larger checked budget
    reaches the target: the checked budget just below it falls short."""
    runs = plan.runs_for_target[0]
    checked = plan.checked_rho
    assert runs in checked and all(
        rho >= plan.target_rho for b, rho in checked.items() if b >= runs
    )
    below = [b for b in checked if b < runs]
    assert not below or checked[max(below)] < plan.target_rho
    for m, rho in plan.predicted_rho.items():  # the printed curve is among the checked
        assert checked[max(1, int(round(m * runs_now)))] == rho


# Point masses at 0 and 1 (70 % of examples always right, 5 % always wrong): what made the
# predicted curve fall (0.843 at 4x, 0.782 at 16x, for memorization measured at 0.910 and
# 0.975) and plateau, before the fit held exact 0 and 1 and started from them.
POINT_MASS_CASES = [("cscore", 8), ("memorization", 16), ("cscore", 32)]


@pytest.mark.parametrize("score, k", POINT_MASS_CASES)
def test_prediction_with_point_masses_matches_the_reliability_measured_with_4k(score, k):
    truth = synthetic.point_mass_probabilities(RATIOS_PM, num_train=3000, seed=0)
    experiment = synthetic.ProbabilityExperiment(truth, 4 * k, seed=5)
    plan = predict_run_budget(_halves(experiment, k), score, multipliers=(1.0, 2.0, 4.0, 16.0))
    measured = float(np.nanmean(_halves(experiment, 4 * k, seed=1).measured(score)[0]))
    assert abs(plan.predicted_rho[4.0] - measured) <= 0.03, (plan.predicted_rho, measured)
    # More runs never make the predicted ranking less reliable here, and the ties in
    # truth are found: C-score exactly 1 (memorization exactly 0) for about 70 %.
    assert plan.falls == ()
    assert plan.predicted_rho[16.0] >= plan.predicted_rho[4.0] - 0.005
    tied = plan.tied_true_values[1.0 if score == "cscore" else 0.0]
    assert tied == pytest.approx(0.70, abs=0.06)
    assert plan.ceiling_rho == pytest.approx(1.0, abs=1e-6) and plan.noise_tied_share == 0


def test_the_ceiling_is_below_one_exactly_when_true_values_tie_away_from_0_and_1():
    from heldout.scores.uncertainty.budget import _Simulator
    from heldout.scores.uncertainty.deconvolution import Prior

    atoms = np.array([[0.5, 0.5, 0.5], [0.8, 0.8, 0.8], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    weights = np.array([0.3, 0.3, 0.3, 0.1])
    fraction = np.full(3, 0.5)
    tied = _Simulator("cscore", Prior(atoms, weights), fraction, 20_000, 2, 0)
    rho, exact, noise = tied.ceiling()
    # Two interior blocks of 30 % each, ordered at random in each half: rho < 1.
    assert noise == pytest.approx(0.6, abs=0.02)
    assert exact == pytest.approx({0.0: 0.1, 1.0: 0.3}, abs=0.02)
    assert 0.85 < rho < 0.98
    spread = _Simulator("cscore", Prior(atoms, weights, logit_spread=0.2), fraction, 20_000, 2, 0)
    rho, exact, noise = spread.ceiling()
    assert noise == 0 and rho == pytest.approx(1.0, abs=1e-9)
    assert exact == pytest.approx({0.0: 0.1, 1.0: 0.3}, abs=0.02)


def test_the_target_is_not_reachable_above_the_ceiling():
    from heldout.scores.uncertainty.budget import _runs_for

    checked: dict[int, float] = {}

    def rho_at(total):  # rises, then falls: a bisection would stop at the first crossing
        checked[total] = 0.95 if 8 <= total <= 64 else 0.5
        return checked[total]

    assert _runs_for(rho_at, checked, 16, 0.9, ceiling=0.8) is None
    assert _runs_for(rho_at, checked, 16, 0.9, ceiling=1.0) is None  # falls again

    def rises_falls_rises(total):
        checked[total] = 0.95 if 8 <= total <= 16 or total >= 100 else 0.5
        return checked[total]

    checked.clear()
    found = _runs_for(rises_falls_rises, checked, 16, 0.9, ceiling=1.0)
    assert found == 100  # not 8: the curve falls below the target after 8


@pytest.fixture(scope="module")
def small_experiment(tmp_path_factory):
    spec = synthetic.SyntheticSpec(
        num_train=400, num_test=10, subset_ratios=(0.3, 0.7), runs_per_ratio=8, seed=1
    )
    return synthetic.write_synthetic_experiment(tmp_path_factory.mktemp("plan") / "e", spec)


def test_plan_runs_on_an_experiment(small_experiment):
    plan = plan_runs(small_experiment, repeats=3, target_rho=0.8)
    assert [p.score for p in plan.scores] == ["cscore", "memorization"]
    cscore, memorization = plan.scores
    assert cscore.runs_per_ratio == (8, 8) and cscore.subset_ratios == (0.3, 0.7)
    assert memorization.subset_ratios == (0.7,)
    assert cscore.repeats == 3 and 0 < cscore.num_examples <= 400
    assert cscore.predicted_rho[2.0] > cscore.measured_rho
    json.dumps(plan.to_json())  # JSON-ready
    with pytest.raises(UsageError, match="unknown scores"):
        plan_runs(small_experiment, scores=["influence"])
    with pytest.raises(UsageError, match="target"):
        plan_runs(small_experiment, target_rho=1.0)


def test_plan_runs_needs_two_runs_per_ratio(tmp_path):
    spec = synthetic.SyntheticSpec(num_train=30, num_test=5, subset_ratios=(0.5,), runs_per_ratio=1)
    experiment = synthetic.write_synthetic_experiment(tmp_path / "one", spec)
    with pytest.raises(ScoresError, match="at least 2 runs per ratio"):
        plan_runs(experiment)


def _run(*args):
    return run_tool("plan_runs", *args, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_plan_runs_command_prints_writes_json_and_draws(small_experiment, tmp_path):
    output, figure = tmp_path / "plan.json", tmp_path / "plan.png"
    old = os.umask(0o022)
    try:
        done = _run(
            f"--experiment_dir={small_experiment.path}",
            "--repeats=3",
            f"--output={output}",
            f"--figure={figure}",
        )
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "cscore (integral C-score over 2 ratios; " in text
    assert "runs per ratio now: 8" in text
    assert "(two halves of ~4 runs per ratio, 3 random splits)" in text
    assert "predicted at 4x (32 runs per ratio): rho = " in text
    assert "runs per ratio for rho = 0.9: " in text or "not reached" in text
    assert "as runs grow without bound: rho -> " in text
    plan = json.loads(output.read_text())
    assert "stays at or above the target" in plan["scores"][0]["target_rule"]
    assert plan["scores"][0]["ceiling_rho"] is not None
    assert plan["experiment"] == "e" and len(plan["scores"]) == 2
    assert set(plan["scores"][0]["predicted_rho"]) >= {"2", "4", "8"}
    assert figure.read_bytes().startswith(b"\x89PNG")
    for path in (output, figure):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the umask's mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_plan_runs_command_errors_are_one_line(small_experiment, tmp_path):
    done = _run(f"--experiment_dir={small_experiment.path}", "--target_rho=2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "plan_runs: error: the target reliability must be between 0 and 1, got 2.0"
    ]
    done = _run(f"--experiment_dir={small_experiment.path}", f"--figure={tmp_path / 'x.jpg'}")
    assert done.returncode == 2 and "--figure must end with" in done.stderr
    done = _run(f"--experiment_dir={tmp_path / 'missing'}")
    assert done.returncode == 2 and done.stderr.startswith("plan_runs: error:")


def _budget(**changes):
    from heldout.scores.uncertainty import RunBudget

    fields = dict(
        score="memorization",
        subset_ratios=(0.7,),
        runs_per_ratio=(32,),
        repeats=10,
        num_examples=60000,
        measured_rho=0.5,
        measured_rho_sd=0.01,
        predicted_rho={2.0: 0.6, 4.0: 0.62, 8.0: 0.6},
        spearman_brown_rho={2.0: 0.67, 4.0: 0.8, 8.0: 0.89},
        target_rho=0.9,
        multiplier_for_target=None,
        runs_for_target=None,
        ceiling_rho=0.63,
        tied_true_values={0.0: 0.78},
        noise_tied_share=0.12,
        checked_rho={32: 0.5, 128: 0.62, 32768: 0.6},
        falls=((128, 0.62, 256, 0.6),),
    )
    fields.update(changes)
    return RunBudget(**fields)


def test_the_printed_plan_gives_the_ceiling_its_cause_falls_and_the_rule():
    from heldout.cli.plan_runs import format_plan
    from heldout.scores.uncertainty import RunPlan

    text = format_plan(RunPlan("e", (_budget(),)))
    assert "as runs grow without bound: rho -> 0.630" in text
    assert "78.0% at exactly 0" in text
    assert "12.0% of examples share a true memorization that their estimates only approach" in text
    assert "note: the predicted rho falls from 0.620 at 128 to 0.600 at 256 runs" in text
    assert "rho = 0.9 is not reachable: ceiling rho = 0.630" in text
    text = format_plan(RunPlan("e", (_budget(ceiling_rho=1.0, falls=()),)))
    assert "not reached within 1024x the runs (rho = 0.600 at 32768 runs per ratio" in text
    assert "note:" not in text
    text = format_plan(
        RunPlan("e", (_budget(ceiling_rho=1.0, multiplier_for_target=2.0, runs_for_target=(64,)),))
    )
    assert "runs per ratio for rho = 0.9: 64 (2x; the smallest budget whose predicted rho" in text
