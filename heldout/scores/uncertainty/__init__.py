"""How sure each score is, and how many runs are enough (no TensorFlow).

- `intervals`: confidence intervals for C-scores, memorization and influence from counts;
- `reliability`: split-half reliability of each score's ranking; `budget`: its prediction
  for larger run budgets, on `deconvolution`; `planning`: `plan_runs` over an experiment;
- `pairs`: significant (training, test) influence pairs with false-discovery control,
  from Fisher's exact test (`hypergeometric`); `threshold`: a fixed threshold beside it.
"""

from heldout.scores.uncertainty.budget import RunBudget, predict_run_budget
from heldout.scores.uncertainty.intervals import (
    CorrectTestCounts,
    binomial_interval,
    influence_intervals,
    mean_of_proportions_interval,
    mee_interval,
    newcombe_interval,
    score_intervals,
)
from heldout.scores.uncertainty.pairs import (
    SignificantPairsAccumulator,
    benjamini_hochberg,
    compute_influence_pairs,
    q_values_of,
)
from heldout.scores.uncertainty.planning import RunPlan, plan_runs
from heldout.scores.uncertainty.reliability import (
    RELIABILITY_SCORES,
    SplitHalfAccumulator,
    spearman_brown,
)
from heldout.scores.uncertainty.threshold import ThresholdCheck, check_influence_threshold

__all__ = [
    "CorrectTestCounts",
    "RELIABILITY_SCORES",
    "RunBudget",
    "RunPlan",
    "SignificantPairsAccumulator",
    "SplitHalfAccumulator",
    "ThresholdCheck",
    "benjamini_hochberg",
    "binomial_interval",
    "check_influence_threshold",
    "compute_influence_pairs",
    "influence_intervals",
    "mean_of_proportions_interval",
    "mee_interval",
    "newcombe_interval",
    "plan_runs",
    "predict_run_budget",
    "q_values_of",
    "score_intervals",
    "spearman_brown",
]
