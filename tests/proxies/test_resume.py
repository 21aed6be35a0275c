"""A killed `compute_proxies` run resumes from its stored seed parts, bit-identically.

Real processes on a real slice of Fashion-MNIST: one run goes through uninterrupted;
another is killed with SIGKILL once its first seed's part is on disk, refused when rerun
with other options (the part is never mixed in), then rerun as it was: its output must
equal the uninterrupted one's, array for array, bit for bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tool_runs import REPO, run_script
from training_slice import write_fashion_slice

from heldout._core.npz import load_npz

NUM_TRAIN, NUM_SEEDS = 1000, 3
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _args(data_dir: str, output: Path, source: str, epochs: int = 12) -> list[str]:
    return [
        f"--data_dir={data_dir}",
        f"--num_train={NUM_TRAIN}",
        f"--epochs={epochs}",
        "--batch_size=50",
        "--seed=3",
        f"--num_seeds={NUM_SEEDS}",
        "--proxies=learning_speed,confidence,kde_hidden",
        "--kde_hidden_every=4",
        f"--proxy_source={source}",
        f"--output={output}",
    ]


def _killed_after_first_part(args: list[str], parts: Path) -> None:
    """Starts the command and SIGKILLs it as soon as seed 0's part exists."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "compute_proxies.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while not (parts / "seed-0.npz").exists():
            assert process.poll() is None, "finished (or failed) before seed 0's part appeared"
            assert time.monotonic() < deadline, "seed 0's part never appeared"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("source", ["training_passes", "inference"])
def test_a_killed_run_resumes_with_identical_proxies(tmp_path, source):
    data_dir = write_fashion_slice(tmp_path / "slice", NUM_TRAIN, 100)
    whole, resumed = tmp_path / "whole.npz", tmp_path / "resumed.npz"
    done = run_script("tools/compute_proxies.py", *_args(data_dir, whole, source), env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "whole.npz.parts").exists()  # removed once the output is written

    parts = tmp_path / "resumed.npz.parts"
    _killed_after_first_part(_args(data_dir, resumed, source), parts)
    assert not resumed.exists()
    assert (parts / "seed-0.npz").is_file()
    assert not (parts / f"seed-{NUM_SEEDS - 1}.npz").exists()  # killed mid-run
    kept = {p.name: p.read_bytes() for p in parts.glob("seed-*.npz")}

    # Other options (fewer epochs): the stored part is refused in one line, never mixed in.
    other = run_script(
        "tools/compute_proxies.py", *_args(data_dir, resumed, source, epochs=2), env=ENV
    )
    assert other.returncode == 2, other.stderr[-2000:]
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and str(parts / "seed-0.npz") in lines[0], other.stderr
    assert "another run" in lines[0] and "options" in lines[0]
    assert not resumed.exists()
    assert {p.name: p.read_bytes() for p in parts.glob("seed-*.npz")} == kept

    again = run_script("tools/compute_proxies.py", *_args(data_dir, resumed, source), env=ENV)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming seeds [0" in again.stderr
    assert not parts.exists()
    want, got = load_npz(whole), load_npz(resumed)
    assert sorted(want) == sorted(got)
    for key in want:
        assert want[key].dtype == got[key].dtype, key
        assert want[key].tobytes() == got[key].tobytes(), key
    assert "kde_hidden_pm_label" in want and "cbtl" in want
    assert np.isfinite(want["p_label_mean"]).all()


def test_parts_held_by_another_process_or_a_link_are_refused(tmp_path):
    """A second writer of the same parts, and a link planted at the parts' name."""
    from heldout._core.locks import FileLock

    data_dir = write_fashion_slice(tmp_path / "slice", 200, 50)
    output = tmp_path / "out.npz"
    parts = tmp_path / "out.npz.parts"
    with FileLock(parts / "parts.lock", "a test holding the parts"):
        done = run_script(
            "tools/compute_proxies.py", *_args(data_dir, output, "training_passes"), env=ENV
        )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(parts / "parts.lock") in lines[0], done.stderr
    assert str(os.getpid()) in lines[0]
    assert not output.exists()
    (parts / "parts.lock").unlink()
    parts.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    parts.symlink_to(elsewhere)
    done = run_script(
        "tools/compute_proxies.py", *_args(data_dir, output, "training_passes"), env=ENV
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(parts) in lines[0], done.stderr
    assert list(elsewhere.iterdir()) == [] and not output.exists()
