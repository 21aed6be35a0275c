"""The synthetic experiments: released layout, determinism, and a recoverable planted truth."""

import dataclasses
import hashlib

import numpy as np
import pytest

from heldout.release import layout as release
from heldout.release.aux_arrays import load_aux_arrays
from heldout.scores.counts import compute_memorization
from heldout.scores.influence import compute_influence
from heldout.testing.synthetic import (
    KnownProbabilities,
    ProbabilityExperiment,
    SyntheticExperiment,
    SyntheticSpec,
    cscore_like_probabilities,
    plant_pairs,
    planted_structure,
    probabilities_from_spec,
    write_synthetic_experiment,
)


def test_written_experiment_has_the_released_layout(tmp_path):
    spec = SyntheticSpec(num_train=50, num_test=20, subset_ratios=(0.3, 0.7), runs_per_ratio=3)
    experiment = write_synthetic_experiment(tmp_path / "synthetic-mlp", spec)
    assert experiment.subset_ratios == (0.3, 0.7)
    assert [run.run_id for run in experiment.runs_at(0.7)] == [0, 1, 2]
    assert (tmp_path / "synthetic-mlp" / "0.7" / "2" / "aux_arrays.npz").is_file()
    assert experiment.meta.extra["synthetic"]["num_train"] == 50
    for run in experiment.runs:
        aux = load_aux_arrays(run.aux_path)  # validates every rule of the format
        assert (aux.num_train, aux.num_test) == (50, 20)
        assert aux.index_train.size == round(run.subset_ratio * 50)
        # Evaluation orders are shuffled, as in the release.
        assert not np.array_equal(aux.index_test, np.arange(20))


def test_runs_are_the_same_whatever_the_order_they_are_drawn_in():
    spec = SyntheticSpec(num_train=100, num_test=30, runs_per_ratio=4)
    first = SyntheticExperiment(spec)
    later = SyntheticExperiment(spec)
    later.draw_run(0.1, 0)  # draw something else first
    a, b = first.draw_run(0.7, 3), later.draw_run(0.7, 3)
    for key, value in a.as_dict().items():
        np.testing.assert_array_equal(value, b.as_dict()[key], err_msg=key)
    other_seed = SyntheticExperiment(SyntheticSpec(num_train=100, num_test=30, seed=1))
    assert not np.array_equal(other_seed.draw_run(0.7, 3).train_mask(), a.train_mask())


def test_unshuffled_runs_keep_index_order_and_the_same_content():
    experiment = SyntheticExperiment(SyntheticSpec(num_train=64, num_test=16))
    shuffled, plain = experiment.draw_run(0.5, 1), experiment.draw_run(0.5, 1, shuffle=False)
    np.testing.assert_array_equal(plain.index_test, np.arange(16))
    np.testing.assert_array_equal(plain.train_mask(), shuffled.train_mask())
    np.testing.assert_array_equal(plain.train_correctness(), shuffled.train_correctness())
    np.testing.assert_array_equal(plain.test_correctness(), shuffled.test_correctness())


def test_planted_memorization_and_influence_are_recovered():
    spec = SyntheticSpec(
        num_train=400,
        num_test=100,
        subset_ratios=(0.7,),
        runs_per_ratio=300,
        atypical_fraction=0.05,
        num_influence_pairs=4,
    )
    experiment = SyntheticExperiment(spec)
    runs = [aux for _, _, aux in experiment.iter_runs(shuffle=False)]
    planted = experiment.planted
    memorization = compute_memorization(runs, 0.7)
    error = np.abs(memorization.memorization - planted.expected_memorization(0.7))
    p_in, p_out = planted.p_trained(0.7), planted.p_heldout(0.7)
    true_stderr = np.sqrt(
        p_in * (1 - p_in) / memorization.count_in + p_out * (1 - p_out) / memorization.count_out
    )
    assert np.all(error < 5 * true_stderr)
    typical = np.setdiff1d(np.arange(spec.num_train), planted.atypical)
    assert (
        memorization.memorization[planted.atypical].min()
        > memorization.memorization[typical].mean()
    )
    influence = compute_influence(runs, topk=1)
    np.testing.assert_array_equal(influence.topk_index[planted.pair_test, 0], planted.pair_train)
    np.testing.assert_allclose(
        influence.topk_value[planted.pair_test, 0], planted.expected_pair_influence, atol=0.15
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"subset_ratios": (0.0,)}, "subset ratio"),
        ({"num_train": 0}, "positive"),
        ({"num_train": 20, "num_influence_pairs": 2}, "num_influence_pairs"),
    ],
)
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSpec(**kwargs)


def test_write_refuses_to_replace_an_existing_run(tmp_path):
    spec = SyntheticSpec(
        num_train=20, num_test=5, subset_ratios=(0.5,), runs_per_ratio=1, num_influence_pairs=1
    )
    SyntheticExperiment(spec).write(tmp_path / "e")
    with pytest.raises(FileExistsError):
        SyntheticExperiment(spec).write(tmp_path / "e")
    assert len(release.open_experiment(tmp_path / "e").runs) == 1


def test_refusing_to_write_leaves_the_existing_meta_untouched(tmp_path):
    # Today the meta file was overwritten before the runs were refused.
    spec = SyntheticSpec(
        num_train=20, num_test=5, subset_ratios=(0.5,), runs_per_ratio=1, num_influence_pairs=1
    )
    SyntheticExperiment(spec).write(tmp_path / "e")
    meta_path = tmp_path / "e" / release.EXPERIMENT_META_FILE
    before = meta_path.read_bytes()
    other = dataclasses.replace(spec, seed=spec.seed + 1)
    with pytest.raises(FileExistsError, match="already holds an experiment"):
        SyntheticExperiment(other).write(tmp_path / "e")
    assert meta_path.read_bytes() == before
    meta = release.open_experiment(tmp_path / "e").meta
    assert (meta.num_train, meta.num_test) == (20, 5)


# ---------------------------------------------------------------------------------------
# The known-probability mode.


def _run_digest(experiment) -> str:
    digest = hashlib.sha256()
    for _, _, aux in experiment.iter_runs():
        for key, value in sorted(aux.as_dict().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def test_the_planted_model_draws_the_same_runs_as_before_the_new_mode():
    # Digest of these runs drawn by the code before the known-probability mode existed.
    spec = SyntheticSpec(
        num_train=97, num_test=31, subset_ratios=(0.3, 0.7), runs_per_ratio=3, seed=4
    )
    assert (
        _run_digest(SyntheticExperiment(spec))
        == "f947168ab6526bd2868ab5853c646aa81edbaeeafafd433026baaea1960351a3"
    )


def _small_truth(num_train=300, num_test=40, ratios=(0.25, 0.5, 0.75), seed=0):
    rng = np.random.default_rng(seed)
    p_heldout = rng.uniform(0.05, 0.95, (len(ratios), num_train))
    return KnownProbabilities(
        subset_ratios=ratios,
        p_heldout=p_heldout,
        p_trained=1 - (1 - p_heldout) * 0.1,
        p_test=rng.uniform(0.05, 0.95, (len(ratios), num_test)),
    )


def test_runs_follow_the_known_probabilities():
    truth = _small_truth()
    experiment = ProbabilityExperiment(truth, runs_per_ratio=400, seed=3)
    s = truth.ratio_index(0.5)
    heldout_correct = np.zeros(truth.num_train)
    heldout = np.zeros(truth.num_train)
    trained_correct = np.zeros(truth.num_train)
    test_correct = np.zeros(truth.num_test)
    for run_id in range(400):
        mask, correct, test, _ = experiment.draw_predictions(0.5, run_id)
        assert mask.sum() == 150  # the release's design: round(ratio * N) trained on
        heldout += ~mask
        heldout_correct += correct & ~mask
        trained_correct += correct & mask
        test_correct += test
    p_out = heldout_correct / heldout
    p_in = trained_correct / (400 - heldout)
    # Every example's frequency within 5 binomial standard errors of its probability.
    for estimate, p, n in (
        (p_out, truth.p_heldout[s], heldout),
        (p_in, truth.p_trained[s], 400 - heldout),
        (test_correct / 400, truth.p_test[s], 400),
    ):
        assert np.all(np.abs(estimate - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-9)


def test_fixed_count_design_holds_every_example_out_exactly_n_times():
    truth = _small_truth(num_train=500)
    experiment = ProbabilityExperiment(truth, runs_per_ratio=[11, 16, 32], design="fixed_count")
    for ratio, runs in zip(truth.subset_ratios, (11, 16, 32), strict=True):
        heldout = sum(~experiment.draw_predictions(ratio, r)[0] for r in range(runs))
        assert experiment.heldout_runs(ratio) == 8
        np.testing.assert_array_equal(heldout, 8)
    with pytest.raises(ValueError, match="does not exist"):
        experiment.draw_run(0.5, 16)
    # Memberships are independent across examples: the unplanted influences are all 0.
    assert not experiment.true_influence(0.5).any()


def test_probability_runs_are_reproducible_and_written_in_the_released_layout(tmp_path):
    truth = _small_truth(num_train=60, num_test=12)
    first = ProbabilityExperiment(truth, runs_per_ratio=[2, 3, 4], seed=9)
    again = ProbabilityExperiment(truth, runs_per_ratio=[2, 3, 4], seed=9)
    again.draw_run(0.75, 3)  # draw something else first
    assert _run_digest(first) == _run_digest(again)
    assert _run_digest(first) != _run_digest(ProbabilityExperiment(truth, [2, 3, 4], seed=10))
    written = first.write(tmp_path / "known")
    assert [len(written.runs_at(r)) for r in truth.subset_ratios] == [2, 3, 4]
    for run in written.runs:
        load_aux_arrays(run.aux_path)  # validates every rule of the format
    recorded = written.meta.extra["known_probabilities"]
    assert recorded["design"] == "subset" and recorded["seed"] == 9
    assert (written.meta.num_train, written.meta.num_test) == (60, 12)
    with pytest.raises(FileExistsError):
        first.write(tmp_path / "known")


def test_planted_pairs_have_the_influence_they_were_given():
    truth = _small_truth(num_train=400, num_test=100, ratios=(0.7,))
    truth = plant_pairs(truth, [0.3, 0.6, 0.9], subset_ratio=0.7, min_memorization=0.2, seed=1)
    np.testing.assert_allclose(truth.true_pair_influence, [0.3, 0.6, 0.9])
    assert np.all(truth.true_memorization(0.7)[truth.pair_train] >= 0.2)
    experiment = ProbabilityExperiment(truth, runs_per_ratio=1500, seed=2)
    runs = [aux for _, _, aux in experiment.iter_runs(shuffle=False)]
    influence = compute_influence(runs, topk=0).matrix
    true = experiment.true_influence(0.7)
    planted = influence[truth.pair_test, truth.pair_train]
    np.testing.assert_allclose(planted, true[truth.pair_test, truth.pair_train], atol=0.1)
    # Another training example of the first pair's row: -effect / (N - 1) (a fixed subset size).
    assert true[truth.pair_test[0], truth.pair_train[1]] == pytest.approx(-0.3 / 399)


def test_the_planted_model_as_known_probabilities_has_the_same_truth():
    spec = SyntheticSpec(num_train=80, num_test=20, subset_ratios=(0.3, 0.7))
    truth = probabilities_from_spec(spec)
    planted = planted_structure(spec)
    np.testing.assert_allclose(truth.true_memorization(0.7), planted.expected_memorization(0.7))
    np.testing.assert_array_equal(truth.pair_train, planted.pair_train)
    np.testing.assert_allclose(truth.true_pair_influence, planted.expected_pair_influence)


def test_cscore_like_probabilities_follow_the_given_scores():
    scores = np.linspace(0.05, 0.95, 1000)
    truth = cscore_like_probabilities(scores, (0.1, 0.5, 0.9), num_test=50, seed=0)
    assert truth.num_train == 1000 and truth.num_test == 50
    s = truth.ratio_index(0.5)  # at the middle ratio, the curve passes through the score
    np.testing.assert_allclose(truth.p_heldout[s], scores, atol=1e-12)
    assert np.all(truth.p_trained >= truth.p_heldout)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"p_heldout": np.full((3, 5), 1.5)}, "probabilities"),
        ({"p_trained": np.zeros((2, 5))}, "shape"),
        ({"subset_ratios": (0.5, 0.25, 0.75)}, "increasing"),
        (
            {
                "pair_train": [0, 1],
                "pair_test": [0, 0],
                "pair_p_trained": [1, 1],
                "pair_p_heldout": [0, 0],
            },
            "at most one",
        ),
    ],
)
def test_bad_known_probabilities_are_refused(change, message):
    fields = {
        "subset_ratios": (0.25, 0.5, 0.75),
        "p_heldout": np.full((3, 5), 0.5),
        "p_trained": np.full((3, 5), 0.9),
        "p_test": np.full((3, 4), 0.5),
    }
    with pytest.raises(ValueError, match=message):
        KnownProbabilities(**{**fields, **change})
