"""score_experiment: the runs it reads, bad runs, and the scores file written whole."""

import numpy as np
import pytest
from tool_runs import SCORES_SPEC

from heldout.errors import ScoresError
from heldout.release import layout as release
from heldout.release.aux_arrays import aux_from_predictions
from heldout.scores import experiment as scores
from heldout.scores.request import ScoreRequest
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment


def test_score_ratio_defaults_to_the_largest_without_0_7(tmp_path):
    spec = SyntheticSpec(num_train=40, num_test=10, subset_ratios=(0.2, 0.5), runs_per_ratio=3)
    experiment = write_synthetic_experiment(tmp_path / "e", spec)
    result = scores.score_experiment(experiment, ScoreRequest(scores=["memorization"]))
    assert result.score_subset_ratio == 0.5 and result.cscores is None
    np.testing.assert_array_equal(result.subset_ratios, [0.5])
    with pytest.raises(ScoresError, match="ratios present"):
        scores.score_experiment(experiment, ScoreRequest(scores=["memorization"], subset_ratio=0.7))
    with pytest.raises(ScoresError, match="unknown scores"):
        scores.score_experiment(experiment, ScoreRequest(scores=["cscores"]))


def test_runs_of_other_sizes_are_bad_runs(scores_experiment_copy, tmp_path):
    rng = np.random.default_rng(0)
    aux = aux_from_predictions(
        rng.random(121) < 0.7, rng.random(121) < 0.5, rng.random(30) < 0.5, rng
    )
    odd = release.write_run(scores_experiment_copy.path, 0.9, 50, aux)
    experiment = release.open_experiment(scores_experiment_copy.path)
    with pytest.raises(ValueError, match="N=121") as caught:
        scores.score_experiment(experiment, ScoreRequest())
    assert str(caught.value).startswith(str(odd.aux_path))
    skipped = scores.score_experiment(experiment, ScoreRequest(skip_bad_runs=True))
    assert len(skipped.skipped) == 1 and str(odd.aux_path) in skipped.skipped[0]


@pytest.mark.parametrize("declared", [True, False])
def test_an_odd_first_run_is_the_one_skipped(scores_experiment_copy, declared):
    # The odd run sorts first (ratio 0.1, run 0). Today it set the sizes, and with
    # --skip_bad_runs every good run was skipped instead of it.
    if not declared:  # no recorded sizes: the majority decides
        (scores_experiment_copy.path / "experiment.json").unlink()
    rng = np.random.default_rng(1)
    aux = aux_from_predictions(rng.random(99) < 0.5, rng.random(99) < 0.5, rng.random(30) < 0.5)
    odd = release.write_run(scores_experiment_copy.path, 0.1, 0, aux)
    experiment = release.open_experiment(scores_experiment_copy.path)
    assert experiment.runs[0] == odd
    result = scores.score_experiment(experiment, ScoreRequest(skip_bad_runs=True))
    assert len(result.skipped) == 1 and result.skipped[0].startswith(str(odd.aux_path))
    assert ("experiment.json" if declared else "the majority of the runs") in result.skipped[0]
    assert result.cscores.cscore.size == SCORES_SPEC.num_train
    np.testing.assert_array_equal(result.num_runs_by_ratio, [0, 8, 8, 8])
