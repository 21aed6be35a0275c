"""The training commands as a user runs them: two at once on one folder, modes, errors.

Two `tools/train_heldout.py` processes, started together on one `--output_dir` with
different subset ratios, under `umask 022`, with a relative `--data_dir`: both must
finish, the experiment must validate and list both ratios, everything written must be
readable by group and others, and the recorded data_dir must work from elsewhere.
Kept tiny (a 600-example slice of Fashion-MNIST, one epoch, two runs per ratio).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from training_slice import write_fashion_slice

from heldout.datasets import relabeled
from heldout.release import layout as release

REPO = Path(__file__).resolve().parents[2]
TRAIN_HELDOUT = REPO / "tools" / "train_heldout.py"
RUN_DEFAULT = REPO / "tools" / "run_default.py"
NUM_TRAIN, NUM_TEST = 600, 200
RATIOS = ("0.25", "0.5")


def _umask_022() -> None:
    os.umask(0o022)


def _train_command(output_dir: str, data_dir: str, ratio: str) -> list[str]:
    return [
        sys.executable,
        str(TRAIN_HELDOUT),
        f"--output_dir={output_dir}",
        f"--data_dir={data_dir}",
        f"--subset_ratios={ratio}",
        "--runs_per_ratio=2",
        "--epochs=1",
        "--batch_size=100",
        "--val_examples=100",
        "--seed=5",
    ]


@pytest.fixture(scope="module")
def two_trainers(tmp_path_factory):
    """Runs the two commands at once from folder `work` (relative paths); returns their results."""
    work = tmp_path_factory.mktemp("work")
    write_fashion_slice(work / "slice", NUM_TRAIN, NUM_TEST)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    processes = [
        subprocess.Popen(
            _train_command("exp", "slice", ratio),
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_umask_022,
        )
        for ratio in RATIOS
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    return (
        work,
        work / "exp",
        [(p.returncode, *out) for p, out in zip(processes, outputs, strict=True)],
    )


def test_two_trainers_on_one_folder_both_finish(two_trainers):
    _, experiment_dir, results = two_trainers
    for returncode, stdout, stderr in results:
        assert returncode == 0, stdout + stderr
        assert "wrote 2 runs" in stdout, stdout
    experiment = release.open_experiment(experiment_dir)
    assert experiment.subset_ratios == (0.25, 0.5)
    assert [(r.subset_ratio, r.run_id) for r in experiment.runs] == [
        (0.25, 0),
        (0.25, 1),
        (0.5, 0),
        (0.5, 1),
    ]
    for run in experiment.runs:
        aux = run.load_aux()  # validates
        assert (aux.num_train, aux.num_test) == (NUM_TRAIN, NUM_TEST)
        assert run.has_checkpoint
    recorded = json.loads((experiment_dir / release.EXPERIMENT_META_FILE).read_text())
    assert recorded["extra"]["subset_ratios"] == [0.25, 0.5]  # neither process lost the other's
    assert (recorded["num_train"], recorded["num_test"]) == (NUM_TRAIN, NUM_TEST)
    leftovers = [p.name for p in experiment_dir.rglob(".*") if p.name.endswith((".tmp", ".claim"))]
    assert not leftovers


def test_everything_written_is_group_and_other_readable(two_trainers):
    _, experiment_dir, _ = two_trainers
    paths = [experiment_dir, *experiment_dir.rglob("*")]
    assert len(paths) > 20
    private = []
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o755 if path.is_dir() else 0o644
        if mode & wanted != wanted or mode & 0o022:
            private.append(f"{path.relative_to(experiment_dir)}: {oct(mode)}")
    assert not private, private


def test_recorded_data_dir_is_absolute_and_works_elsewhere(two_trainers, tmp_path, monkeypatch):
    work, experiment_dir, _ = two_trainers
    experiment = release.open_experiment(experiment_dir)
    recorded = experiment.meta.extra["data_dir"]
    assert Path(recorded).is_absolute() and Path(recorded) == work / "slice"
    monkeypatch.chdir(tmp_path)  # a later tool, run from another folder
    source = relabeled.experiment_source(release.open_experiment(experiment_dir))
    assert source.load_arrays("train").labels.size == NUM_TRAIN


def _one_line_error(completed: subprocess.CompletedProcess, status: int, *needles: str) -> None:
    assert completed.returncode == status, completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_train_heldout_prints_one_line_on_expected_errors(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / release.EXPERIMENT_META_FILE).write_text('{"name": "foreign", "arch": "mlp"}')
    slice_dir = tmp_path / "slice"  # never read: both errors come first
    slice_dir.mkdir()
    (slice_dir / "train-images-idx3-ubyte.gz").write_bytes(b"")
    cases = [
        (["--subset_ratios=0.5,abc"], "--subset_ratios"),
        (["--subset_ratios=1.5"], "subset ratios must lie in (0, 1]"),
        ([f"--output_dir={foreign}"], "not written by this trainer"),
    ]
    for extra, needle in cases:
        command = _train_command(str(tmp_path / "exp"), str(slice_dir), "0.5") + extra
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
        _one_line_error(completed, 2, "train_heldout: error:", needle)


def test_run_default_prints_one_line_on_expected_errors(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / release.EXPERIMENT_META_FILE).write_text("[1, 2]")
    command = [sys.executable, str(RUN_DEFAULT), f"--experiment_dir={foreign}"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    _one_line_error(completed, 1, "run_default: error:", str(foreign))
