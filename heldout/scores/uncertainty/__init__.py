"""How sure each score is, and how many runs are enough (no TensorFlow).

- `intervals`: confidence intervals for C-scores, memorization and influence from counts;
- `reliability`: split-half reliability of each score's ranking and its prediction for
  larger run budgets (the planner behind `tools/plan_runs.py`), on `deconvolution`;
- `pairs`: significant (training, test) influence pairs with false-discovery control,
  from Fisher's exact test (`hypergeometric`).
"""

from heldout.scores.uncertainty.intervals import (
    CorrectTestCounts,
    ScoreIntervals,
    binomial_interval,
    check_confidence,
    influence_intervals,
    mean_of_proportions_interval,
    mee_interval,
    newcombe_interval,
    score_intervals,
)
from heldout.scores.uncertainty.pairs import (
    InfluencePairs,
    InfluencePairsAccumulator,
    benjamini_hochberg,
    compute_influence_pairs,
)
from heldout.scores.uncertainty.reliability import (
    RELIABILITY_SCORES,
    RunPlan,
    ScorePlan,
    SplitHalfAccumulator,
    plan_runs,
    predict_score_plan,
    spearman,
    spearman_brown,
)

__all__ = [
    "InfluencePairs",
    "InfluencePairsAccumulator",
    "RELIABILITY_SCORES",
    "RunPlan",
    "ScoreIntervals",
    "ScorePlan",
    "SplitHalfAccumulator",
    "CorrectTestCounts",
    "benjamini_hochberg",
    "binomial_interval",
    "check_confidence",
    "compute_influence_pairs",
    "influence_intervals",
    "mean_of_proportions_interval",
    "mee_interval",
    "newcombe_interval",
    "plan_runs",
    "predict_score_plan",
    "score_intervals",
    "spearman",
    "spearman_brown",
]
