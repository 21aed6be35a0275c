"""A scores file whose per-example estimates hold a value no estimate can take (an
infinity, a C-score of 1.5) is refused by every command that reads it, in one line naming
the file and the key: `table`, `plot` and `analyze` used to write rows, figures and a
class table with `inf` and `nan` in them, exit 0."""

from __future__ import annotations

import numpy as np
import pytest
from tool_runs import run_script, run_tool


@pytest.fixture(scope="module")
def scores_file(scores_experiment, tmp_path_factory):
    """A real scores file of the synthetic experiment (C-scores, memorization)."""
    path = tmp_path_factory.mktemp("scores") / "scores.npz"
    done = run_tool(
        "compute_scores", f"--experiment_dir={scores_experiment.path}", f"--output={path}"
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def npz_data(tmp_path_factory):
    """Images and labels of the synthetic split sizes, as `--dataset=npz` reads them."""
    path = tmp_path_factory.mktemp("data") / "data.npz"
    np.savez(
        path,
        x_train=np.zeros((120, 4, 4, 1), np.uint8),
        y_train=np.arange(120) % 3,
        x_test=np.zeros((30, 4, 4, 1), np.uint8),
        y_test=np.arange(30) % 3,
    )
    return path


def _hostile(scores_file, tmp_path, key, value):
    arrays = dict(np.load(scores_file))
    arrays[key] = arrays[key].copy()
    arrays[key][3] = value
    path = tmp_path / "hostile.npz"
    np.savez(path, **arrays)
    return path


def _commands(path, tmp_path, npz_data):
    data = [f"--scores_file={path}", "--dataset=npz", f"--data_dir={npz_data}"]
    return {
        "table": ("tools/table.py", f"--scores_file={path}", f"--output={tmp_path / 't.csv'}"),
        "plot_scores": ("tools/plot_scores.py", *data, f"--output_dir={tmp_path / 'figs'}"),
        "analyze_scores": ("tools/analyze_scores.py", *data),
    }


@pytest.mark.parametrize(
    "key, value", [("cscore", np.inf), ("cscore", 1.5), ("memorization", -np.inf)]
)
@pytest.mark.parametrize("command", ["table", "plot_scores", "analyze_scores"])
def test_an_impossible_estimate_is_one_line(scores_file, npz_data, tmp_path, key, value, command):
    path = _hostile(scores_file, tmp_path, key, value)
    script, *args = _commands(path, tmp_path, npz_data)[command]
    done = run_script(script, *args, timeout=300)
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), done.stderr
    assert str(path) in lines[0] and key in lines[0] and "[3]" in lines[0], lines[0]
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "figs").exists()


def test_nan_estimates_are_undefined_and_still_accepted(scores_file, tmp_path):
    path = _hostile(scores_file, tmp_path, "cscore", np.nan)
    done = run_script(
        "tools/table.py", f"--scores_file={path}", f"--output={tmp_path / 't.csv'}", timeout=300
    )
    assert done.returncode == 0, done.stderr
