"""Training on a real 2-process Dask LocalCluster: bit-identical runs, a killed worker.

The reference is `train_heldout --scheduler=none` in a subprocess with the thread count
of a local worker (`heldout.cluster.worker_environment`), since bit-identity holds for
the same kind of machine and thread count.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from training_slice import write_fashion_slice

pytest.importorskip("distributed", reason="the fan-out needs Dask's distributed")

from heldout import cluster  # noqa: E402
from heldout.release import layout as release
from heldout.release import outputs_pack
from heldout.training import TrainingConfig, resume  # noqa: E402
from heldout.training import fanout as training_cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NUM_TRAIN, NUM_TEST = 600, 200
SETTINGS = dict(
    subset_ratios=(0.5,),
    runs_per_ratio=4,
    epochs=2,
    batch_size=100,
    models_per_step=2,  # 2 groups of 2 stacked MLPs: 2 tasks
    val_examples=100,
    seed=5,
    mlp_hidden_sizes=(32,),
)
FLAGS = [
    "--subset_ratios=0.5",
    "--runs_per_ratio=4",
    "--epochs=2",
    "--batch_size=100",
    "--models_per_step=2",
    "--val_examples=100",
    "--seed=5",
    "--mlp_spec=32",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return write_fashion_slice(tmp_path_factory.mktemp("slice"), NUM_TRAIN, NUM_TEST)


def _config(data_dir: str, **overrides) -> TrainingConfig:
    return TrainingConfig(data_dir=data_dir, **{**SETTINGS, **overrides})


def _train_cli(output_dir: Path, data_dir: str, *extra: str, env=None):
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train_heldout.py"),
            f"--output_dir={output_dir}",
            f"--data_dir={data_dir}",
            *FLAGS,
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> Path:
    """The experiment trained in one process, with one local worker's thread count."""
    out = tmp_path_factory.mktemp("single") / "exp"
    done = _train_cli(out, data_dir, "--scheduler=none", env=cluster.worker_environment(2))
    assert done.returncode == 0, done.stderr
    return out


def _run_values(run_dir: Path) -> dict[str, np.ndarray]:
    """Every array of a run: its aux arrays and every checkpoint variable."""
    import tensorflow as tf

    values = {}
    with np.load(run_dir / release.AUX_ARRAYS_FILE) as aux:
        values.update({f"aux/{key}": aux[key] for key in aux.files})
    (index,) = (run_dir / release.CHECKPOINTS_DIR).glob("ckpt-*.index")
    reader = tf.train.load_checkpoint(str(index.with_suffix("")))
    for name in reader.get_variable_to_shape_map():
        values[f"ckpt/{name}"] = np.asarray(reader.get_tensor(name))  # bytes: the object graph
    return values


def _run_dirs(experiment_dir: Path) -> list[Path]:
    """The run folders (`<ratio>/<run_id>`), relative; not the outputs pack's folders."""
    found = experiment_dir.glob("*/*")
    return sorted(p.relative_to(experiment_dir) for p in found if p.is_dir() and p.name.isdigit())


def _assert_same_runs(ours: Path, reference: Path) -> None:
    runs = _run_dirs(reference)
    assert len(runs) == SETTINGS["runs_per_ratio"] * len(SETTINGS["subset_ratios"])
    assert _run_dirs(ours) == runs
    for run in runs:
        mine, theirs = _run_values(ours / run), _run_values(reference / run)
        assert mine.keys() == theirs.keys()
        assert any(key.startswith("ckpt/") for key in mine)
        for key in theirs:
            assert mine[key].dtype == theirs[key].dtype, (run, key)
            assert np.array_equal(mine[key], theirs[key]), f"{run}: {key} differs"
    # Each trainer packed the outputs once every run was written: the same arrays.
    for name in (outputs_pack.MASKS_FILE, outputs_pack.RUN_IDS_FILE, "logit_margin_test.npy"):
        packed = [np.load(e / outputs_pack.PACK_DIR / "0.5" / name) for e in (ours, reference)]
        assert packed[0].shape[0] == len(runs) and np.array_equal(*packed), name


def _leftovers(experiment_dir: Path) -> list[Path]:
    return [p for p in experiment_dir.glob("*/.*") if p.name.endswith((".tmp", ".claim"))]


def test_cluster_runs_are_bit_identical_to_single_process(
    tmp_path, data_dir, reference, dask_cluster
):
    out = tmp_path / "exp"
    seen = []
    result = training_cluster.train_on_cluster(
        _config(data_dir), out, scheduler=dask_cluster.scheduler_address, on_event=seen.append
    )
    assert result.failed == () and result.tasks == 2 and len(result.written) == 4
    started = [e for e in seen if isinstance(e, training_cluster.ClusterStarted)]
    assert started and started[0].workers == 2 and started[0].resources is None
    _assert_same_runs(out, reference)
    assert _leftovers(out) == []

    again = training_cluster.train_on_cluster(
        _config(data_dir), out, scheduler=dask_cluster.scheduler_address
    )
    assert again.written == () and again.tasks == 0 and len(again.skipped) == 4


def test_worker_killed_mid_task_its_task_reruns_and_every_run_is_written(
    tmp_path, data_dir, reference, dask_cluster
):
    out = tmp_path / "exp"
    ratio_dir = out / release.ratio_dir_name(0.5)
    from distributed import Client

    with Client(dask_cluster.scheduler_address) as client:
        worker_pids = set(client.run(os.getpid).values())
    outcome = {}

    def train():
        try:
            outcome["result"] = training_cluster.train_on_cluster(
                _config(data_dir), out, scheduler=dask_cluster.scheduler_address
            )
        except BaseException as error:  # noqa: BLE001 - re-raised by the test below
            outcome["error"] = error

    thread = threading.Thread(target=train)
    thread.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        # A worker holds a run's claim (its PID in the file) from claim to written run.
        for claim in ratio_dir.glob(".*.claim") if ratio_dir.is_dir() else ():
            try:
                pid = int(claim.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid in worker_pids:
                os.kill(pid, signal.SIGKILL)
                killed = (pid, claim.name)
                break
        time.sleep(0.005)
    thread.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    assert killed is not None, "no worker was seen training"
    result = outcome["result"]
    assert result.failed == ()
    assert sorted(run.run_id for run in result.written) == [0, 1, 2, 3]
    config = _config(data_dir)
    states = resume.scan_runs(out, config, NUM_TRAIN, NUM_TEST)
    assert states.pending == () and len(states.finished) == 4
    assert _leftovers(out) == []  # the dead worker's temporary and claim are gone
    _assert_same_runs(out, reference)  # the rerun trained the same bits


def test_a_run_that_fails_for_its_own_reason_is_reported_by_path(tmp_path, data_dir):
    """The task never raises for a run: it names the runs it could not write."""
    config = _config(str(tmp_path / "no-such-data"))
    record = training_cluster.train_group_task(config, str(tmp_path / "exp"), 0.5, (2, 3))
    assert record.written == ()
    assert [f.run_id for f in record.failed] == [2, 3]
    assert record.failed[0].path == str(tmp_path / "exp" / "0.5" / "2")
    assert "no-such-data" in record.failed[0].error


def test_cli_prints_the_dashboard_and_skips_finished_runs(
    tmp_path, data_dir, reference, dask_cluster
):
    out = tmp_path / "exp"
    done = _train_cli(out, data_dir, f"--scheduler={dask_cluster.scheduler_address}")
    assert done.returncode == 0, done.stderr
    assert f"Dask scheduler {dask_cluster.scheduler_address}: 2 workers, 2 tasks" in done.stdout
    assert "dashboard:" in done.stdout
    assert "wrote 4 runs in 2 tasks" in done.stdout
    assert f"outputs pack of ratio 0.5: packed 4 runs into {out}/outputs_pack/0.5" in done.stdout
    _assert_same_runs(out, reference)
    again = _train_cli(out, data_dir, f"--scheduler={dask_cluster.scheduler_address}")
    assert again.returncode == 0, again.stderr
    assert "wrote 0 runs in 0 tasks, skipped 4 already written" in again.stdout
    assert "outputs pack of ratio 0.5: up to date (4 runs" in again.stdout


def test_bad_scheduler_is_a_usage_error(tmp_path, data_dir):
    done = _train_cli(tmp_path / "exp", data_dir, "--scheduler=bogus")
    assert done.returncode == 2
    assert "scheduler must be 'local', 'none' or a scheduler address" in done.stderr
