"""`heldout scores` (tools/compute_scores.py) end to end, as a user runs it (the library
behind it: tests/scores/)."""

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
from tool_runs import TOOLS, run_tool

from heldout.scores import experiment as scores
from heldout.scores.influence import compute_influence
from heldout.scores.request import ScoreRequest

TOOL = TOOLS / "compute_scores.py"
_run_tool = functools.partial(run_tool, "compute_scores")


def _leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".")]


def test_default_scores_file(scores_experiment, tmp_path):
    output = tmp_path / "scores.npz"
    done = _run_tool(f"--experiment_dir={scores_experiment.path}", f"--output={output}")
    assert done.returncode == 0, done.stderr
    with np.load(output, allow_pickle=False) as npz:
        got = dict(npz)
    for key in [
        "subset_ratios",
        "cscore",
        "cscore_by_ratio",
        "cscore_count_out_by_ratio",
        "provenance",
        "cscore_stderr_by_ratio",
        "memorization",
        "memorization_count_in",
        "memorization_count_out",
        "score_subset_ratio",
    ]:
        assert key in got, key
    assert "influence" not in got and "influence_topk_index" not in got
    np.testing.assert_array_equal(got["subset_ratios"], [0.3, 0.7, 0.9])
    np.testing.assert_array_equal(got["num_runs_by_ratio"], [8, 8, 8])
    assert got["score_subset_ratio"] == 0.7
    assert got["cscore_by_ratio"].shape == (3, 120) and got["cscore"].shape == (120,)

    # Same numbers as the library on the same runs.
    expected = scores.score_experiment(scores_experiment, ScoreRequest()).arrays()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert "runs per subset ratio: 0.3: 8, 0.7: 8, 0.9: 8" in done.stdout
    assert "C-score: mean" in done.stdout and "memorization at 0.7" in done.stdout
    assert _leftovers(tmp_path) == []


def test_dense_and_topk_influence(scores_experiment, tmp_path):
    dense_file, topk_file = tmp_path / "dense.npz", tmp_path / "topk.npz"
    common = [
        f"--experiment_dir={scores_experiment.path}",
        "--scores=influence",
        "--subset_ratio=0.9",
    ]
    assert _run_tool(*common, f"--output={dense_file}").returncode == 0
    done = _run_tool(*common, f"--output={topk_file}", "--influence_topk=4", "--workers=2")
    assert done.returncode == 0, done.stderr
    dense, topk = np.load(dense_file), np.load(topk_file)
    assert "cscore" not in dense and "memorization" not in dense
    assert dense["score_subset_ratio"] == 0.9
    np.testing.assert_array_equal(dense["subset_ratios"], [0.9])
    runs = [run.load_aux() for run in scores_experiment.runs_at(0.9)]
    np.testing.assert_array_equal(dense["influence"], compute_influence(runs).matrix)
    assert "influence" not in topk
    assert topk["influence_topk_index"].shape == (30, 4)
    expected = -np.sort(-np.nan_to_num(dense["influence"], nan=-np.inf), axis=1)[:, :4]
    np.testing.assert_allclose(topk["influence_topk_value"], expected, atol=1e-6)


def test_a_bad_run_stops_the_tool_and_leaves_no_file(scores_experiment_copy, tmp_path):
    bad = scores_experiment_copy.run(0.7, 3)
    bad.aux_path.write_bytes(b"truncated")
    output = tmp_path / "out" / "scores.npz"
    done = _run_tool(f"--experiment_dir={scores_experiment_copy.path}", f"--output={output}")
    assert done.returncode != 0
    assert str(bad.aux_path) in done.stderr
    assert not output.exists()
    assert not output.parent.exists() or _leftovers(output.parent) == []

    done = _run_tool(
        f"--experiment_dir={scores_experiment_copy.path}", f"--output={output}", "--skip_bad_runs"
    )
    assert done.returncode == 0, done.stderr
    assert f"skipping bad run: {bad.aux_path}" in done.stderr
    assert "skipped bad runs: 1" in done.stdout
    np.testing.assert_array_equal(np.load(output)["num_runs_by_ratio"], [8, 7, 8])


def test_usage_errors(scores_experiment, tmp_path):
    done = _run_tool(f"--experiment_dir={scores_experiment.path}")
    assert done.returncode != 0 and "output" in done.stderr
    done = _run_tool(f"--experiment_dir={tmp_path / 'missing'}", f"--output={tmp_path / 'o.npz'}")
    assert done.returncode != 0 and "not a folder" in done.stderr
    assert not (tmp_path / "o.npz").exists()
    done = _run_tool(
        f"--experiment_dir={scores_experiment.path}",
        f"--output={tmp_path / 'o.npz'}",
        "--subset_ratio=0.42",
    )
    assert done.returncode != 0
    assert f"{scores_experiment.path}: no runs at subset ratio 0.42" in done.stderr
    assert "ratios present: [0.3, 0.7, 0.9]" in done.stderr
    assert not (tmp_path / "o.npz").exists()


def test_unwritable_output_is_one_line_before_any_work(scores_experiment, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    done = _run_tool(f"--experiment_dir={scores_experiment.path}", f"--output={blocker / 'o.npz'}")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"compute_scores: error: [Errno 20] not a folder, so {blocker / 'o.npz'} cannot be "
        f"written: '{blocker}'"
    ]


def test_malformed_experiment_json_is_one_line(scores_experiment_copy, tmp_path):
    (scores_experiment_copy.path / "experiment.json").write_text("[1, 2, 3]")
    done = _run_tool(
        f"--experiment_dir={scores_experiment_copy.path}", f"--output={tmp_path / 'o.npz'}"
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "experiment.json: expected a JSON object at the top level, got list" in done.stderr


def test_outputs_are_readable_by_others_under_umask_022(scores_experiment, tmp_path):
    out = tmp_path / "new" / "scores.npz"
    done = subprocess.run(
        [
            "bash",
            "-c",
            'umask 022 && exec "$@"',
            "-",
            sys.executable,
            str(TOOL),
            "--noprogress",
            f"--experiment_dir={scores_experiment.path}",
            f"--output={out}",
            "--scores=cscore,influence",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == 0o644
    assert out.parent.stat().st_mode & 0o777 == 0o755


def test_bad_flag_values_are_usage_errors_with_status_2(scores_experiment, tmp_path):
    done = _run_tool(
        f"--experiment_dir={scores_experiment.path}",
        f"--output={tmp_path / 'o.npz'}",
        "--influence_topk=-3",
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("compute_scores: error: flag --influence_topk=-3")
    done = _run_tool(f"--output={tmp_path / 'o.npz'}")  # a required flag missing
    assert done.returncode == 2 and "--experiment_dir" in done.stderr


def test_help_lists_the_commands_flags():
    done = subprocess.run(
        [sys.executable, str(TOOL), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0  # our --help (absl's exited with 1)
    for flag in ("--experiment_dir", "--output", "--scores", "--skip_bad_runs", "--scheduler"):
        assert flag in done.stdout, flag


def test_the_threshold_line_agrees_with_the_fdr_pairs_at_few_runs(scores_experiment, tmp_path):
    """#24: "N test examples have ... influence >= 0.15" beside "0 selected at FDR 0.05"
    contradicted each other; at 8 runs the threshold is within noise, and it says so. The
    backend and the peak memory it expects come first, on stderr."""
    done = _run_tool(
        f"--experiment_dir={scores_experiment.path}",
        "--scores=influence,influence_pairs",
        f"--output={tmp_path / 'scores.npz'}",
    )
    assert done.returncode == 0, done.stderr
    assert "test examples have a training example with influence >= 0.15" in done.stdout
    assert "warning: at " in done.stdout
    assert "the 0.15 threshold is within noise" in done.stdout
    assert "influence: the numpy backend (small problem" in done.stderr
    assert "expected peak memory about" in done.stderr and "held whole" in done.stderr


def test_with_enough_runs_the_threshold_line_counts_the_fdr_survivors(tmp_path):
    """The two summaries agree: the survivors of the threshold are the FDR-selected pairs
    at or above it, counted on the same counts. (The command runs in its own process: its
    flags must not meet other commands' definitions in this one.)"""
    from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

    spec = SyntheticSpec(num_train=200, num_test=50, subset_ratios=(0.7,), runs_per_ratio=400)
    experiment = write_synthetic_experiment(tmp_path / "many", spec)
    request = ScoreRequest(scores=("influence", "influence_pairs"))
    pairs = scores.score_experiment(experiment, request).influence_pairs
    expected = np.unique(pairs.test_index[pairs.influence >= 0.15]).size
    assert expected >= 5
    done = run_tool(
        "compute_scores",
        f"--experiment_dir={experiment.path}",
        f"--output={tmp_path / 'scores.npz'}",
        "--scores=influence,influence_pairs",
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"of these, {expected} have such a pair that survives FDR control at 0.05" in text
    assert f"{pairs.train_index.size} selected at FDR 0.05" in text
    assert "warning" not in text
