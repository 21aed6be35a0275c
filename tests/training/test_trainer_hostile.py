"""A trainer that trusts only what it can check: truncated runs, dead companions, NaN.

One tiny experiment (a 600-example slice of Fashion-MNIST, ratio 0.5, two runs, one
epoch) is trained once; the tests work on copies. Other processes are real processes,
killed for real; files are truncated for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from training_slice import small_config

from heldout.release import layout as release
from heldout.training import RunSetAside, RunsSkipped, fanout, locks, train_experiment
from heldout.training.experiment import prepared_experiment
from heldout.training.run_record import RUN_RECORD_FILE, run_record_problem

# ------------------------------------------------------------- truncated checkpoints


def test_a_truncated_checkpoint_shard_is_set_aside_and_retrained(experiment, data_dir):
    (shard,) = (experiment / "0.5" / "1" / "checkpoints").glob("ckpt-1.data-*")
    full_size = shard.stat().st_size
    os.truncate(shard, 100)
    events = []
    result = train_experiment(small_config(data_dir), experiment, on_event=events.append)
    assert [run.run_id for run in result.written] == [1]
    assert result.skipped == ((0.5, 0),)
    (aside,) = [e for e in events if isinstance(e, RunSetAside)]
    assert aside.run_id == 1 and shard.name in aside.reason and "truncated" in aside.reason
    kept = experiment / "0.5" / ".1.invalid-1" / "checkpoints" / shard.name
    assert kept.stat().st_size == 100  # set aside as it was, never deleted
    assert shard.stat().st_size == full_size  # the retrained run's shard is whole again


def test_a_run_without_size_record_counts_only_if_its_checkpoint_reads_whole(experiment, data_dir):
    """Runs written before the record (or whose record was removed) are read once."""
    for run_id in (0, 1):
        (experiment / "0.5" / str(run_id) / RUN_RECORD_FILE).unlink()
    (shard,) = (experiment / "0.5" / "1" / "checkpoints").glob("ckpt-1.data-*")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only reading the tensors shows it
    shard.write_bytes(bytes(data))
    events = []
    result = train_experiment(small_config(data_dir), experiment, on_event=events.append)
    assert result.skipped == ((0.5, 0),)  # read back whole: recorded, not retrained
    assert (experiment / "0.5" / "0" / RUN_RECORD_FILE).is_file()
    assert [run.run_id for run in result.written] == [1]
    (aside,) = [e for e in events if isinstance(e, RunSetAside)]
    assert aside.run_id == 1 and "no size record" in aside.reason


# ---------------------------------------------------------------- a companion killed


def test_a_run_left_by_a_companion_killed_9_is_taken_over(experiment, data_dir):
    """The companion claims run 2, then dies by SIGKILL while this trainer works."""
    ratio_dir = experiment / "0.5"
    code = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from heldout._core.locks import FileLock
        from heldout.training import locks
        lock = FileLock({str(experiment / locks.TRAINING_LOCK_FILE)!r}, "a test", shared=True)
        lock.acquire()
        claim = locks.claim_run(Path({str(ratio_dir)!r}), 2)
        os.mkdir({str(ratio_dir / ".2.half-written.tmp")!r})  # its run, half written
        print("claimed", flush=True)
        sys.stdin.read()
        """
    )
    companion = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert companion.stdout.readline().strip() == "claimed"
        events = []

        def on_event(event):
            events.append(event)
            if isinstance(event, RunsSkipped) and companion.poll() is None:
                os.kill(companion.pid, signal.SIGKILL)  # after this trainer found it busy
                companion.wait(timeout=30)

        result = train_experiment(
            small_config(data_dir, runs_per_ratio=3), experiment, on_event=on_event
        )
    finally:
        if companion.poll() is None:
            companion.kill()
        companion.wait(timeout=30)
    assert companion.returncode == -signal.SIGKILL
    (skipped,) = [e for e in events if isinstance(e, RunsSkipped)]
    assert skipped.run_ids == (2,) and str(companion.pid) in skipped.reason
    assert [run.run_id for run in result.written] == [2] and result.busy == ()
    assert not (ratio_dir / ".2.half-written.tmp").exists()
    assert [run.run_id for run in release.open_experiment(experiment).runs] == [0, 1, 2]


def test_a_size_record_is_trusted_only_for_files_inside_its_run(experiment):
    run_dir = experiment / "0.5" / "0"
    assert run_record_problem(run_dir) is None
    record = run_dir / RUN_RECORD_FILE
    sizes = json.loads(record.read_text())["sizes"]
    assert "aux_arrays.npz" in sizes and any(".data-" in name for name in sizes)
    for hostile, needle in [
        ({**sizes, "../../1/aux_arrays.npz": 1}, "outside the run"),
        ({**sizes, "/etc/passwd": 1}, "outside the run"),
        ({**sizes, "aux_arrays.npz": True}, "not a size record"),
    ]:
        record.write_text(json.dumps({"format": 1, "sizes": hostile}))
        assert needle in run_record_problem(run_dir)
    record.unlink()
    record.symlink_to(experiment / "0.5" / "1" / RUN_RECORD_FILE)
    assert "not a size record" in run_record_problem(run_dir)


# ------------------------------------------------------------------ diverged runs


def test_a_diverged_run_is_a_failed_run_of_a_fanout_task(tmp_path, data_dir):
    """The task a Dask worker runs, called here: a NaN loss is a named failure, no traceback."""
    config = small_config(data_dir, runs_per_ratio=1, learning_rate=1e20)
    experiment = tmp_path / "exp"
    with prepared_experiment(config, experiment, lambda event: None):
        pass  # what the client does before it submits the tasks
    record = fanout.train_group_task(config, str(experiment), 0.5, (0,))
    (failed,) = record.failed
    assert failed.run_id == 0 and failed.traceback is None and not record.written
    assert "loss became nan at epoch 1" in failed.error and ".0.diverged-1" in failed.error
    assert not (experiment / "0.5" / "0").exists()
