"""heldout.fanout and tools/evaluate_runs.py on a tiny experiment of three MLP runs.

The experiment (28x28x1 images, 40 train + 12 test, three untrained MLPs with their own
random weights and training subsets) is built once; its stored correctness comes from
heldout.evaluation, so a faithful re-evaluation matches N out of N. Each test works on
its own copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import tiny_release

from heldout import fanout
from heldout.aux_arrays import load_aux_arrays, save_aux_arrays

TOOL = Path(__file__).resolve().parents[1] / "tools" / "evaluate_runs.py"
RATIO = 0.5
NUM_TRAIN, NUM_TEST = 40, 12
PER_RUN = NUM_TRAIN + NUM_TEST  # train + removed + test examples cross-checked per run
OPTIONS = fanout.EvalOptions(batch_size=16)


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    import tensorflow as tf

    from heldout import models

    root = tmp_path_factory.mktemp("fanout")
    rng = np.random.default_rng(0)
    data_path, _ = tiny_release.random_npz_data(root, (28, 28, 1), NUM_TRAIN, NUM_TEST, rng)
    experiment_dir = root / "tiny-mlp"
    tiny_release.write_npz_meta(experiment_dir, "mlp", (28, 28, 1), data_path)
    for run_id in range(3):
        tf.random.set_seed(run_id)
        model = models.build_model("mlp", 10)
        models.ensure_variables(model)
        train_mask = np.zeros(NUM_TRAIN, bool)
        train_mask[rng.permutation(NUM_TRAIN)[: NUM_TRAIN // 2]] = True
        tiny_release.export_run(
            experiment_dir,
            RATIO,
            run_id,
            model,
            data_path,
            train_mask,
            epoch=2,
            global_step=10 + run_id,
            rng=rng,
            batch_size=16,
        )
    return experiment_dir


@pytest.fixture()
def experiment_dir(tiny_experiment, tmp_path):
    copy = tmp_path / tiny_experiment.name
    shutil.copytree(tiny_experiment, copy)
    return copy


def _run_tool(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, env=env, timeout=180
    )


def _truncate_checkpoint(run_dir: Path) -> None:
    data = next((run_dir / "checkpoints").glob("ckpt-2.data-*"))
    os.truncate(data, data.stat().st_size // 2)


def test_in_process_evaluates_every_run_and_records_it(experiment_dir, tmp_path):
    output = tmp_path / "checks"
    calls = []
    summary = fanout.evaluate_experiment(
        experiment_dir,
        output,
        options=OPTIONS,
        scheduler="none",
        progress=lambda record, reused: calls.append((record.run_id, reused)),
    )
    assert (summary.evaluated, summary.skipped, summary.errors) == (3, 0, 0)
    assert summary.matches == summary.total == 3 * PER_RUN and summary.all_match
    assert sorted(calls) == [(0, False), (1, False), (2, False)]
    assert sorted(p.name for p in (output / "0.5").iterdir()) == ["0.json", "1.json", "2.json"]

    raw = json.loads((output / "0.5" / "1.json").read_text())
    assert raw["status"] == "ok" and raw["error"] is None
    assert (raw["run_id"], raw["subset_ratio"], raw["epoch"], raw["global_step"]) == (1, 0.5, 2, 11)
    assert raw["run_path"] == str(experiment_dir / "0.5" / "1")
    assert raw["arch"] == "mlp" and raw["num_classes"] == 10
    totals = {name: (s["matches"], s["total"]) for name, s in raw["splits"].items()}
    assert totals == {"train": (20, 20), "removed": (20, 20), "test": (12, 12)}
    assert raw["splits"]["test"]["first_mismatched_indices"] == []
    assert 0.0 <= raw["splits"]["test"]["accuracy"] <= 1.0


def test_second_call_resumes_and_skips_recorded_runs(experiment_dir, tmp_path):
    output = tmp_path / "checks"
    first = fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    stamps = {p: p.stat().st_mtime_ns for p in output.rglob("*.json")}
    calls = []
    again = fanout.evaluate_experiment(
        experiment_dir,
        output,
        options=OPTIONS,
        scheduler="none",
        progress=lambda record, reused: calls.append(reused),
    )
    assert (again.evaluated, again.skipped) == (0, 3)
    assert calls == [True, True, True]
    assert again.records == first.records
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*.json")} == stamps
    # --max_runs picks the same first runs, so a wider call evaluates only the new ones.
    shutil.rmtree(output / "0.5")
    fanout.evaluate_experiment(
        experiment_dir, output, max_runs=1, options=OPTIONS, scheduler="none"
    )
    wider = fanout.evaluate_experiment(
        experiment_dir, output, max_runs=3, options=OPTIONS, scheduler="none"
    )
    assert (wider.evaluated, wider.skipped) == (2, 1)
    assert not [p for p in output.rglob(".*")]  # no temporary files left behind


def test_corrupt_checkpoint_gives_an_error_record_and_exit_1(experiment_dir, tmp_path):
    output = tmp_path / "checks"
    original = experiment_dir.parent / "original"
    shutil.copytree(experiment_dir / "0.5" / "1" / "checkpoints", original)
    _truncate_checkpoint(experiment_dir / "0.5" / "1")
    done = _run_tool(
        f"--experiment_dir={experiment_dir}",
        f"--output_dir={output}",
        "--scheduler=none",
        "--batch_size=16",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{2 * PER_RUN} out of {2 * PER_RUN} predictions match over 2 runs" in done.stdout
    assert f"error: {experiment_dir}/0.5/1: " in done.stderr
    bad = fanout.read_record(output / "0.5" / "1.json")
    assert bad.status == "error" and "truncated or corrupt" in bad.error
    assert all(fanout.read_record(output / "0.5" / f"{i}.json").all_match for i in (0, 2))

    # The error is kept (not retried on every call) until retry_errors.
    shutil.rmtree(experiment_dir / "0.5" / "1" / "checkpoints")
    shutil.copytree(original, experiment_dir / "0.5" / "1" / "checkpoints")
    kept = fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    assert (kept.evaluated, kept.errors) == (0, 1) and not kept.all_match
    retried = fanout.evaluate_experiment(
        experiment_dir, output, options=OPTIONS, scheduler="none", retry_errors=True
    )
    assert (retried.evaluated, retried.skipped, retried.errors) == (1, 2, 0)
    assert retried.all_match and retried.total == 3 * PER_RUN


def test_mismatch_is_recorded_with_its_indices(experiment_dir, tmp_path):
    run_dir = experiment_dir / "0.5" / "2"
    aux = load_aux_arrays(run_dir / "aux_arrays.npz")
    flipped = aux.correctness_test.copy()
    flipped[0] ^= True
    save_aux_arrays(
        run_dir / "aux_arrays.npz", type(aux)(**{**aux.as_dict(), "correctness_test": flipped})
    )
    summary = fanout.evaluate_experiment(
        experiment_dir, tmp_path / "checks", options=OPTIONS, scheduler="none"
    )
    record = summary.records[2]
    assert record.ok and not record.all_match
    assert record.splits["test"].first_mismatched_indices == (int(aux.index_test[0]),)
    assert (summary.matches, summary.total) == (3 * PER_RUN - 1, 3 * PER_RUN)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scheduler": "bogus"}, "scheduler must be 'local', 'none' or a scheduler address"),
        ({"n_workers": 0}, "n_workers must be at least 1"),
        ({"max_runs": 0}, "max_runs must be at least 1"),
        ({"subset_ratio": 0.3}, "no run with a checkpoint at subset ratio 0.3"),
    ],
)
def test_bad_arguments_raise_clearly(experiment_dir, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fanout.evaluate_experiment(experiment_dir, tmp_path / "checks", **kwargs)


def _is_resource_tracker(process: psutil.Process) -> bool:
    """multiprocessing's helper, which lives as long as this (the parent) process does."""
    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def test_local_dask_cluster_fans_out_end_to_end(experiment_dir, tmp_path):
    """A real LocalCluster with one worker process; nothing is left running afterwards."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    output = tmp_path / "checks"
    summary = fanout.evaluate_experiment(
        experiment_dir, output, options=OPTIONS, scheduler="local", n_workers=1
    )
    assert (summary.evaluated, summary.errors) == (3, 0)
    assert summary.all_match and summary.total == 3 * PER_RUN
    assert len(list(output.rglob("*.json"))) == 3
    left = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not _is_resource_tracker(p)
    ]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"worker processes left running: {alive}"
