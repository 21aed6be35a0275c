"""A bad run read by a Dask worker is the command's one line, nothing more: Dask's
worker used to log "Compute Failed", the task and a traceback before it."""

from __future__ import annotations

import pytest
from tool_runs import run_tool


def test_a_bad_run_on_a_local_cluster_is_one_line(scores_experiment_copy, tmp_path):
    pytest.importorskip("distributed", reason="the fan-out needs Dask's distributed")
    bad = scores_experiment_copy.path / "0.7" / "3" / "aux_arrays.npz"
    bad.write_bytes(b"garbage")
    output = tmp_path / "s.npz"
    done = run_tool(
        "compute_scores",
        f"--experiment_dir={scores_experiment_copy.path}",
        f"--output={output}",
        "--scores=cscore,influence",
        "--scheduler=local",
        "--dask_workers=2",
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Compute Failed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert " - ERROR - " not in done.stderr, done.stderr  # a Dask logger's error line
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"compute_scores: error: {bad}: not a numpy .npz or .npy file (it starts with b'garbag')"
    ], done.stderr
    assert not output.exists()
