"""`heldout train` refuses non-finite and out-of-range numbers while parsing its flags.

absl's float flags take `nan` and `inf`; a NaN or infinite learning rate trains models of
NaNs, written as finished runs. Each bad value is one line and exit status 2, before any
data is read or folder created.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TRAIN_HELDOUT = Path(__file__).resolve().parents[2] / "tools" / "train_heldout.py"


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("--learning_rate=nan", "must be a finite number"),
        ("--learning_rate=inf", "must be a finite number"),
        ("--learning_rate=-0.1", "must be positive"),
        ("--learning_rate=0", "must be positive"),
        ("--weight_decay=inf", "must be a finite number"),
        ("--weight_decay=-1e-4", "must be at least 0"),
    ],
)
def test_non_finite_or_out_of_range_training_numbers_are_refused(tmp_path, flag, needle):
    output_dir = tmp_path / "exp"
    command = [sys.executable, str(TRAIN_HELDOUT), f"--output_dir={output_dir}", flag]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert flag.split("=")[0] in lines[0] and needle in lines[0], lines[0]
    assert not output_dir.exists()
