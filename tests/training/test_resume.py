"""Resuming and sharing an experiment folder: what is trusted, kept, removed or skipped.

One tiny experiment (a 600-example slice of Fashion-MNIST, ratio 0.5, two runs, one
epoch) is trained once; the tests work on copies. "Another process" is a real process
holding the lock in question (`_hold_lock`), never a stand-in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from training_slice import small_config

from heldout.cli.progress import TrainingProgress
from heldout.errors import LockBusyError
from heldout.release import layout as release
from heldout.training import (
    RunSetAside,
    RunsSkipped,
    TemporariesRemoved,
    locks,
    train_experiment,
)


@contextlib.contextmanager
def _hold_locks(*locks_held: tuple[Path, bool]):
    """Another process holding flocks (path, shared) until the block ends; yields its PID."""
    code = textwrap.dedent(
        f"""
        import contextlib, sys
        from heldout._core.locks import FileLock
        with contextlib.ExitStack() as stack:
            for path, shared in {[(str(path), shared) for path, shared in locks_held]!r}:
                stack.enter_context(FileLock(path, "a test", shared=shared))
            print("locked", flush=True)
            sys.stdin.read()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def _stale(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir(parents=True)
    (path / "aux_arrays.npz").write_bytes(b"half written")
    return path


# ----------------------------------------------------------------------------- imports


def test_importing_training_and_label_noise_loads_no_tensorflow():
    code = (
        "import sys, heldout.training, heldout.release.label_corruption, heldout.cli.progress; "
        "print('tensorflow' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"


# ---------------------------------------------------------------------- temporaries


def test_a_live_trainers_temporary_is_not_removed(experiment, data_dir):
    in_flight = _stale(experiment / "0.5", ".1.inflight.tmp")
    with _hold_locks((experiment / locks.TRAINING_LOCK_FILE, True)):
        events = []
        result = train_experiment(small_config(data_dir), experiment, on_event=events.append)
    assert in_flight.is_dir() and (in_flight / "aux_arrays.npz").read_bytes() == b"half written"
    assert not result.written and len(result.skipped) == 2
    assert not any(isinstance(e, TemporariesRemoved) for e in events)


def test_alone_only_ratio_folders_are_cleaned(experiment, data_dir):
    stale = _stale(experiment / "0.5", ".1.crashed.tmp")
    figures = _stale(experiment / "figures", ".0.mine.tmp")
    not_a_ratio_of_ours = _stale(experiment / "0.50", ".0.mine.tmp")
    events = []
    train_experiment(small_config(data_dir), experiment, on_event=events.append)
    assert not stale.exists()
    assert figures.is_dir() and not_a_ratio_of_ours.is_dir()
    (removed,) = [e for e in events if isinstance(e, TemporariesRemoved)]
    assert removed.paths == (stale,)


# ------------------------------------------------------------------- invalid runs


def test_invalid_finished_looking_runs_are_set_aside_and_retrained(experiment, data_dir, capsys):
    (experiment / "0.5" / "0" / "aux_arrays.npz").write_bytes(b"")  # empty: a crash
    shutil.rmtree(experiment / "0.5" / "1" / "checkpoints")  # lacks its checkpoint
    events = []
    progress = TrainingProgress()

    def on_event(event):
        events.append(event)
        progress(event)

    with progress:
        result = train_experiment(small_config(data_dir), experiment, on_event=on_event)
    assert sorted(r.run_id for r in result.written) == [0, 1]
    aside = [e for e in events if isinstance(e, RunSetAside)]
    assert [(e.run_id, e.moved_to.name) for e in aside] == [
        (0, ".0.invalid-1"),
        (1, ".1.invalid-1"),
    ]
    assert "empty" in aside[0].reason and "checkpoint" in aside[1].reason
    # kept for the user, untouched, where the release reader does not look
    assert (experiment / "0.5" / ".0.invalid-1" / "aux_arrays.npz").read_bytes() == b""
    assert not (experiment / "0.5" / ".1.invalid-1" / "checkpoints").exists()
    reopened = release.open_experiment(experiment)
    assert [run.run_id for run in reopened.runs] == [0, 1]
    for run in reopened.runs:
        run.load_aux()
        assert run.has_checkpoint
    out = capsys.readouterr().out
    assert "moved it to" in out and ".0.invalid-1" in out


# --------------------------------------------------------------- another trainer


def test_a_run_claimed_by_another_process_is_skipped(experiment, data_dir):
    # A trainer holds the training lock (shared) and claims the runs it trains.
    claim = locks.claim_path(experiment / "0.5", 2)
    with _hold_locks((experiment / locks.TRAINING_LOCK_FILE, True), (claim, False)) as pid:
        events = []
        result = train_experiment(
            small_config(data_dir, runs_per_ratio=3), experiment, on_event=events.append
        )
    assert not result.written and result.busy == ((0.5, 2),)
    (skipped,) = [e for e in events if isinstance(e, RunsSkipped)]
    assert skipped.run_ids == (2,) and str(pid) in skipped.reason


def test_a_trainer_busy_too_long_is_named(experiment, data_dir, monkeypatch):
    monkeypatch.setattr(locks, "SHARE_WAIT_S", 0.2)
    with _hold_locks((experiment / locks.TRAINING_LOCK_FILE, False)) as pid:
        with pytest.raises(LockBusyError, match=f"process {pid}"):
            train_experiment(small_config(data_dir), experiment)


def test_resume_still_refuses_changed_defining_settings(experiment, data_dir):
    from heldout.errors import TrainingError

    before = sorted(os.listdir(experiment / "0.5"))
    with pytest.raises(TrainingError, match="seed: recorded 7, asked 8"):
        train_experiment(small_config(data_dir, seed=8), experiment)
    assert sorted(os.listdir(experiment / "0.5")) == before
