"""The scores file: key constants, provenance, and old files still read."""

import json
from pathlib import Path

import numpy as np
import pytest

from heldout._core import atomic
from heldout._core.provenance import TOOLKIT_VERSION
from heldout.errors import ScoresError
from heldout.scores import file as keys
from heldout.scores.experiment import score_experiment
from heldout.scores.request import ScoreRequest
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment


@pytest.fixture
def experiment(tmp_path):
    spec = SyntheticSpec(num_train=30, num_test=6, subset_ratios=(0.3, 0.7), runs_per_ratio=3)
    return write_synthetic_experiment(tmp_path / "e", spec)


def test_counts_follow_one_rule():
    count_keys = [
        value
        for name, value in vars(keys).items()
        if name.isupper() and isinstance(value, str) and "_count" in value
    ]
    for key in count_keys:
        if key == keys.CSCORE_RATIO_COUNT:  # ratios, not runs
            continue
        assert "_count_in" in key or "_count_out" in key, key
    assert set(keys.RENAMED_KEYS.values()) <= set(count_keys)


def test_a_file_with_old_keys_loads_with_new_ones(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, heldout_count_by_ratio=np.ones((2, 3), np.int32), soft_cscore_count=np.arange(3))
    arrays = keys.load_scores(path)
    assert set(arrays) == {keys.CSCORE_COUNT_OUT_BY_RATIO, keys.SOFT_CSCORE_COUNT_OUT}
    np.testing.assert_array_equal(arrays[keys.SOFT_CSCORE_COUNT_OUT], [0, 1, 2])
    assert keys.load_provenance(arrays) is None


def test_a_missing_file_is_a_scores_error(tmp_path):
    with pytest.raises(ScoresError, match="absent.npz"):
        keys.load_scores(tmp_path / "absent.npz")


def test_scores_carry_their_provenance(experiment, tmp_path):
    request = ScoreRequest(("cscore", "memorization"), subset_ratio=0.3)
    result = score_experiment(experiment, request)
    path = tmp_path / "scores.npz"
    keys.save_scores(path, result.arrays())
    arrays = keys.load_scores(path)
    provenance = keys.load_provenance(arrays)
    assert provenance == json.loads(json.dumps(result.provenance))
    assert provenance["heldout_version"] == TOOLKIT_VERSION
    assert provenance["experiment"]["name"] == "e"
    assert provenance["experiment"]["n_train"] == 30 and provenance["experiment"]["n_test"] == 6
    assert provenance["options"] == request.as_dict()
    assert provenance["options"]["subset_ratio"] == 0.3
    runs = [(run["subset_ratio"], run["run_id"]) for run in provenance["runs"]]
    assert runs == [(float(run.subset_ratio), run.run_id) for run in experiment.runs]


def test_skipped_runs_are_left_out_of_the_provenance(experiment):
    broken = experiment.runs[0].aux_path
    broken.write_bytes(broken.read_bytes()[:50])
    result = score_experiment(experiment, ScoreRequest(skip_bad_runs=True))
    assert len(result.skipped) == 1
    assert len(result.provenance["runs"]) == len(experiment.runs) - 1


def test_score_request_is_frozen_and_replaced():
    request = ScoreRequest(["influence"], influence_topk=3)
    assert request.scores == ("influence",)
    changed = request.replace(backend="numpy")
    assert changed.backend == "numpy" and request.backend == "auto"
    with pytest.raises(AttributeError):
        request.backend = "popcount"
    assert json.loads(json.dumps(changed.as_dict()))["influence_topk"] == 3


def _leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".")]


def test_save_scores_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "scores.npz"
    keys.save_scores(target, {"a": np.arange(3)})

    def failing_write(file, arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(atomic, "write_stored_npz", failing_write)
    with pytest.raises(OSError, match="disk full"):
        keys.save_scores(target, {"a": np.arange(5)})
    np.testing.assert_array_equal(np.load(target)["a"], np.arange(3))  # old file intact
    assert _leftovers(tmp_path) == []
