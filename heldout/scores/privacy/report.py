"""What `heldout privacy` writes and prints: the scores file's arrays and one text table,
every figure with its interval and the targets, pairs and examples behind it."""

from __future__ import annotations

import json
import math

import numpy as np

from heldout.scores.privacy.attacks import CORRECTNESS
from heldout.scores.privacy.audit import ATTACKS, PrivacyResult
from heldout.scores.privacy.roc import METRICS

__all__ = ["metric_key", "privacy_arrays", "privacy_table"]

_SHADOWS = {
    "others": "every other run of the ratio",
    "non_targets": "every run of the ratio that is no target",
}
_KEY_NAMES = {
    "auc": "auc",
    "balanced_accuracy": "balanced_accuracy",
    "tpr_at_0.1%_fpr": "tpr_at_0p1pct_fpr",
    "tpr_at_1%_fpr": "tpr_at_1pct_fpr",
}


def metric_key(attack: str, metric: str) -> str:
    """The scalar's key in the scores file, e.g. `lira_online_tpr_at_0p1pct_fpr`."""
    return f"{attack}_{_KEY_NAMES[metric]}"


def privacy_arrays(result: PrivacyResult, provenance: dict) -> dict[str, np.ndarray]:
    """The arrays of `privacy.npz`.

    Keys: `target_run_ids` [targets]; `lira_online`, `lira_offline`, `loss_threshold`
    float64 [targets, n_train] (NaN where undefined); `member` bool [targets, n_train];
    per attack and metric a scalar `<attack>_<metric>` with `_ci_low` and `_ci_high`, and
    `<attack>_num_members` / `_num_nonmembers` / `_num_undefined`; `privacy_risk` [n_train]
    with `privacy_risk_count_in` / `_count_out`; `spearman_privacy_risk_<score>` with its
    interval and count; `num_runs`, `shadows`, `num_shadows`, `statistic`, `min_shadows`,
    `fix_variance`;
    `provenance` (JSON).
    """
    attacks = result.attacks
    arrays: dict[str, np.ndarray] = {"target_run_ids": attacks.target_run_ids}
    for name in ATTACKS:
        arrays[name] = attacks.scores[name]
    arrays["member"] = attacks.member
    for name in ATTACKS:
        evaluation = result.evaluations[name]
        for metric in METRICS:
            key = metric_key(name, metric)
            arrays[key] = np.float64(evaluation.values[metric])
            arrays[f"{key}_ci_low"] = np.float64(evaluation.ci_low[metric])
            arrays[f"{key}_ci_high"] = np.float64(evaluation.ci_high[metric])
        arrays[f"{name}_num_members"] = np.int64(evaluation.num_members)
        arrays[f"{name}_num_nonmembers"] = np.int64(evaluation.num_nonmembers)
        arrays[f"{name}_num_undefined"] = np.int64(attacks.num_undefined[name])
    arrays["privacy_risk"] = result.privacy_risk
    arrays["privacy_risk_count_in"] = result.risk_count_in
    arrays["privacy_risk_count_out"] = result.risk_count_out
    for score, correlation in result.correlations.items():
        key = f"spearman_privacy_risk_{score}"
        arrays[key] = np.float64(correlation.rho)
        arrays[f"{key}_ci_low"] = np.float64(correlation.ci_low)
        arrays[f"{key}_ci_high"] = np.float64(correlation.ci_high)
        arrays[f"{key}_count"] = np.int64(correlation.count)
    arrays["num_runs"] = np.int64(attacks.num_runs)
    arrays["shadows"] = np.asarray(attacks.shadows)
    arrays["num_shadows"] = np.int64(attacks.num_shadows)
    arrays["statistic"] = np.asarray(result.statistic)
    arrays["min_shadows"] = np.int64(result.min_shadows)
    arrays["fix_variance"] = np.bool_(result.fix_variance)
    arrays["provenance"] = np.asarray(json.dumps(provenance, sort_keys=True))
    return arrays


def _cell(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def privacy_table(result: PrivacyResult) -> str:
    """The evaluation of each attack and the risk's correlations, as one text table."""
    attacks = result.attacks
    first = result.evaluations[ATTACKS[0]]
    weaker = " (0/1 per run: the weaker variant)" if result.statistic == CORRECTNESS else ""
    variance = "global" if result.fix_variance else "per-example"
    lines = [
        f"membership inference: {first.num_targets} target runs, each against "
        f"{attacks.num_shadows} shadow runs ({_SHADOWS[attacks.shadows]}); statistic "
        f"{result.statistic}"
        f"{weaker}; {variance} variance; min {result.min_shadows} IN and OUT shadows",
        f"pooled over {first.num_members} member and {first.num_nonmembers} non-member "
        f"(target, example) pairs; 95% intervals: bootstrap over target runs",
        f"{'attack':<16} {'AUC':<26} {'balanced accuracy':<26} {'TPR @ 0.1% FPR':<26} "
        f"{'TPR @ 1% FPR':<26} {'NaN':>8}",
    ]
    for name in ATTACKS:
        e = result.evaluations[name]
        cells = [_cell(e.values[m], e.ci_low[m], e.ci_high[m]) for m in METRICS]
        lines.append(
            f"{name:<16} "
            + " ".join(f"{c:<26}" for c in cells)
            + f" {attacks.num_undefined[name]:>8}"
        )
    defined = int(np.count_nonzero(~np.isnan(result.privacy_risk)))
    lines.append(
        f"privacy_risk (per-example AUC of online LiRA over the targets): {defined} of "
        f"{result.privacy_risk.size} examples defined, median "
        f"{np.median(result.risk_count_in[~np.isnan(result.privacy_risk)]) if defined else 0:.0f}"
        f" member and "
        f"{np.median(result.risk_count_out[~np.isnan(result.privacy_risk)]) if defined else 0:.0f}"
        f" non-member targets each"
    )
    if result.statistic == CORRECTNESS and attacks.shadows == "others":
        lines.append(
            "note: with 0/1 correctness and --shadows=others, privacy_risk mostly measures "
            "the leave-one-out artifact (a target's own membership shifts its shadows); "
            "use --shadows=non_targets for it (docs/privacy.md)"
        )
    for score, c in result.correlations.items():
        lines.append(
            f"Spearman rho(privacy_risk, {score}) = {_cell(c.rho, c.ci_low, c.ci_high)} over "
            f"{c.count} examples ({score} from the same {attacks.num_runs} runs; average ranks)"
        )
    return "\n".join(lines)
