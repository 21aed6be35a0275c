"""tools/compute_scores.py end to end, and the library call behind it."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heldout._core import atomic
from heldout.errors import ScoresError
from heldout.release import layout as release
from heldout.release.aux_arrays import aux_from_predictions
from heldout.scores import experiment as scores
from heldout.scores.file import save_scores
from heldout.scores.influence import compute_influence
from heldout.scores.request import ScoreRequest
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

TOOL = Path(__file__).resolve().parents[2] / "tools" / "compute_scores.py"
SPEC = SyntheticSpec(num_train=120, num_test=30, subset_ratios=(0.3, 0.7, 0.9), runs_per_ratio=8)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return write_synthetic_experiment(tmp_path_factory.mktemp("cli") / "synthetic", SPEC)


@pytest.fixture
def experiment_copy(experiment, tmp_path):
    shutil.copytree(experiment.path, tmp_path / "synthetic")
    return release.open_experiment(tmp_path / "synthetic")


def _run_tool(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), "--noprogress", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".")]


def test_default_scores_file(experiment, tmp_path):
    output = tmp_path / "scores.npz"
    done = _run_tool(f"--experiment_dir={experiment.path}", f"--output={output}")
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
    expected = scores.score_experiment(experiment, ScoreRequest()).arrays()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert "runs per subset ratio: 0.3: 8, 0.7: 8, 0.9: 8" in done.stdout
    assert "C-score: mean" in done.stdout and "memorization at 0.7" in done.stdout
    assert _leftovers(tmp_path) == []


def test_dense_and_topk_influence(experiment, tmp_path):
    dense_file, topk_file = tmp_path / "dense.npz", tmp_path / "topk.npz"
    common = [f"--experiment_dir={experiment.path}", "--scores=influence", "--subset_ratio=0.9"]
    assert _run_tool(*common, f"--output={dense_file}").returncode == 0
    done = _run_tool(*common, f"--output={topk_file}", "--influence_topk=4", "--workers=2")
    assert done.returncode == 0, done.stderr
    dense, topk = np.load(dense_file), np.load(topk_file)
    assert "cscore" not in dense and "memorization" not in dense
    assert dense["score_subset_ratio"] == 0.9
    np.testing.assert_array_equal(dense["subset_ratios"], [0.9])
    runs = [run.load_aux() for run in experiment.runs_at(0.9)]
    np.testing.assert_array_equal(dense["influence"], compute_influence(runs).matrix)
    assert "influence" not in topk
    assert topk["influence_topk_index"].shape == (30, 4)
    expected = -np.sort(-np.nan_to_num(dense["influence"], nan=-np.inf), axis=1)[:, :4]
    np.testing.assert_allclose(topk["influence_topk_value"], expected, atol=1e-6)


def test_score_ratio_defaults_to_the_largest_without_0_7(tmp_path):
    spec = SyntheticSpec(num_train=40, num_test=10, subset_ratios=(0.2, 0.5), runs_per_ratio=3)
    experiment = write_synthetic_experiment(tmp_path / "e", spec)
    result = scores.score_experiment(experiment, ScoreRequest(scores=["memorization"]))
    assert result.score_subset_ratio == 0.5 and result.cscores is None
    np.testing.assert_array_equal(result.subset_ratios, [0.5])
    with pytest.raises(ScoresError, match="ratios present"):
        scores.score_experiment(experiment, ScoreRequest(scores=["memorization"], subset_ratio=0.7))
    with pytest.raises(ScoresError, match="unknown scores"):
        scores.score_experiment(experiment, ScoreRequest(scores=["cscores"]))


def test_a_bad_run_stops_the_tool_and_leaves_no_file(experiment_copy, tmp_path):
    bad = experiment_copy.run(0.7, 3)
    bad.aux_path.write_bytes(b"truncated")
    output = tmp_path / "out" / "scores.npz"
    done = _run_tool(f"--experiment_dir={experiment_copy.path}", f"--output={output}")
    assert done.returncode != 0
    assert str(bad.aux_path) in done.stderr
    assert not output.exists()
    assert not output.parent.exists() or _leftovers(output.parent) == []

    done = _run_tool(
        f"--experiment_dir={experiment_copy.path}", f"--output={output}", "--skip_bad_runs"
    )
    assert done.returncode == 0, done.stderr
    assert f"skipping bad run: {bad.aux_path}" in done.stderr
    assert "skipped bad runs: 1" in done.stdout
    np.testing.assert_array_equal(np.load(output)["num_runs_by_ratio"], [8, 7, 8])


def test_runs_of_other_sizes_are_bad_runs(experiment_copy, tmp_path):
    rng = np.random.default_rng(0)
    aux = aux_from_predictions(
        rng.random(121) < 0.7, rng.random(121) < 0.5, rng.random(30) < 0.5, rng
    )
    odd = release.write_run(experiment_copy.path, 0.9, 50, aux)
    experiment = release.open_experiment(experiment_copy.path)
    with pytest.raises(ValueError, match="N=121") as caught:
        scores.score_experiment(experiment, ScoreRequest())
    assert str(caught.value).startswith(str(odd.aux_path))
    skipped = scores.score_experiment(experiment, ScoreRequest(skip_bad_runs=True))
    assert len(skipped.skipped) == 1 and str(odd.aux_path) in skipped.skipped[0]


def test_save_scores_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "scores.npz"
    save_scores(target, {"a": np.arange(3)})

    def failing_write(file, arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(atomic, "write_stored_npz", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_scores(target, {"a": np.arange(5)})
    np.testing.assert_array_equal(np.load(target)["a"], np.arange(3))  # old file intact
    assert _leftovers(tmp_path) == []


def test_usage_errors(experiment, tmp_path):
    done = _run_tool(f"--experiment_dir={experiment.path}")
    assert done.returncode != 0 and "output" in done.stderr
    done = _run_tool(f"--experiment_dir={tmp_path / 'missing'}", f"--output={tmp_path / 'o.npz'}")
    assert done.returncode != 0 and "not a folder" in done.stderr
    assert not (tmp_path / "o.npz").exists()
    done = _run_tool(
        f"--experiment_dir={experiment.path}",
        f"--output={tmp_path / 'o.npz'}",
        "--subset_ratio=0.42",
    )
    assert done.returncode != 0
    assert f"{experiment.path}: no runs at subset ratio 0.42" in done.stderr
    assert "ratios present: [0.3, 0.7, 0.9]" in done.stderr
    assert not (tmp_path / "o.npz").exists()


def test_unwritable_output_is_one_line_before_any_work(experiment, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    done = _run_tool(f"--experiment_dir={experiment.path}", f"--output={blocker / 'o.npz'}")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"compute_scores: error: [Errno 20] not a folder, so {blocker / 'o.npz'} cannot be "
        f"written: '{blocker}'"
    ]


def test_malformed_experiment_json_is_one_line(experiment_copy, tmp_path):
    (experiment_copy.path / "experiment.json").write_text("[1, 2, 3]")
    done = _run_tool(f"--experiment_dir={experiment_copy.path}", f"--output={tmp_path / 'o.npz'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "experiment.json: expected a JSON object at the top level, got list" in done.stderr


def test_outputs_are_readable_by_others_under_umask_022(experiment, tmp_path):
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
            f"--experiment_dir={experiment.path}",
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


@pytest.mark.parametrize("declared", [True, False])
def test_an_odd_first_run_is_the_one_skipped(experiment_copy, declared):
    # The odd run sorts first (ratio 0.1, run 0). Today it set the sizes, and with
    # --skip_bad_runs every good run was skipped instead of it.
    if not declared:  # no recorded sizes: the majority decides
        (experiment_copy.path / "experiment.json").unlink()
    rng = np.random.default_rng(1)
    aux = aux_from_predictions(rng.random(99) < 0.5, rng.random(99) < 0.5, rng.random(30) < 0.5)
    odd = release.write_run(experiment_copy.path, 0.1, 0, aux)
    experiment = release.open_experiment(experiment_copy.path)
    assert experiment.runs[0] == odd
    result = scores.score_experiment(experiment, ScoreRequest(skip_bad_runs=True))
    assert len(result.skipped) == 1 and result.skipped[0].startswith(str(odd.aux_path))
    assert ("experiment.json" if declared else "the majority of the runs") in result.skipped[0]
    assert result.cscores.cscore.size == SPEC.num_train
    np.testing.assert_array_equal(result.num_runs_by_ratio, [0, 8, 8, 8])


def test_bad_flag_values_are_usage_errors_with_status_2(experiment, tmp_path):
    done = _run_tool(
        f"--experiment_dir={experiment.path}",
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
    assert done.returncode == 1  # absl's --help exits with 1
    for flag in ("--experiment_dir", "--output", "--scores", "--skip_bad_runs"):
        assert flag in done.stdout, flag
