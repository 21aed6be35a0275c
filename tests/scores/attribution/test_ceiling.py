"""The ceiling: holdout influence in factors equals the dense one; its LDS rises with runs."""

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.scores.attribution.baselines import holdout_influence
from heldout.scores.attribution.ceiling import (
    ceiling_ladder,
    compute_ceiling,
    holdout_influence_factors,
)
from heldout.scores.attribution.lds import compute_lds, predicted_outputs


def test_factors_equal_the_dense_holdout_influence():
    rng = np.random.default_rng(0)
    masks = rng.random((30, 12)) < 0.5
    masks[:, 3] = True  # never held out: 0
    outputs = rng.normal(size=(30, 5)).astype(np.float32)
    factors = holdout_influence_factors(masks, outputs)
    np.testing.assert_allclose(factors.dense(), holdout_influence(masks, outputs), atol=1e-5)
    evaluation = rng.random((8, 12)) < 0.5
    np.testing.assert_allclose(
        predicted_outputs(factors, evaluation),
        evaluation @ holdout_influence(masks, outputs).T,
        atol=1e-4,
    )


def test_ladder():
    assert ceiling_ladder(128) == (8, 16, 32, 64, 128)
    assert ceiling_ladder(100) == (8, 16, 32, 64, 100)
    assert ceiling_ladder(5) == (5,)
    assert ceiling_ladder(8) == (8,)


def _planted(rng, runs, n_train=60, n_test=20, noise=0.5):
    tau = rng.normal(size=(n_test, n_train)) * (rng.random((n_test, n_train)) < 0.2)
    masks = rng.random((runs, n_train)) < 0.5
    outputs = masks @ tau.T + noise * rng.normal(size=(runs, n_test))
    return masks, outputs.astype(np.float32)


def test_ceiling_rises_with_estimation_runs_on_a_planted_datamodel():
    rng = np.random.default_rng(1)
    masks, outputs = _planted(rng, 400)
    est_m, est_o, ev_m, ev_o = masks[:256], outputs[:256], masks[256:], outputs[256:]
    ceiling = compute_ceiling(est_m, est_o, ev_m, ev_o, seed=3)
    assert ceiling.runs == (8, 16, 32, 64, 128, 256)
    lds = [r.lds for r in ceiling.results]
    assert lds[-1] > lds[0] + 0.2 and lds[-1] > 0.6
    assert all(r.num_runs == 144 for r in ceiling.results)
    full = compute_lds(holdout_influence(est_m, est_o), ev_m, ev_o, seed=3)
    np.testing.assert_allclose(ceiling.results[-1].per_test, full.per_test, atol=1e-5)
    with pytest.raises(UsageError, match="1..256"):
        compute_ceiling(est_m, est_o, ev_m, ev_o, ladder=(0, 300))


def test_score_attribution_adds_the_ceiling_and_refuses_an_estimate_from_evaluation_runs():
    from heldout.scores.attribution.ceiling import holdout_influence_factors
    from heldout.scores.attribution.scoring import lds_arrays, lds_table, score_attribution
    from heldout.scores.attribution.split import split_runs

    rng = np.random.default_rng(4)
    masks, outputs = _planted(rng, 80)
    runs = {run_id: run_id for run_id in range(80)}

    def reader(selected):
        rows = np.asarray(selected)
        return masks[rows], outputs[rows]

    split = split_runs(sorted(runs), evaluation=0.5, seed=1)

    class FromRuns:  # an extra baseline that says which runs it was estimated from
        def __init__(self, ids):
            self.run_ids = ids
            self.inner = holdout_influence_factors(*reader(list(ids)))
            self.shape = self.inner.shape

        def predicted_outputs(self, m):
            return self.inner.predicted_outputs(m)

    good = FromRuns(split.estimation[:10])
    scored = score_attribution(
        np.zeros((20, 60)), runs, split, reader, "margin", extra={"extra (10 runs)": good}
    )
    assert scored.ceiling.runs == (8, 16, 32, 40)
    assert "ceiling: holdout influence (margin, 40 runs)" in lds_table(scored)
    arrays = lds_arrays(scored, {})
    assert arrays["trak_run_ids"].tolist() == list(split.estimation[:10])
    assert arrays["ceiling_runs"].tolist() == [8, 16, 32, 40]
    assert arrays["baseline_names"].tolist()[-1] == "extra (10 runs)"
    np.testing.assert_allclose(
        arrays["ceiling_lds"][-1], arrays["baseline_lds"][1]
    )  # all estimation runs: the holdout margin baseline
    leaky = FromRuns((split.estimation[0], split.evaluation[0]))
    with pytest.raises(UsageError, match="leakage"):
        score_attribution(np.zeros((20, 60)), runs, split, reader, "margin", extra={"x": leaky})
