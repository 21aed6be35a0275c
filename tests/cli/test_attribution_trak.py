"""`heldout attribution --trak_models --figure` on a tiny experiment of real MLP checkpoints:
TRAK reads only estimation runs' checkpoints, and the ceiling is printed, saved and drawn."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from evaluation.test_fanout import NUM_TEST, NUM_TRAIN, _write_experiment
from tool_runs import run_script


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = _write_experiment(tmp_path_factory.mktemp("trak_cli"), "tiny-mlp", seed=4, runs=10)
    for run_id in range(5, 10):  # evaluation runs: checkpoints unreadable, never read
        for data in (folder / "0.5" / str(run_id) / "checkpoints").glob("ckpt-*.data-*"):
            os.truncate(data, 7)
    return folder


def attribution(experiment, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return run_script(
        "tools/attribution.py", f"--experiment_dir={experiment}", *args, timeout=300, env=env
    )


def test_trak_reads_estimation_checkpoints_only_and_the_ceiling_is_saved(experiment, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "tau.npy", rng.normal(size=(NUM_TEST, NUM_TRAIN)).astype(np.float32))
    out, figure = tmp_path / "lds.npz", tmp_path / "lds.png"
    done = attribution(
        experiment,
        f"--attribution={tmp_path / 'tau.npy'}",
        "--evaluation_runs=5-9",
        "--trak_models=3",
        f"--output={out}",
        f"--figure={figure}",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("last-layer TRAK (3 models)") for line in lines)
    assert any(line.startswith("ceiling: holdout influence (binary, 5 runs)") for line in lines)
    with np.load(out) as f:
        lds = {key: f[key] for key in f.files}
    assert lds["trak_run_ids"].tolist() == [0, 1, 2]
    assert not set(lds["trak_run_ids"]) & set(lds["evaluation_run_ids"])
    assert "last-layer TRAK (3 models)" in lds["baseline_names"].tolist()
    assert lds["ceiling_runs"].tolist() == [5]
    for key in ("ceiling_lds", "ceiling_ci_low", "ceiling_ci_high", "ceiling_num_test"):
        assert lds[key].shape == (1,)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_more_trak_models_than_estimation_runs_is_refused_and_nothing_written(experiment, tmp_path):
    np.save(tmp_path / "tau.npy", np.ones((NUM_TEST, NUM_TRAIN), np.float32))
    out = tmp_path / "lds.npz"
    done = attribution(
        experiment,
        f"--attribution={tmp_path / 'tau.npy'}",
        "--evaluation_runs=5-9",
        "--trak_models=6",
        f"--output={out}",
    )
    assert done.returncode != 0 and "only 5 estimation runs" in done.stderr
    assert done.stderr.strip().count("\n") == 0 and not out.exists()


def test_trak_from_an_evaluation_checkpoint_would_fail_to_restore(experiment, tmp_path):
    # the fixture's evaluation checkpoints are truly unreadable: had TRAK read one, it fails
    copy = tmp_path / "e"
    shutil.copytree(experiment, copy)
    np.save(tmp_path / "tau.npy", np.ones((NUM_TEST, NUM_TRAIN), np.float32))
    done = attribution(
        copy,
        f"--attribution={tmp_path / 'tau.npy'}",
        "--evaluation_runs=0-4",
        "--trak_models=1",
        f"--output={tmp_path / 'lds.npz'}",
    )
    assert done.returncode != 0 and "checkpoint" in done.stderr.lower()


def test_the_bench_quick_mode_prints_one_table_and_draws_the_figure(tmp_path):
    from heldout.evaluation import fanout

    folder = _write_experiment(tmp_path, "tiny-mlp", seed=5, runs=8)
    outputs = tmp_path / "outs"
    options = fanout.EvalOptions(batch_size=16, outputs=("margins",), outputs_dir=str(outputs))
    fanout.evaluate_experiment(folder, tmp_path / "checks", options=options, scheduler="none")
    figure = tmp_path / "bench.png"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = run_script(
        "bench/attribution_lds.py",
        f"--experiment_dir={folder}",
        f"--outputs_dir={outputs}",
        f"--figure={figure}",
        "--quick",
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "CPU: " in done.stdout and "4 estimation and 4 evaluation runs" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    names = [row.split(" | ")[0][2:] for row in rows[1:]]
    assert names == [
        "random",
        "holdout influence (binary)",
        "holdout influence (margin)",
        "last-layer TRAK (1 model)",
        "last-layer TRAK (2 models)",
        "ceiling: holdout influence (margin)",
    ]
    assert figure.read_bytes()[:4] == b"\x89PNG"
