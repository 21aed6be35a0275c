"""The synthetic experiments: released layout, determinism, and a recoverable planted truth."""

import dataclasses

import numpy as np
import pytest

from heldout import release
from heldout.aux_arrays import load_aux_arrays
from heldout.influence import compute_influence
from heldout.scores import compute_memorization
from heldout.synthetic import SyntheticExperiment, SyntheticSpec, write_synthetic_experiment


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
