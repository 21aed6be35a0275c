"""`heldout evaluate --outputs=heldout_probs` and `heldout export-pred-probs` as a user runs them.

Two experiments: three untrained MLPs on a tiny random `.npz` (the re-evaluation's own test
experiment), and a tiny real one trained on a slice of Fashion-MNIST with 10 % of its labels
corrupted and `--record_heldout_probs`, whose training records are the reference for the
held-out softmax that the re-evaluation writes (equal within float16 storage: see TOLERANCE).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from evaluation.test_fanout import _write_experiment
from training_slice import small_config, write_fashion_slice

from heldout.release import label_corruption
from heldout.release import layout as release
from heldout.scores import pred_probs as export
from heldout.scores.soft_cscore import HELDOUT_PROBS_FILE, out_of_sample_probs

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
# float16 stores a softmax value in [0.5, 1) to 2^-11, below to finer steps: the same logits
# up to float32 rounding (another batch size) round to at most one float16 step apart.
TOLERANCE = 2.0**-11
FILES = ["counts.npy", "labels.npy", "pred_probs.json", "pred_probs.npy"]


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def _evaluate(experiment: Path, work: Path, outs: Path, *extra: str):
    return _tool(
        "evaluate_runs",
        f"--experiment_dir={experiment}",
        f"--output_dir={work / 'checks'}",
        f"--outputs_dir={outs}",
        "--outputs=heldout_probs",
        "--scheduler=none",
        "--batch_size=16",
        *extra,
    )


def _export(experiment: Path, output_dir: Path, *extra: str):
    return _tool(
        "export_pred_probs",
        f"--experiment_dir={experiment}",
        f"--output_dir={output_dir}",
        "--noprogress",
        *extra,
    )


def _one_line_naming(done: subprocess.CompletedProcess, name) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(name) in lines[0], done.stderr


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(experiment, outputs folder): the untrained runs re-evaluated with heldout_probs."""
    root = tmp_path_factory.mktemp("untrained")
    experiment = _write_experiment(root, "tiny-mlp", seed=2)
    outs = root / "outs"
    done = _evaluate(experiment, root, outs, "--split=train")  # all that heldout_probs need
    assert done.returncode == 0, done.stdout + done.stderr
    assert "120 out of 120 predictions match over 3 runs" in done.stdout  # the train split only
    assert f"heldout export-pred-probs --experiment_dir={experiment}" in done.stdout
    return experiment, outs


def test_evaluate_writes_each_runs_heldout_softmax_and_resumes(evaluated, tmp_path):
    experiment, outs = evaluated
    files = sorted(outs.rglob(HELDOUT_PROBS_FILE))
    assert [p.relative_to(outs).parts[:2] for p in files] == [("0.5", str(i)) for i in range(3)]
    assert not list(outs.rglob("outputs.npz"))  # only what was asked for
    for run in release.open_experiment(experiment).runs:
        with np.load(outs / "0.5" / str(run.run_id) / HELDOUT_PROBS_FILE) as f:
            assert f["probs"].dtype == np.float16 and f["probs"].shape == (20, 10)
            np.testing.assert_array_equal(f["index"], np.flatnonzero(~run.load_aux().train_mask()))
            np.testing.assert_allclose(f["probs"].astype(float).sum(axis=1), 1, atol=1e-2)
    stamps = [p.stat().st_mtime_ns for p in files]
    again = _evaluate(experiment, outs.parent, outs, "--split=train")
    assert again.returncode == 0 and "0 evaluated now" in again.stdout, again.stdout
    assert [p.stat().st_mtime_ns for p in files] == stamps
    # Another run's file in run 0's place is not current: a rerun writes run 0's again.
    own = files[0].read_bytes()
    shutil.copyfile(files[1], files[0])
    third = _evaluate(experiment, outs.parent, outs, "--split=train")
    assert third.returncode == 0 and "1 evaluated now" in third.stdout, third.stdout
    assert files[0].read_bytes() == own


def test_export_from_an_outputs_folder_is_the_mean_over_held_out_runs(evaluated, tmp_path):
    experiment, outs = evaluated
    done = _export(experiment, tmp_path / "out", f"--outputs_dir={outs}")
    assert done.returncode == 0, done.stderr
    assert "pred_probs of 40 training examples x 10 classes from 3 runs" in done.stdout
    total, count = np.zeros((40, 10)), np.zeros(40, int)
    for path in outs.rglob(HELDOUT_PROBS_FILE):
        with np.load(path) as f:
            total[f["index"]] += f["probs"]
            count[f["index"]] += 1
    pred = np.load(tmp_path / "out" / "pred_probs.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "counts.npy"), count)
    keep = count > 0
    want = total[keep] / total[keep].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pred[keep], want, rtol=1e-6)
    assert np.isnan(pred[~keep]).all()
    assert f"{(~keep).sum()} examples never held out: NaN rows" in done.stdout
    data = np.load(experiment.parent / "tiny.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "labels.npy"), data["train_labels"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == FILES


def test_bad_inputs_are_one_line_naming_the_file_and_nothing_is_written(evaluated, tmp_path):
    experiment, outs = evaluated
    out = tmp_path / "out"
    # An example never held out, when every row must be finite.
    _one_line_naming(_export(experiment, out, f"--outputs_dir={outs}", "--min_count=1"), outs)
    # Another run's file in place of run 0's (outputs that do not match the aux arrays).
    copy = tmp_path / "outs"
    shutil.copytree(outs, copy)
    foreign = copy / "0.5" / "0" / HELDOUT_PROBS_FILE
    shutil.copyfile(copy / "0.5" / "1" / HELDOUT_PROBS_FILE, foreign)
    _one_line_naming(_export(experiment, out, f"--outputs_dir={copy}"), foreign)
    # Runs without files (the experiment was neither trained with them nor given --outputs_dir).
    _one_line_naming(_export(experiment, out), experiment / "0.5" / "0" / HELDOUT_PROBS_FILE)
    # A label-corruption record whose original labels are not the dataset's.
    mislabeled = tmp_path / "exp"
    shutil.copytree(experiment, mislabeled)
    labels = np.load(experiment.parent / "tiny.npz")["train_labels"]
    record = mislabeled / label_corruption.LABEL_CORRUPTION_FILE
    index = np.array([0, 5])
    wrong = (labels[index] + 1) % 10
    label_corruption.save_label_corruption(
        record, label_corruption.LabelCorruption(index, wrong, (wrong + 1) % 10)
    )
    meta = release.read_experiment_meta(mislabeled)
    meta.extra[label_corruption.META_KEY] = record.name
    release.write_experiment_meta(mislabeled, meta)
    _one_line_naming(_export(mislabeled, out, f"--outputs_dir={outs}"), record)
    # Output over the inputs.
    inside = experiment / "0.5" / "export"
    _one_line_naming(_export(experiment, inside, f"--outputs_dir={outs}"), inside)
    assert not out.exists() and not inside.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Fashion-MNIST experiment with corrupted labels and --record_heldout_probs,
    then re-evaluated with --outputs=heldout_probs."""
    from heldout import training

    work = tmp_path_factory.mktemp("trained")
    data_dir = write_fashion_slice(work / "slice", 400, 100)
    experiment = work / "exp"
    config = small_config(
        data_dir,
        runs_per_ratio=4,
        batch_size=50,
        epochs=2,
        label_corrupt_prob=0.1,
        record_heldout_probs=True,
    )
    training.train_experiment(config, experiment)
    outs = work / "outs"
    done = _evaluate(experiment, work, outs)
    assert done.returncode == 0, done.stdout + done.stderr
    return experiment, outs


def test_evaluate_gives_the_training_records_held_out_softmax(trained, tmp_path):
    experiment, outs = trained
    opened = release.open_experiment(experiment)
    runs = export.select_runs(opened)
    recorded = out_of_sample_probs([run.path for run in runs], 400)
    evaluated = export.accumulate_heldout_probs(opened, runs, outs)
    np.testing.assert_array_equal(evaluated.count, recorded.count)
    keep = recorded.count > 0
    assert keep.sum() > 350
    difference = np.abs(evaluated.probs[keep] - recorded.probs[keep]).max()
    assert difference <= TOLERANCE, difference
    for source, extra in (("own", ()), ("outs", (f"--outputs_dir={outs}",))):
        done = _export(experiment, tmp_path / source, *extra)
        assert done.returncode == 0, done.stderr
        assert "(after_corruption labels)" in done.stdout
    own, evaluated_export = (export.load_pred_probs(tmp_path / s) for s in ("own", "outs"))
    np.testing.assert_array_equal(own.pred_probs, recorded.pred_probs())
    np.testing.assert_array_equal(own.labels, evaluated_export.labels)
    corruption = label_corruption.experiment_label_corruption(experiment)
    np.testing.assert_array_equal(own.labels[corruption.indices], corruption.new_labels)
    assert np.abs(own.pred_probs[keep] - evaluated_export.pred_probs[keep]).max() <= TOLERANCE


def test_cleanlab_auroc_from_the_export_equals_the_one_from_heldout_probs(trained, tmp_path):
    cleanlab_rank = pytest.importorskip("cleanlab.rank")
    from sklearn.metrics import roc_auc_score

    experiment, _ = trained
    done = _export(experiment, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    exported = export.load_pred_probs(tmp_path / "out")
    opened = release.open_experiment(experiment)
    corrupted = label_corruption.experiment_label_corruption(opened).mask(400)
    # As bench/label_noise.py does: the runs' records, rows normalized in float64.
    oos = out_of_sample_probs([run.path for run in opened.runs], 400)
    keep = oos.count > 0
    probs = oos.probs[keep] / oos.probs[keep].sum(axis=1, keepdims=True)
    quality = cleanlab_rank.get_label_quality_scores(exported.labels[keep], probs)
    bench = roc_auc_score(corrupted[keep], 1 - quality)
    keep_export = exported.held_out
    quality = cleanlab_rank.get_label_quality_scores(
        exported.labels[keep_export], exported.pred_probs[keep_export]
    )
    from_export = roc_auc_score(corrupted[keep_export], 1 - quality)
    assert abs(from_export - bench) <= 1e-6, (from_export, bench)
    assert from_export > 0.6  # corrupted labels are found at all
