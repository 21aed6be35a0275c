"""Soft C-scores: the mean held-out probability of the label, with known answers."""

import numpy as np
import pytest

from heldout.errors import ScoresError
from heldout.scores import file as keys
from heldout.scores.soft_cscore import (
    HELDOUT_PROBS_FILE,
    experiment_soft_cscores,
    heldout_softmax,
    load_heldout_probs,
    out_of_sample_probs,
    write_heldout_probs,
)
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment


def test_out_of_sample_probs_average_the_runs_that_held_each_example_out(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_heldout_probs(a, [0, 2], [[0.25, 0.75], [0.5, 0.5]])
    write_heldout_probs(b, [2], [[1.0, 0.0]])
    probs = out_of_sample_probs([a, b], num_train=3)
    np.testing.assert_array_equal(probs.count, [1, 0, 2])
    np.testing.assert_allclose(probs.probs[0], [0.25, 0.75])
    np.testing.assert_allclose(probs.probs[2], [0.75, 0.25])
    assert np.isnan(probs.probs[1]).all() and probs.num_runs == 2
    soft = probs.soft_cscore(np.array([1, 0, 0]))
    np.testing.assert_allclose(soft[[0, 2]], [0.75, 0.75])
    assert np.isnan(soft[1])
    with pytest.raises(ScoresError, match="2 labels for 3"):
        probs.soft_cscore(np.array([0, 1]))


def test_heldout_softmax_is_a_float16_softmax_of_the_rows():
    images = np.arange(12, dtype=np.uint8).reshape(4, 3)
    got = heldout_softmax(
        lambda x: x[:, :2].astype(np.float64), images, np.array([3, 1]), 2, chunk=1
    )
    assert got.dtype == np.float16 and got.shape == (2, 2)
    # logits (9, 10) and (3, 4): softmax (1 / (1 + e), e / (1 + e)) for both rows.
    want = np.array([1.0, np.e]) / (1.0 + np.e)
    np.testing.assert_allclose(got.astype(np.float64), [want, want], atol=1e-3)
    empty = heldout_softmax(lambda x: x, images, np.array([], np.int64), 5)
    assert empty.shape == (0, 5)


def test_a_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(ScoresError, match="--record_heldout_probs"):
        load_heldout_probs(tmp_path, 3)
    write_heldout_probs(tmp_path, [0, 0], [[1.0], [1.0]])  # duplicate index
    with pytest.raises(ScoresError, match="unique int index"):
        load_heldout_probs(tmp_path, 3)
    with pytest.raises(ScoresError, match="no runs"):
        out_of_sample_probs([], 3)


def test_experiment_soft_cscores_use_the_file_keys(tmp_path):
    spec = SyntheticSpec(num_train=20, num_test=4, subset_ratios=(0.5,), runs_per_ratio=2)
    experiment = write_synthetic_experiment(tmp_path / "e", spec)
    labels = np.zeros(20, np.int64)
    for k, run in enumerate(experiment.runs):
        held_out = np.flatnonzero(~run.load_aux().train_mask())
        probs = np.full((held_out.size, 2), 0.5)
        probs[:, 0] = 0.25 * (k + 1)  # run 0: 0.25, run 1: 0.5
        write_heldout_probs(run.path, held_out, probs)
        assert (run.path / HELDOUT_PROBS_FILE).is_file()
    arrays = experiment_soft_cscores(experiment, labels)
    assert set(arrays) == {keys.SOFT_CSCORE, keys.SOFT_CSCORE_COUNT_OUT}
    count = arrays[keys.SOFT_CSCORE_COUNT_OUT]
    soft = arrays[keys.SOFT_CSCORE]
    assert np.isnan(soft[count == 0]).all()
    # float16 of 0.25 and 0.5 is exact: each value is the mean over the runs behind it.
    assert set(np.round(soft[count > 0], 6)) <= {0.25, 0.375, 0.5}
