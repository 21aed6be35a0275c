"""The scale and cost benches of issue 26 in their --quick mode, run as a user runs them: each
must finish, print the CPU line and its ratios, and get the same numbers as a direct formula."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *flags: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("CPU: "), done.stdout
    return done.stdout


def test_attribution_bench_quick():
    out = _run("bench_attribution.py", "--quick")
    assert re.search(r"ratio ours / GEMM: \d+\.\d\d", out), out
    assert "max |ours - baseline| 0.00e+00" in out  # the blocks compute the same product
    assert re.search(r"peak RSS \d+\.\d\d GB", out), out
    assert "random on top-k" not in out  # a small top-k attribution keeps dense baselines


def test_outputs_bench_quick():
    out = _run("bench_outputs.py", "--quick")
    ratios = re.findall(r"ratio (\d+\.\d\d)", out)
    assert len(ratios) == 2, out


@pytest.mark.slow
def test_eval_outputs_cost_quick():
    out = _run("bench_eval.py", "--outputs_cost", "--quick", "--rounds=1")
    assert re.search(r"--outputs=margins \d+\.\d\d", out), out
    assert "goal <= 5 %" in out
