"""`heldout export-ground-truth` (tools/export_ground_truth.py) end to end: what it writes
scores, read the way dattri reads it, exactly as `heldout attribution` scores the same runs;
bad input is one line naming the file, with nothing written."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from margin_experiment import planted_tau, write_margin_experiment
from scipy.stats import spearmanr
from tool_runs import REPO, run_script

TAU = planted_tau()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_gt") / "exp"
    return write_margin_experiment(root, TAU, runs=40, extra_ratio=0.3)


def export(*args):
    return run_script("tools/export_ground_truth.py", "--noprogress", *args, timeout=120)


def test_dattri_files_score_as_heldout_attribution_on_the_same_runs(experiment, tmp_path):
    rng = np.random.default_rng(5)
    tau = TAU + rng.uniform(0, 0.05, TAU.shape).astype(np.float32)  # no tied predictions
    np.save(tmp_path / "tau.npy", tau)
    done = export(
        f"--experiment_dir={experiment}",
        f"--output_dir={tmp_path / 'gt'}",
        "--runs=0.5",
        "--seed=3",
        "--format=trak,dattri",
    )
    assert done.returncode == 0, done.stderr
    assert "exported 20 runs of ratio 0.5 x 12 test examples (margin" in done.stdout
    scored = run_script(
        "tools/attribution.py",
        f"--experiment_dir={experiment}",
        f"--attribution={tmp_path / 'tau.npy'}",
        "--output_kind=margin",
        "--evaluation_runs=0.5",
        "--seed=3",
        f"--output={tmp_path / 'lds.npz'}",
        timeout=120,
    )
    assert scored.returncode == 0, scored.stderr
    with np.load(tmp_path / "lds.npz") as f:
        evaluation_ids, ours = f["evaluation_run_ids"].tolist(), f["lds_per_test"]
    sidecar = json.loads((tmp_path / "gt" / "ground_truth.json").read_text())
    assert sidecar["run_ids"] == evaluation_ids  # --runs=0.5 draws attribution's evaluation runs
    # dattri's lds: score [n_train, n_test]; (target values [subsets, n_test], indices)
    target_values = np.load(tmp_path / "gt" / "target_values_lds.npy")
    indices = np.load(tmp_path / "gt" / "indices_lds.npy")
    score = tau.T
    sums = np.stack([score.T[:, row[row < score.shape[0]]].sum(axis=1) for row in indices])
    theirs = [spearmanr(sums[:, t], target_values[:, t]).correlation for t in range(12)]
    np.testing.assert_allclose(theirs, ours, atol=1e-9)
    # the docs' five lines for a TRAK user print the same LDS
    docs = (REPO / "docs" / "attribution.md").read_text().split("## Exports", 1)[1]
    snippet = docs.split("```python\n", 1)[1].split("```", 1)[0]
    np.save(tmp_path / "trak_scores.npy", tau.T)
    printed = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert printed.returncode == 0, printed.stderr
    assert float(printed.stdout) == pytest.approx(np.nanmean(ours), abs=1e-9)
    # TRAK's pair holds the same runs
    masks, margins = (
        np.load(tmp_path / "gt" / "masks.npy"),
        np.load(tmp_path / "gt" / "margins.npy"),
    )
    np.testing.assert_array_equal(margins, target_values)
    assert masks.shape == (20, 40) and masks.sum(axis=1).tolist() == [
        int((row < 40).sum()) for row in indices
    ]


def _one_line_error(done, *needles):
    assert done.returncode != 0, done.stdout
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_a_ratio_without_outputs_is_one_line_naming_the_file(experiment, tmp_path):
    done = export(
        f"--experiment_dir={experiment}", f"--output_dir={tmp_path / 'gt'}", "--subset_ratio=0.3"
    )
    _one_line_error(done, f"{experiment}/0.3/0/outputs.npz: no outputs")
    assert list(tmp_path.iterdir()) == []


def test_outputs_of_another_checkpoint_are_one_line_naming_the_file(tmp_path):
    root = write_margin_experiment(tmp_path / "exp", TAU, runs=3)
    planted = root / "0.5" / "2" / "outputs.npz"
    shutil.copyfile(root / "0.5" / "0" / "outputs.npz", planted)
    done = export(f"--experiment_dir={root}", f"--output_dir={tmp_path / 'gt'}")
    _one_line_error(done, f"{planted}: from another checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_an_output_folder_in_the_experiment_or_the_outputs_is_refused(experiment, tmp_path):
    done = export(f"--experiment_dir={experiment}", f"--output_dir={experiment / 'gt'}")
    _one_line_error(done, f"{experiment / 'gt'} lies inside the input folder {experiment}")
    assert not (experiment / "gt").exists()
    (tmp_path / "outs").mkdir()
    done = export(
        f"--experiment_dir={experiment}",
        f"--outputs_dir={tmp_path / 'outs'}",
        f"--output_dir={tmp_path / 'outs'}",
    )
    _one_line_error(done, "lies inside the input folder", str(tmp_path / "outs"))
    assert list((tmp_path / "outs").iterdir()) == []


def test_a_bad_run_selection_is_a_usage_error(experiment, tmp_path):
    done = export(f"--experiment_dir={experiment}", f"--output_dir={tmp_path / 'gt'}", "--runs=3,x")
    _one_line_error(done, "--runs=3,x")
    assert done.returncode == 2 and not (tmp_path / "gt").exists()


def _file_size_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill, as a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_a_full_disk_names_the_output_and_leaves_nothing(experiment, tmp_path):
    output = tmp_path / "gt"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "export_ground_truth.py"),
            "--noprogress",
            f"--experiment_dir={experiment}",
            f"--output_dir={output}",
        ],
        capture_output=True,
        text=True,
        preexec_fn=_file_size_limit,
        timeout=120,
    )
    _one_line_error(done, f"could not write {output}: file too large (errno 27)")
    assert list(tmp_path.iterdir()) == []
