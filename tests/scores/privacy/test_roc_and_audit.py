"""The evaluation on hand-made ROCs (TPR at low FPR, AUC, balanced accuracy), the per-example
AUC behind `privacy_risk`, and the whole audit on planted leakage in memory."""

import math

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.scores.privacy.audit import compute_attack_scores, compute_privacy
from heldout.scores.privacy.reading import RunStatistic, select_targets
from heldout.scores.privacy.roc import evaluate_attack, per_example_auc, roc_curve, roc_summary


def test_tpr_at_low_fpr_on_a_hand_made_roc():
    # 1000 non-members at 0..999 (score = -index), 10 members: 4 above every non-member,
    # 3 between the 1st and 2nd non-member, 3 at the bottom
    nonmembers = -np.arange(1000, dtype=float)
    members = np.array([10, 9, 8, 7, -0.5, -0.6, -0.7, -2000, -2001, -2002], dtype=float)
    scores = np.concatenate([members, nonmembers])
    member = np.arange(scores.size) < members.size
    fpr, tpr = roc_curve(scores, member)
    summary = roc_summary(fpr, tpr)
    assert summary["tpr_at_0.1%_fpr"] == pytest.approx(0.7)  # 1 false positive allowed
    assert summary["tpr_at_1%_fpr"] == pytest.approx(0.7)
    strict = roc_summary(*roc_curve(scores[:-1], member[:-1]))  # 999 non-members: 1 > 0.1 %
    assert strict["tpr_at_0.1%_fpr"] == pytest.approx(0.4)
    pairs = (members[:, None] > nonmembers[None, :]).mean()
    assert summary["auc"] == pytest.approx(pairs)
    assert summary["balanced_accuracy"] == pytest.approx(max(0.5 * (tpr + 1 - fpr)))
    assert summary["balanced_accuracy"] == pytest.approx(0.5 * (0.7 + 1 - 0.001))


def test_ties_move_together_and_count_one_half_in_the_auc():
    scores = np.array([1.0, 1.0, 1.0, 0.0])
    member = np.array([True, False, True, False])
    fpr, tpr = roc_curve(scores, member)
    np.testing.assert_allclose(fpr, [0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1, 1])
    assert roc_summary(fpr, tpr)["auc"] == pytest.approx(0.75)
    assert roc_summary(fpr, tpr)["tpr_at_1%_fpr"] == 0.0


def test_bootstrap_over_targets_brackets_the_pooled_value():
    rng = np.random.default_rng(0)
    member = rng.random((8, 400)) < 0.5
    scores = rng.normal(0, 1, (8, 400)) + member * rng.uniform(0.2, 1.5, (8, 1))
    scores[0, :5] = np.nan
    evaluation = evaluate_attack(scores, member, seed=1, samples=200)
    assert evaluation.num_members + evaluation.num_nonmembers == 8 * 400 - 5
    for name, value in evaluation.values.items():
        assert evaluation.ci_low[name] <= value <= evaluation.ci_high[name], name
    assert evaluation.ci_high["auc"] - evaluation.ci_low["auc"] > 0.01  # targets differ
    single = roc_summary(*roc_curve(scores[~np.isnan(scores)], member[~np.isnan(scores)]))
    assert evaluation.values == pytest.approx(single)


def test_per_example_auc_is_the_mann_whitney_probability_over_targets():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (7, 30)).astype(float)  # ties
    member = rng.random((7, 30)) < 0.5
    scores[2, 3] = np.nan
    auc, count_in, count_out = per_example_auc(scores, member)
    for j in range(30):
        defined = ~np.isnan(scores[:, j])
        inside = scores[defined & member[:, j], j]
        outside = scores[defined & ~member[:, j], j]
        assert count_in[j] == inside.size and count_out[j] == outside.size
        if inside.size == 0 or outside.size == 0:
            assert math.isnan(auc[j])
            continue
        diff = inside[:, None] - outside[None, :]
        assert auc[j] == pytest.approx((diff > 0).mean() + 0.5 * (diff == 0).mean())


def leaky_runs(num_runs=40, num_train=300, seed=0, gap=None):
    """Runs whose training-split margin rises by `gap[j]` when they train on j."""
    rng = np.random.default_rng(seed)
    gap = np.linspace(0.0, 3.0, num_train) if gap is None else gap
    base = rng.normal(1.0, 1.0, num_train)
    for run_id in range(num_runs):
        mask = rng.random(num_train) < 0.5
        statistic = base + gap * mask + rng.normal(0, 0.5, num_train)
        yield RunStatistic(run_id, mask, statistic.astype(np.float32), None)


def test_the_audit_finds_planted_leakage_and_ranks_examples_by_it():
    result = compute_privacy(leaky_runs(), [1, 5, 9, 13, 17, 21, 25, 29], bootstrap_samples=100)
    online = result.evaluations["lira_online"].values
    threshold = result.evaluations["loss_threshold"].values
    assert online["auc"] > 0.8 and online["auc"] > threshold["auc"]
    assert result.attacks.scores["lira_online"].shape == (8, 300)
    assert result.attacks.num_runs == 40 and result.correlations == {}
    risk = result.privacy_risk
    assert np.nanmean(risk[:50]) < 0.7 < np.nanmean(risk[-50:])  # no gap vs. a big one
    assert (result.risk_count_in + result.risk_count_out == 8).all()


def test_too_few_runs_and_unknown_targets_are_refused():
    with pytest.raises(UsageError, match="needs at least 8 runs"):
        compute_attack_scores(leaky_runs(num_runs=7), [0])
    with pytest.raises(UsageError, match=r"target runs \[99\]"):
        compute_attack_scores(leaky_runs(num_runs=10), [0, 99])


def test_targets_are_a_count_or_ids():
    assert len(select_targets(range(20), "16", seed=0)) == 16
    assert select_targets(range(20), "3,5,10-12") == (3, 5, 10, 11, 12)
    assert select_targets(range(20), "7,") == (7,)
    with pytest.raises(UsageError, match="the ratio has 20 runs"):
        select_targets(range(20), "21")
    with pytest.raises(UsageError, match=r"run ids \[20\]"):
        select_targets(range(20), "19-20")


def test_a_ratio_with_exactly_twice_min_shadows_runs_leaves_every_score_nan_and_counted():
    # 8 runs: each target has 7 shadows, never 4 IN and 4 OUT
    result = compute_privacy(leaky_runs(num_runs=8, num_train=20), [0, 1], bootstrap_samples=5)
    assert result.attacks.num_undefined["lira_online"] == 2 * 20
    assert np.isnan(result.attacks.scores["lira_online"]).all()
    evaluation = result.evaluations["lira_online"]
    assert evaluation.num_members == evaluation.num_nonmembers == 0
    assert math.isnan(evaluation.values["auc"]) and np.isnan(result.privacy_risk).all()


def tied_runs(num_runs=60, num_train=200, seed=0):
    """0/1 outputs that do not depend on membership: each example right with its own rate."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.6, 1.0, num_train)
    for run_id in range(num_runs):
        mask = rng.random(num_train) < 0.5
        correct = (rng.random(num_train) < rate).astype(np.float32)
        yield RunStatistic(run_id, mask, correct, None)


def test_leaving_the_target_out_biases_tied_outputs_and_non_target_shadows_do_not():
    targets = list(range(0, 60, 3))
    others = compute_privacy(tied_runs(), targets, bootstrap_samples=5)
    shared = compute_privacy(tied_runs(), targets, bootstrap_samples=5, shadows="non_targets")
    # no signal: a target's own membership shifts its leave-one-out shadows against it
    assert np.nanmean(others.privacy_risk) < 0.45
    assert abs(np.nanmean(shared.privacy_risk) - 0.5) < 0.03
    assert shared.attacks.num_shadows == 40 and others.attacks.num_shadows == 59
