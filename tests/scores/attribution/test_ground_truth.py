"""export_ground_truth: TRAK's masks/margins and dattri's LDS pair, read back with plain numpy,
and every refusal one error naming the file with nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from margin_experiment import planted_tau, write_margin_experiment
from scipy.stats import spearmanr

from heldout.errors import OutputOverInputError, OutputsError, StaleResultError, UsageError
from heldout.release import layout as release
from heldout.release.outputs import OUTPUTS_FILE
from heldout.release.outputs_reading import read_outputs
from heldout.scores.attribution.ground_truth import (
    SIDECAR_FILE,
    export_ground_truth,
    select_runs,
)
from heldout.scores.attribution.lds import compute_lds
from heldout.scores.attribution.split import split_runs

TAU = planted_tau()
N_TEST, N_TRAIN = TAU.shape


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("gt") / "exp"
    write_margin_experiment(root, TAU, runs=40, extra_ratio=0.3)
    return release.open_experiment(root)


def _dattri_lds(score: np.ndarray, ground_truth: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The LDS dattri's `lds` (dattri/metric/metrics.py) computes, in numpy: score is
    [n_train, n_test]; each subset's row of indices, those below n_train kept, sums the
    score; Spearman per test example over the subsets (scipy's, as dattri calls it)."""
    target_values, indices = ground_truth
    score = score.T
    sums = np.stack([score[:, row[row < score.shape[1]]].sum(axis=1) for row in indices])
    return np.array(
        [spearmanr(sums[:, t], target_values[:, t]).correlation for t in range(score.shape[0])]
    )


def test_trak_files_load_with_plain_numpy_in_the_runs_order(experiment, tmp_path):
    ratio, runs = select_runs(experiment, selection=(7, 3, 11, 5))
    done = export_ground_truth(experiment, runs, tmp_path / "gt")
    assert ratio == 0.5 and done.run_ids == (3, 5, 7, 11)
    masks = np.load(tmp_path / "gt" / "masks.npy")
    margins = np.load(tmp_path / "gt" / "margins.npy")
    assert masks.dtype == np.bool_ and masks.shape == (4, N_TRAIN)
    assert margins.dtype == np.float32 and margins.shape == (4, N_TEST)
    ids, expected_masks, expected_margins = read_outputs(experiment, 0.5, run_ids=[3, 5, 7, 11])
    np.testing.assert_array_equal(masks, expected_masks)
    np.testing.assert_array_equal(margins, expected_margins)
    sidecar = json.loads((tmp_path / "gt" / SIDECAR_FILE).read_text())
    assert sidecar["run_ids"] == [3, 5, 7, 11] and sidecar["subset_ratio"] == 0.5
    assert sidecar["split"] == "test" and sidecar["output_kind"] == "margin"
    assert sidecar["num_train"] == N_TRAIN and sidecar["num_examples"] == N_TEST
    assert sidecar["experiment"]["path"] == str(experiment.path.absolute())
    assert "index_order" in sidecar["experiment"] and sidecar["heldout_version"]
    assert sorted(sidecar["files"]) == ["margins.npy", "masks.npy"]
    assert sorted(p.name for p in (tmp_path / "gt").iterdir()) == [
        SIDECAR_FILE,
        "margins.npy",
        "masks.npy",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt"]  # no temporary left


def test_dattri_pair_in_its_shapes_scores_as_our_lds(experiment, tmp_path):
    _, runs = select_runs(experiment, selection=0.5, seed=4)
    assert [r.run_id for r in runs] == list(
        split_runs(range(40), evaluation=0.5, seed=4).evaluation
    )
    done = export_ground_truth(experiment, runs, tmp_path / "gt", formats=("dattri",))
    folder = tmp_path / "gt"
    assert sorted(p.name for p in folder.iterdir()) == [
        SIDECAR_FILE,
        "indices_lds.npy",
        "target_values_lds.npy",
    ]
    target_values = np.load(folder / "target_values_lds.npy")
    indices = np.load(folder / "indices_lds.npy")
    assert target_values.dtype == np.float32 and target_values.shape == (20, N_TEST)
    assert indices.dtype == np.int64 and indices.ndim == 2 and indices.shape[0] == 20
    _, masks, margins = read_outputs(experiment, 0.5, run_ids=list(done.run_ids))
    sizes = masks.sum(axis=1)
    assert indices.shape[1] == sizes.max() and sizes.min() < sizes.max()  # padded rows
    for row, mask in zip(indices, masks, strict=True):
        np.testing.assert_array_equal(row[row < N_TRAIN], np.flatnonzero(mask))
        assert np.all(row[mask.sum() :] == N_TRAIN)
    sidecar = json.loads((folder / SIDECAR_FILE).read_text())
    assert sidecar["dattri"]["pad_index"] == N_TRAIN
    assert "dattri/metric/metrics.py" in sidecar["dattri"]["source"]
    # a dense attribution (no ties among the runs' predictions) scored both ways
    rng = np.random.default_rng(2)
    tau = TAU + rng.uniform(0, 0.05, TAU.shape).astype(np.float32)
    theirs = _dattri_lds(tau.T, (target_values, indices))
    ours = compute_lds(tau, masks, margins)
    np.testing.assert_allclose(theirs, ours.per_test, atol=1e-9)
    assert ours.lds >= 0.8


def test_correctness_of_the_training_split_and_both_formats(experiment, tmp_path):
    _, runs = select_runs(experiment, selection=(0, 1, 2))
    export_ground_truth(
        experiment,
        runs,
        tmp_path / "gt",
        output_kind="correctness",
        split="train",
        formats=("trak", "dattri"),
    )
    folder = tmp_path / "gt"
    correctness = np.load(folder / "correctness.npy")
    assert correctness.dtype == np.float32 and correctness.shape == (3, N_TRAIN)
    for row, run in zip(correctness, runs, strict=True):
        np.testing.assert_array_equal(row, run.load_aux().train_correctness())
    np.testing.assert_array_equal(np.load(folder / "target_values_lds.npy"), correctness)
    assert not (folder / "margins.npy").exists()
    sidecar = json.loads((folder / SIDECAR_FILE).read_text())
    assert sidecar["output_kind"] == "correctness" and "noisier" in sidecar["output"]


def test_an_earlier_export_is_replaced_as_a_whole(experiment, tmp_path):
    _, runs = select_runs(experiment, selection=(0, 1))
    export_ground_truth(experiment, runs, tmp_path / "gt", formats=("trak", "dattri"))
    export_ground_truth(experiment, runs[:1], tmp_path / "gt")
    assert sorted(p.name for p in (tmp_path / "gt").iterdir()) == [
        SIDECAR_FILE,
        "margins.npy",
        "masks.npy",
    ]
    assert np.load(tmp_path / "gt" / "masks.npy").shape == (1, N_TRAIN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt"]


def _nothing_written(tmp_path, before):
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_ratio_without_outputs_is_refused_naming_the_file(experiment, tmp_path):
    _, runs = select_runs(experiment, subset_ratio=0.3)
    with pytest.raises(OutputsError, match=rf"^{experiment.path}/0.3/0/{OUTPUTS_FILE}: no outputs"):
        export_ground_truth(experiment, runs, tmp_path / "gt")
    _nothing_written(tmp_path, [])


def test_outputs_of_another_checkpoint_are_refused_naming_the_file(tmp_path):
    root = write_margin_experiment(tmp_path / "exp", TAU, runs=4)
    planted = root / "0.5" / "3" / OUTPUTS_FILE
    shutil.copyfile(root / "0.5" / "1" / OUTPUTS_FILE, planted)
    experiment = release.open_experiment(root)
    _, runs = select_runs(experiment)
    with pytest.raises(OutputsError, match=rf"^{planted}: from another checkpoint"):
        export_ground_truth(experiment, runs, tmp_path / "gt")
    _nothing_written(tmp_path, ["exp"])  # run 3 is the last: rows 0-2 were streamed first


def test_an_output_inside_the_experiment_or_over_other_files_is_refused(experiment, tmp_path):
    _, runs = select_runs(experiment, selection=(0,))
    with pytest.raises(OutputOverInputError, match="lies inside the input folder"):
        export_ground_truth(experiment, runs, experiment.path / "gt")
    assert not (experiment.path / "gt").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(StaleResultError, match=r"mine: holds \['notes.txt'\]"):
        export_ground_truth(experiment, runs, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_run_selection_refuses_unknown_ids_and_empty_fractions(experiment):
    with pytest.raises(UsageError, match=r"run ids \[99\]"):
        select_runs(experiment, selection=(1, 99))
    with pytest.raises(UsageError, match="selects 0"):
        select_runs(experiment, selection=0.01)
    with pytest.raises(UsageError, match="no runs of subset ratio 0.7"):
        select_runs(experiment, subset_ratio=0.7)


def test_outputs_of_a_release_evaluated_elsewhere_are_read_from_outputs_dir(tmp_path):
    root = write_margin_experiment(tmp_path / "exp", TAU, runs=3)
    outs = tmp_path / "outs"
    for run in release.open_experiment(root).runs:
        (outs / "0.5" / str(run.run_id)).mkdir(parents=True)
        shutil.move(run.path / OUTPUTS_FILE, outs / "0.5" / str(run.run_id) / OUTPUTS_FILE)
    experiment = release.open_experiment(root)
    _, runs = select_runs(experiment)
    done = export_ground_truth(experiment, runs, tmp_path / "gt", outputs_dir=outs)
    _, _, expected = read_outputs(experiment, 0.5, outputs_dir=outs)
    np.testing.assert_array_equal(np.load(tmp_path / "gt" / "margins.npy"), expected)
    assert done.sidecar["outputs_dir"] == str(outs.absolute())
    with pytest.raises(OutputOverInputError, match="lies inside the input folder"):
        export_ground_truth(experiment, runs, outs / "gt", outputs_dir=outs)
