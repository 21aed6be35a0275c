"""`heldout train` on a diverging recipe and on a full disk: one line each, never a traceback.

Each test runs the command in its own process on a 600-example slice of Fashion-MNIST:
a learning rate of 1e20 makes the loss NaN in the first epoch; a file-size limit
(`RLIMIT_FSIZE`, with SIGXFSZ ignored, as a full disk answers EFBIG/ENOSPC) makes the
checkpoint write fail.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from training_slice import write_fashion_slice

from heldout.errors import ReleaseLayoutError
from heldout.release import layout as release

TRAIN_HELDOUT = Path(__file__).resolve().parents[2] / "tools" / "train_heldout.py"
FILE_SIZE_LIMIT = 1 << 20  # the MLP's checkpoint (2 MB) does not fit; the record does


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return write_fashion_slice(tmp_path_factory.mktemp("slice"), 600, 200)


def _train(output_dir: Path, data_dir: str, *extra: str, preexec_fn=None):
    command = [
        sys.executable,
        str(TRAIN_HELDOUT),
        f"--output_dir={output_dir}",
        f"--data_dir={data_dir}",
        "--subset_ratios=0.5",
        "--runs_per_ratio=1",
        "--epochs=1",
        "--batch_size=100",
        "--val_examples=100",
        *extra,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env, preexec_fn=preexec_fn
    )


def _error_lines(completed: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in completed.stderr, completed.stderr
    return [line for line in completed.stderr.splitlines() if "train_heldout: error:" in line]


def test_a_run_whose_loss_becomes_nan_is_set_aside_not_finished(tmp_path, data_dir):
    output_dir = tmp_path / "exp"
    completed = _train(output_dir, data_dir, "--learning_rate=1e20")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    (line,) = _error_lines(completed)
    kept = output_dir / "0.5" / ".0.diverged-1"
    assert "run 0.5/0: loss became nan at epoch 1" in line and str(kept) in line, line
    assert (kept / "checkpoints" / "ckpt-1.index").is_file()  # kept for inspection
    assert not (output_dir / "0.5" / "0").exists()  # never a finished run
    with pytest.raises(ReleaseLayoutError, match="no runs found"):
        release.open_experiment(output_dir)


def _full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_a_full_disk_while_writing_a_run_is_one_line_naming_the_run(tmp_path, data_dir):
    output_dir = tmp_path / "exp"
    completed = _train(output_dir, data_dir, preexec_fn=_full_disk)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    (line,) = _error_lines(completed)
    assert f"{output_dir / '0.5' / '0'}: could not be written (File too large)" in line, line
    assert completed.stderr.strip().splitlines()[-1] == line  # nothing after it either
    leftovers = [p.name for p in output_dir.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers and not (output_dir / "0.5" / "0").exists()
