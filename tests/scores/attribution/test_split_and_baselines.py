"""The estimation/evaluation split is disjoint; baselines never see an evaluation run."""

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.release.layout import open_experiment
from heldout.scores.attribution.baselines import (
    holdout_influence,
    holdout_influence_on_support,
    random_attribution,
    random_on_support,
)
from heldout.scores.attribution.lds import compute_lds
from heldout.scores.attribution.scoring import read_correctness, score_attribution
from heldout.scores.attribution.split import parse_run_selection, split_runs
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment


def test_parse_ids_ranges_and_fractions():
    assert parse_run_selection("3,5,10-12", "evaluation_runs") == (3, 5, 10, 11, 12)
    assert parse_run_selection("0.25", "evaluation_runs") == 0.25
    assert parse_run_selection("", "evaluation_runs") is None
    for bad in ("1.5", "a,b", "5-3", "0.0"):
        with pytest.raises(UsageError, match="evaluation_runs"):
            parse_run_selection(bad, "evaluation_runs")


@pytest.mark.parametrize(
    "estimation, evaluation",
    [(None, None), (None, 0.3), (0.4, None), (None, (1, 4, 9)), ((0, 2), (1, 3)), (0.5, 0.25)],
)
def test_split_is_disjoint_seeded_and_within_the_runs(estimation, evaluation):
    ids = list(range(20))
    split = split_runs(ids, estimation, evaluation, seed=4)
    assert not set(split.estimation) & set(split.evaluation)
    assert set(split.estimation) | set(split.evaluation) <= set(ids)
    assert split.estimation and split.evaluation
    assert split == split_runs(ids, estimation, evaluation, seed=4)
    if isinstance(evaluation, tuple):
        assert split.evaluation == evaluation


def test_split_refuses_overlap_unknown_ids_and_empty_sides():
    with pytest.raises(UsageError, match="share run ids \\[2\\]"):
        split_runs(range(10), (1, 2), (2, 3))
    with pytest.raises(UsageError, match="not among the runs"):
        split_runs(range(10), None, (3, 40))
    with pytest.raises(UsageError, match="empty"):
        split_runs(range(4), None, (0, 1, 2, 3))
    with pytest.raises(UsageError, match="without runs"):
        split_runs(range(4), None, 0.01)


def test_holdout_influence_is_the_direct_difference_of_means():
    rng = np.random.default_rng(0)
    masks = rng.random((30, 6)) < 0.5
    masks[:, 5] = True  # never held out: undefined, 0
    outputs = rng.normal(size=(30, 4))
    tau = holdout_influence(masks, outputs)
    for t in range(4):
        for j in range(5):
            expected = outputs[masks[:, j], t].mean() - outputs[~masks[:, j], t].mean()
            assert tau[t, j] == pytest.approx(expected, abs=1e-5)
    assert np.all(tau[:, 5] == 0)
    assert random_attribution(4, 6, seed=1).shape == (4, 6)


def test_no_evaluation_run_reaches_an_estimate(tmp_path):
    spec = SyntheticSpec(num_train=60, num_test=20, subset_ratios=(0.5,), runs_per_ratio=24)
    write_synthetic_experiment(tmp_path / "e", spec)
    runs = {run.run_id: run for run in open_experiment(tmp_path / "e").runs_at(0.5)}
    split = split_runs(sorted(runs), evaluation=0.5, seed=2)
    calls = []

    def recording_reader(selected):
        calls.append(tuple(run.run_id for run in selected))
        return read_correctness(selected)

    tau = np.random.default_rng(0).normal(size=(20, 60))
    scored = score_attribution(tau, runs, split, recording_reader)
    estimation_call, evaluation_call = calls
    assert estimation_call == split.estimation
    assert not set(estimation_call) & set(split.evaluation)
    assert evaluation_call == split.evaluation
    # the holdout baseline is exactly the estimate from the estimation runs alone
    expected = holdout_influence(*read_correctness([runs[i] for i in split.estimation]))
    eval_masks, eval_outputs = read_correctness([runs[i] for i in split.evaluation])
    name = [n for n in scored.results if n.startswith("holdout influence (binary")][0]
    direct = compute_lds(expected, eval_masks, eval_outputs).per_test
    np.testing.assert_array_equal(scored.results[name].per_test, direct)
    assert scored.results["attribution"].num_runs == len(split.evaluation)


def test_a_margin_reader_plugs_in_and_names_the_margin_baseline():
    rng = np.random.default_rng(3)
    tau = rng.normal(size=(15, 50)).astype(np.float32)
    masks = rng.random((120, 50)) < 0.5
    margins = masks @ tau.T.astype(np.float64) + 0.1 * rng.normal(size=(120, 15))
    runs = {run_id: run_id for run_id in range(120)}  # the reader gets what runs_by_id holds

    def margin_reader(selected):
        rows = np.asarray(selected)
        return masks[rows], margins[rows]

    split = split_runs(sorted(runs), evaluation=0.5, seed=1)
    scored = score_attribution(tau, runs, split, margin_reader, output_kind="margin")
    names = list(scored.results)
    assert names[:2] == ["attribution", "random"]
    assert names[2] == "holdout influence (margin, 60 runs)"
    assert scored.results["attribution"].lds >= 0.9
    assert scored.results[names[2]].lds > 0.3  # estimated from 60 runs: well below the truth
    assert abs(scored.results["random"].lds) < 0.1


def test_holdout_influence_on_support_is_the_dense_one_at_those_pairs(monkeypatch):
    from heldout.scores.attribution import baselines
    from heldout.scores.attribution.lds import SparseAttribution

    rng = np.random.default_rng(4)
    masks = rng.random((40, 30)) < 0.5
    masks[:, 3] = False  # never trained on: undefined, 0
    outputs = rng.normal(size=(40, 9)).astype(np.float32)
    index = rng.integers(0, 30, (9, 5))
    index[0, 0] = 3
    monkeypatch.setattr(baselines, "BLOCK_BYTES", 200)  # many blocks of runs and tests
    monkeypatch.setattr(baselines, "TRANSPOSED_BLOCK_BYTES", 100)
    got = holdout_influence_on_support(masks, outputs, SparseAttribution(index, index * 0.0, 30))
    dense = holdout_influence(masks, outputs)
    np.testing.assert_allclose(got.value, np.take_along_axis(dense, index, 1), atol=1e-5)
    assert got.value[0, 0] == 0
    support = SparseAttribution(index, np.ones((9, 5), np.float32), 30)
    assert random_on_support(support, 1).value.shape == (9, 5)


def test_a_large_top_k_attribution_gets_baselines_on_its_support(monkeypatch):
    from heldout.scores.attribution import scoring
    from heldout.scores.attribution.lds import SparseAttribution

    rng = np.random.default_rng(5)
    masks = rng.random((60, 40)) < 0.5
    index = rng.integers(0, 40, (12, 4))
    outputs = rng.normal(size=(60, 12))
    runs = {run_id: run_id for run_id in range(60)}
    sparse = SparseAttribution(index, rng.normal(size=(12, 4)).astype(np.float32), 40)
    monkeypatch.setattr(scoring, "DENSE_BASELINE_BYTES", 100)
    split = split_runs(range(60), evaluation=0.5, seed=0)
    scored = score_attribution(sparse, runs, split, lambda rows: (masks[rows], outputs[rows]))
    names = list(scored.results)
    assert names[1] == "random on top-k" and names[2].endswith("on top-k")
    expected = holdout_influence_on_support(
        masks[list(split.estimation)], outputs[list(split.estimation)], sparse
    )
    direct = compute_lds(expected, masks[list(split.evaluation)], outputs[list(split.evaluation)])
    np.testing.assert_array_equal(scored.results[names[2]].per_test, direct.per_test)
