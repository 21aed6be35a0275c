"""read_outputs: many runs' masks and margins of one ratio, checked file by file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from heldout.errors import OutputsError
from heldout.release import layout as release
from heldout.release.aux_arrays import aux_from_predictions
from heldout.release.outputs import OUTPUTS_FILE, margins_from_logits, save_run_outputs
from heldout.release.outputs_reading import read_outputs

N_TRAIN, N_TEST, CLASSES = 50, 20, 4


def _experiment(root, runs=4, ratio=0.5, seed=0):
    """Runs with outputs beside their aux arrays; returns (folder, {run_id: (mask, phi_test,
    hinge_train)})."""
    rng = np.random.default_rng(seed)
    labels = {"train": rng.integers(0, CLASSES, N_TRAIN), "test": rng.integers(0, CLASSES, N_TEST)}
    expected = {}
    for run_id in range(runs):
        logits = {s: rng.normal(size=(labels[s].size, CLASSES)) * 4 for s in labels}
        correct = {s: logits[s].argmax(axis=1) == labels[s] for s in labels}
        mask = rng.random(N_TRAIN) < ratio
        aux = aux_from_predictions(mask, correct["train"], correct["test"], rng=rng)
        run = release.write_run(root, ratio, run_id, aux)
        save_run_outputs(run.path, ratio, run_id, aux, logits, labels)
        phi_test = margins_from_logits(logits["test"], labels["test"])[0]
        hinge_train = margins_from_logits(logits["train"], labels["train"])[1]
        expected[run_id] = (mask, phi_test, hinge_train)
    return root, expected


def test_reads_masks_and_margins_in_index_order(tmp_path):
    root, expected = _experiment(tmp_path / "exp")
    ids, masks, margins = read_outputs(root, 0.5)
    assert ids.tolist() == [0, 1, 2, 3]
    assert masks.dtype == bool and masks.shape == (4, N_TRAIN)
    assert margins.dtype == np.float32 and margins.shape == (4, N_TEST)
    for r, run_id in enumerate(ids):
        np.testing.assert_array_equal(masks[r], expected[run_id][0])
        np.testing.assert_array_equal(margins[r], expected[run_id][1])
    ids, _, hinge = read_outputs(root, 0.5, kind="hinge_margin", split="train", run_ids=[2, 0])
    assert ids.tolist() == [2, 0]
    np.testing.assert_array_equal(hinge[0], expected[2][2])


def test_reads_from_an_outputs_dir_in_the_release_layout(tmp_path):
    root, expected = _experiment(tmp_path / "exp")
    outs = tmp_path / "outs"
    for run in release.open_experiment(root).runs:
        target = outs / run.ratio_dir_name / str(run.run_id)
        target.mkdir(parents=True)
        shutil.move(run.path / OUTPUTS_FILE, target / OUTPUTS_FILE)
    with pytest.raises(OutputsError, match=rf"^{root}/0.5/0/{OUTPUTS_FILE}: no outputs"):
        read_outputs(root, 0.5)
    ids, _, margins = read_outputs(root, 0.5, outputs_dir=outs)
    np.testing.assert_array_equal(margins[3], expected[3][1])
    (outs / "0.5" / "1" / OUTPUTS_FILE).unlink()
    ids, _, _ = read_outputs(root, 0.5, outputs_dir=outs, skip_missing=True)
    assert ids.tolist() == [0, 2, 3]


def test_refuses_another_runs_outputs_naming_the_file(tmp_path):
    root, _ = _experiment(tmp_path / "exp")
    planted = root / "0.5" / "1" / OUTPUTS_FILE
    shutil.copyfile(root / "0.5" / "2" / OUTPUTS_FILE, planted)
    with pytest.raises(OutputsError, match=rf"^{planted}: "):
        read_outputs(root, 0.5)


def test_refuses_a_ratio_without_runs(tmp_path):
    root, _ = _experiment(tmp_path / "exp")
    with pytest.raises(Exception, match="no run at subset ratio 0.7"):
        read_outputs(root, 0.7)
