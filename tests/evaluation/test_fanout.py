"""heldout.evaluation.fanout and tools/evaluate_runs.py on a tiny experiment of three MLP runs.

The experiment (28x28x1 images, 40 train + 12 test, three untrained MLPs with their own
random weights and training subsets) is built once; its stored correctness comes from
heldout.evaluation.evaluate, so a faithful re-evaluation matches N out of N. Each test works on
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
from tool_runs import run_main

from heldout._core.locks import FileLock
from heldout.errors import HeldoutError, LockBusyError, StaleResultError
from heldout.evaluation import fanout
from heldout.release.aux_arrays import load_aux_arrays, save_aux_arrays

TOOL = Path(__file__).resolve().parents[2] / "tools" / "evaluate_runs.py"
RATIO = 0.5
NUM_TRAIN, NUM_TEST = 40, 12
PER_RUN = NUM_TRAIN + NUM_TEST  # train + removed + test examples cross-checked per run
OPTIONS = fanout.EvalOptions(batch_size=16)


def _write_experiment(root: Path, name: str, seed: int, runs: int = 3) -> Path:
    """`root/name`: `runs` untrained MLPs (seeded weights) on `root/tiny.npz`."""
    import tensorflow as tf

    from heldout import models

    rng = np.random.default_rng(seed)
    data_path, _ = tiny_release.random_npz_data(root, (28, 28, 1), NUM_TRAIN, NUM_TEST, rng)
    experiment_dir = root / name
    tiny_release.write_npz_meta(experiment_dir, "mlp", (28, 28, 1), data_path)
    for run_id in range(runs):
        tf.random.set_seed(100 * seed + run_id)
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


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    return _write_experiment(tmp_path_factory.mktemp("fanout"), "tiny-mlp", seed=0)


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
    # No temporary files left behind (the lock file stays: removing it would race).
    assert [p.name for p in output.rglob(".*")] == [fanout.LOCK_FILE]


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

    # The error is kept (not retried on every call) until retry_errors...
    kept = fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    assert (kept.evaluated, kept.errors) == (0, 1) and not kept.all_match
    retried = fanout.evaluate_experiment(
        experiment_dir, output, options=OPTIONS, scheduler="none", retry_errors=True
    )
    assert (retried.evaluated, retried.stale, retried.skipped, retried.errors) == (1, 0, 2, 1)
    # ... or until the run's files change: then the error record is stale.
    shutil.rmtree(experiment_dir / "0.5" / "1" / "checkpoints")
    shutil.copytree(original, experiment_dir / "0.5" / "1" / "checkpoints")
    fixed = fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    assert (fixed.evaluated, fixed.stale, fixed.skipped, fixed.errors) == (1, 1, 2, 0)
    assert fixed.all_match and fixed.total == 3 * PER_RUN


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
    with pytest.raises(HeldoutError, match=message):
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
    assert len(list(output.glob("*/*.json"))) == 3
    left = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not _is_resource_tracker(p)
    ]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"worker processes left running: {alive}"


# ------------------------------------------------------------------ identity of records


def test_record_says_what_it_is_a_result_of(experiment_dir, tmp_path):
    output = tmp_path / "checks"
    fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    identity = json.loads((output / "0.5" / "1.json").read_text())["identity"]
    run_dir = experiment_dir / "0.5" / "1"
    assert identity["experiment_dir"] == str(experiment_dir)
    assert identity["run_path"] == str(run_dir)
    assert identity["aux_arrays"]["path"] == str(run_dir / "aux_arrays.npz")
    assert identity["aux_arrays"]["size"] == (run_dir / "aux_arrays.npz").stat().st_size
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert [Path(f["path"]).name for f in identity["checkpoint_files"]] == files
    assert all(f["mtime_ns"] > 0 for f in identity["checkpoint_files"])
    assert identity["options"]["splits"] == ["train", "test"]
    assert identity["options"]["batch_size"] == 16
    assert identity["data"]["source"] == "npz"
    data_file = Path(
        json.loads((experiment_dir / "experiment.json").read_text())["extra"]["data_dir"]
    )
    assert identity["data"]["file"] == {
        "path": str(data_file),
        "size": data_file.stat().st_size,
        "mtime_ns": data_file.stat().st_mtime_ns,
    }
    assert identity["labels"] is None  # clean labels: no corruption file
    manifest = json.loads((output / fanout.MANIFEST_FILE).read_text())
    assert manifest["experiment_dir"] == str(experiment_dir)


def test_record_of_other_options_or_files_is_re_evaluated(experiment_dir, tmp_path):
    """Issue 13: a --split=test record used to answer a later --split=all call."""
    output = tmp_path / "checks"
    test_only = fanout.EvalOptions(batch_size=16, splits=("test",))
    first = fanout.evaluate_experiment(experiment_dir, output, options=test_only, scheduler="none")
    assert [set(r.splits) for r in first.records] == [{"test"}] * 3
    again = fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    assert (again.evaluated, again.stale, again.skipped) == (3, 3, 0)
    assert [set(r.splits) for r in again.records] == [{"train", "removed", "test"}] * 3
    assert again.all_match and again.total == 3 * PER_RUN
    # A replaced checkpoint (new mtime) makes only that run's record stale.
    data = next((experiment_dir / "0.5" / "2" / "checkpoints").glob("ckpt-2.data-*"))
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 10**9))
    third = fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    assert (third.evaluated, third.stale, third.skipped) == (1, 1, 2)
    assert (
        fanout.read_record(output / "0.5" / "2.json").identity["checkpoint_files"][0]["mtime_ns"]
        == data.stat().st_mtime_ns
    )


def test_records_of_another_experiment_are_never_mixed(experiment_dir, tmp_path):
    """Issue 13: records of experiment A used to answer a call on experiment B."""
    other = _write_experiment(tmp_path / "b", "other-mlp", seed=1, runs=1)
    output = tmp_path / "checks"
    fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    before = {p: p.read_bytes() for p in output.rglob("*.json")}
    with pytest.raises(
        StaleResultError,
        match=rf"holds the evaluation records of experiment "
        rf"{experiment_dir}, not of {other}",
    ):
        fanout.evaluate_experiment(other, output, options=OPTIONS, scheduler="none")
    assert {p: p.read_bytes() for p in output.rglob("*.json")} == before
    # A folder written before the manifest existed is checked record by record.
    (output / fanout.MANIFEST_FILE).unlink()
    with pytest.raises(StaleResultError, match=str(experiment_dir)):
        fanout.evaluate_experiment(other, output, options=OPTIONS, scheduler="none")


def test_legacy_record_without_identity_is_re_evaluated(experiment_dir, tmp_path):
    output = tmp_path / "checks"
    fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    path = output / "0.5" / "0.json"
    raw = json.loads(path.read_text())
    del raw["identity"], raw["traceback"]
    raw["version"] = 1
    path.write_text(json.dumps(raw))
    again = fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    assert (again.evaluated, again.stale, again.skipped) == (1, 1, 2)
    assert fanout.read_record(path).identity is not None


def test_busy_output_folder_names_the_holder(experiment_dir, tmp_path):
    output = tmp_path / "checks"
    output.mkdir()
    with FileLock(output / fanout.LOCK_FILE, "a test"):
        with pytest.raises(LockBusyError, match=rf"process {os.getpid()}"):
            fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")


def test_umask_022_makes_every_written_file_and_folder_readable(experiment_dir, tmp_path):
    output = tmp_path / "checks"
    old = os.umask(0o022)
    try:
        fanout.evaluate_experiment(experiment_dir, output, options=OPTIONS, scheduler="none")
    finally:
        os.umask(old)
    written = [output, *output.rglob("*")]
    assert len(written) >= 5  # folders and records (and the manifest and the lock)
    for path in written:
        mode = path.stat().st_mode & 0o777
        expected = 0o755 if path.is_dir() else 0o644
        assert mode == expected, f"{path}: {oct(mode)}"


# ------------------------------------------------------------------ built once per worker


def test_model_built_and_traced_once_per_worker_with_identical_results(experiment_dir):
    """Issue 13: every run used to build its own model and trace its own step."""
    from heldout.datasets import relabeled
    from heldout.evaluation import evaluate as evaluation
    from heldout.release import layout as release

    runs = fanout.select_runs(experiment_dir)
    state = fanout.WorkerState()
    records = [fanout.evaluate_run(run, OPTIONS, state) for run in runs]
    assert all(r.all_match for r in records)
    assert (state.models.builds, state.models.traces) == (1, 1)

    meta = release.read_experiment_meta(experiment_dir)
    source = relabeled.experiment_source(experiment_dir)
    cache = evaluation.ModelCache()
    for run, record in zip(runs, records, strict=True):
        fresh = evaluation.check_run(run, source, meta=meta, batch_size=16)
        cached = evaluation.check_run(run, source, meta=meta, batch_size=16, cache=cache)
        assert record.checkpoint == str(fresh.restore.path)
        for split in ("train", "test"):
            np.testing.assert_array_equal(
                cached.results[split].predictions, fresh.results[split].predictions
            )
        assert (
            (cached.matches, cached.total)
            == (fresh.matches, fresh.total)
            == (
                record.matches,
                record.total,
            )
        )
    assert cache.builds == 1 and cache.traces == 1


def test_a_bug_in_one_run_is_recorded_with_its_traceback(experiment_dir, tmp_path, monkeypatch):
    """Errors the toolkit does not raise on purpose keep their traceback; the others go on."""
    real = fanout.EvalOptions.check_run

    def check_run_with_a_bug(self, run, *args, **kwargs):
        if run.run_id == 1:
            raise ZeroDivisionError("a bug")
        return real(self, run, *args, **kwargs)

    monkeypatch.setattr(fanout.EvalOptions, "check_run", check_run_with_a_bug)  # fault injection
    summary = fanout.evaluate_experiment(
        experiment_dir, tmp_path / "checks", options=OPTIONS, scheduler="none"
    )
    assert (summary.runs_checked, summary.errors) == (2, 1)
    bug = summary.records[1]
    assert bug.error == "ZeroDivisionError: a bug"
    assert "Traceback" in bug.traceback and "check_run_with_a_bug" in bug.traceback
    assert bug.identity is not None  # kept, not retried, until retry_errors or a change


# ----------------------------------------------------------------------------- the CLI


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    """tools/evaluate_runs.py's main in this process, through the one-line error wrapper."""
    from heldout.cli import evaluate_runs as cli

    return run_main(cli, "evaluate_runs.py", args, capsys)


def test_cli_reports_stale_records_and_other_experiments_in_one_line(
    experiment_dir, tmp_path, capsys
):
    output = tmp_path / "checks"
    base = [f"--output_dir={output}", "--scheduler=none", "--batch_size=16"]
    code, out, _ = _cli([f"--experiment_dir={experiment_dir}", "--split=test", *base], capsys)
    assert code == 0 and f"{3 * NUM_TEST} out of {3 * NUM_TEST} predictions match" in out
    code, out, _ = _cli([f"--experiment_dir={experiment_dir}", *base], capsys)
    assert code == 0 and f"{3 * PER_RUN} out of {3 * PER_RUN} predictions match" in out
    assert "3 evaluated now, of which 3 stale records re-evaluated" in out

    other = _write_experiment(tmp_path / "b", "other-mlp", seed=1, runs=1)
    code, out, err = _cli([f"--experiment_dir={other}", *base], capsys)
    assert code == 2 and "predictions match" not in out
    assert err.startswith("evaluate_runs: error: ") and err.count("\n") == 1
    assert "holds the evaluation records of experiment" in err

    code, _, err = _cli([f"--experiment_dir={experiment_dir}"], capsys)
    assert (code, err) == (
        2,
        "evaluate_runs: error: --experiment_dir and --output_dir are required\n",
    )
    code, _, err = _cli([f"--experiment_dir={experiment_dir}", *base, "--min_match=2"], capsys)
    assert (code, err) == (
        2,
        "evaluate_runs: error: --min_match must be a fraction in [0, 1], got 2\n",
    )
