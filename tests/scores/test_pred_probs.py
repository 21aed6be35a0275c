"""The pred_probs export for cleanlab, on a synthetic experiment with known held-out softmax rows:
streaming equals a direct mean, each bad input is one error naming its file, and the files
load with plain numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heldout.errors import LabelCorruptionError, ScoresError, StaleResultError
from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.release.outputs import run_identity
from heldout.scores import pred_probs as export
from heldout.scores.soft_cscore import (
    HELDOUT_PROBS_FILE,
    heldout_probs_path,
    out_of_sample_probs,
    write_heldout_probs,
)
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

CLASSES = 3
SPEC = SyntheticSpec(num_train=30, num_test=5, subset_ratios=(0.5, 0.7), runs_per_ratio=3)


def _softmax_rows(rng, n):
    logits = rng.normal(size=(n, CLASSES)) * 3
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture()
def experiment(tmp_path):
    """A synthetic experiment whose runs carry held-out softmax rows beside them, and the
    same rows in an outputs folder (with identities, as `heldout evaluate` writes them)."""
    opened = write_synthetic_experiment(tmp_path / "exp", SPEC)
    rng = np.random.default_rng(0)
    for run in opened.runs:
        held_out = np.flatnonzero(~run.load_aux().train_mask())
        probs = _softmax_rows(rng, held_out.size)
        write_heldout_probs(run.path, held_out, probs)
        identity = run_identity(run.path, run.subset_ratio, run.run_id)
        folder = heldout_probs_path(run.path, opened.path, tmp_path / "outs").parent
        write_heldout_probs(folder, held_out, probs, identity=identity)
    return opened


def _direct_mean(experiment):
    """The mean over held-out runs from all runs' rows stacked at once (what streaming avoids)."""
    n = SPEC.num_train
    stacked = np.full((len(experiment.runs), n, CLASSES), np.nan)
    for r, run in enumerate(experiment.runs):
        with np.load(run.path / HELDOUT_PROBS_FILE) as f:
            stacked[r, f["index"]] = f["probs"].astype(np.float64)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty"):
        return np.nanmean(stacked, axis=0), (~np.isnan(stacked[..., 0])).sum(axis=0)


def test_streaming_equals_a_direct_mean_over_the_held_out_runs(experiment, tmp_path):
    want, count = _direct_mean(experiment)
    runs = export.select_runs(experiment)
    seen = []
    for outputs_dir in (None, tmp_path / "outs"):
        got = export.accumulate_heldout_probs(experiment, runs, outputs_dir, seen.append)
        np.testing.assert_array_equal(got.count, count)
        np.testing.assert_allclose(got.probs, want, rtol=1e-12, equal_nan=True)
    assert len(seen) == 2 * len(runs) == 12
    # The soft C-score's reader gives the same means from the same files.
    soft = out_of_sample_probs([run.path for run in runs], SPEC.num_train)
    np.testing.assert_allclose(soft.probs, want, rtol=1e-12, equal_nan=True)
    at_half = export.accumulate_heldout_probs(experiment, export.select_runs(experiment, 0.5))
    assert at_half.num_runs == 3 and at_half.count.max() <= 3


def test_export_rows_sum_to_one_nan_where_never_held_out_and_load_with_plain_numpy(
    experiment, tmp_path
):
    probs = export.accumulate_heldout_probs(experiment, experiment.runs)
    never = int((probs.count == 0).sum())
    labels = np.arange(SPEC.num_train) % CLASSES
    result = export.export_pred_probs(probs, labels, "dataset", experiment={"name": "e"})
    written = export.save_pred_probs(tmp_path / "out", result)
    assert [p.name for p in written] == [
        "pred_probs.npy",
        "labels.npy",
        "counts.npy",
        "pred_probs.json",
    ]
    pred = np.load(tmp_path / "out" / "pred_probs.npy")
    counts = np.load(tmp_path / "out" / "counts.npy")
    assert pred.dtype == np.float32 and pred.shape == (SPEC.num_train, CLASSES)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "labels.npy"), labels)
    keep = counts > 0
    np.testing.assert_allclose(pred[keep].sum(axis=1), 1.0, atol=1e-6)
    assert np.isnan(pred[~keep]).all() and (~keep).sum() == never
    sidecar = json.loads((tmp_path / "out" / "pred_probs.json").read_text())
    assert sidecar["never_held_out"] == never and sidecar["num_runs"] == 6
    assert sidecar["experiment"] == {"name": "e"} and sidecar["labels_source"] == "dataset"
    loaded = export.load_pred_probs(tmp_path / "out")
    np.testing.assert_array_equal(loaded.held_out, keep)
    np.save(tmp_path / "out" / "counts.npy", counts + 1)  # changed behind the sidecar's back
    with pytest.raises(ScoresError, match="counts.npy: differs from"):
        export.load_pred_probs(tmp_path / "out")
    export.save_pred_probs(tmp_path / "out", result)  # an earlier export is replaced whole
    np.testing.assert_array_equal(export.load_pred_probs(tmp_path / "out").counts, counts)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StaleResultError, match=r"other: holds \['notes.txt'\]"):
        export.save_pred_probs(tmp_path / "other", result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "other", "out", "outs"]


def test_an_example_never_held_out_is_refused_when_asked(experiment):
    probs = export.accumulate_heldout_probs(experiment, experiment.runs[:1])
    export.require_held_out(probs, 0, "E")  # the default: NaN rows, counted
    with pytest.raises(ScoresError, match=r"^E: 15 training examples are held out by fewer"):
        export.require_held_out(probs, 1, "E")


def test_a_file_that_does_not_match_its_runs_aux_arrays_is_named(experiment, tmp_path):
    run = experiment.runs[0]
    other = experiment.runs[1]
    path = run.path / HELDOUT_PROBS_FILE
    path.write_bytes((other.path / HELDOUT_PROBS_FILE).read_bytes())  # another run's examples
    with pytest.raises(ScoresError, match=f"^{path}: covers 15 examples, but its run's aux"):
        export.accumulate_heldout_probs(experiment, experiment.runs)


def test_a_file_from_another_checkpoint_is_named(experiment, tmp_path):
    run = experiment.runs[2]
    path = heldout_probs_path(run.path, experiment.path, tmp_path / "outs")
    with np.load(path) as f:
        index, probs = f["index"], f["probs"]
    write_heldout_probs(path.parent, index, probs, identity={"run_id": 99})
    with pytest.raises(ScoresError, match=f"^{path}: from another checkpoint"):
        export.accumulate_heldout_probs(experiment, experiment.runs, tmp_path / "outs")
    path.unlink()
    with pytest.raises(ScoresError, match=f"^{path}: no heldout_probs.npz for run 2"):
        export.accumulate_heldout_probs(experiment, experiment.runs, tmp_path / "outs")


def test_a_file_with_other_classes_is_named(experiment):
    run = experiment.runs[3]
    held_out = np.flatnonzero(~run.load_aux().train_mask())
    write_heldout_probs(run.path, held_out, np.full((held_out.size, 2), 0.5))
    with pytest.raises(ScoresError, match=f"^{run.path / HELDOUT_PROBS_FILE}: 2 classes"):
        export.accumulate_heldout_probs(experiment, experiment.runs)


def _record_corruption(experiment, corruption) -> release.Experiment:
    path = experiment.path / label_corruption.LABEL_CORRUPTION_FILE
    label_corruption.save_label_corruption(path, corruption)
    meta = experiment.meta
    extra = {**meta.extra, label_corruption.META_KEY: path.name}
    release.write_experiment_meta(experiment.path, type(meta)(**{**vars(meta), "extra": extra}))
    return release.open_experiment(experiment.path)


def test_labels_are_the_trained_on_ones_and_a_mismatching_record_is_named(experiment):
    clean = np.arange(SPEC.num_train) % CLASSES
    labels, source = export.trained_labels(experiment, clean, CLASSES)
    assert source == "dataset" and np.array_equal(labels, clean)
    index = np.array([1, 4])
    corruption = label_corruption.LabelCorruption(index, clean[index], (clean[index] + 1) % 3)
    corrupted = _record_corruption(experiment, corruption)
    labels, source = export.trained_labels(corrupted, clean, CLASSES)
    assert source == "after_corruption"
    np.testing.assert_array_equal(labels[index], corruption.new_labels)
    assert np.array_equal(np.delete(labels, index), np.delete(clean, index))
    record = experiment.path / label_corruption.LABEL_CORRUPTION_FILE
    with pytest.raises(LabelCorruptionError, match=f"^{record}: 2 recorded original labels"):
        export.trained_labels(corrupted, (clean + 1) % CLASSES, CLASSES)  # another dataset
    with pytest.raises(ScoresError, match="do not fit the 2 classes"):
        export.trained_labels(experiment, clean, 2)
