"""`heldout table` (tools/table.py): a scores file as a CSV, as a user runs it."""

import subprocess
import sys

import numpy as np
from tool_runs import run_script, run_tool

from heldout.scores.file import load_scores
from heldout.scores.table import load_score_table


def test_the_table_command_writes_every_row_with_labels_and_proxies(scores_experiment, tmp_path):
    scores_file, csv = tmp_path / "scores.npz", tmp_path / "scores.csv"
    done = run_tool(
        "compute_scores",
        f"--experiment_dir={scores_experiment.path}",
        f"--output={scores_file}",
        "--confidence=0.95",
    )
    assert done.returncode == 0, done.stderr
    np.savez(tmp_path / "labels.npz", labels=np.arange(120) % 3)
    np.savez(tmp_path / "proxies.npz", index=np.arange(120), cbtl=np.linspace(0, 1, 120))
    done = run_script(
        "tools/table.py",
        f"--scores_file={scores_file}",
        f"--output={csv}",
        f"--labels={tmp_path / 'labels.npz'}",
        f"--proxies_file={tmp_path / 'proxies.npz'}",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 120 rows x" in done.stdout
    got, arrays = load_score_table(csv), load_scores(scores_file)
    np.testing.assert_array_equal(got["cscore"], arrays["cscore"])
    np.testing.assert_array_equal(got["memorization_ci_high"], arrays["memorization_ci_high"])
    np.testing.assert_array_equal(got["label"], np.arange(120) % 3)
    np.testing.assert_array_equal(got["proxy_cbtl"], np.linspace(0, 1, 120))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_output_must_be_a_csv_and_the_command_is_listed(tmp_path):
    done = run_script("tools/table.py", "--scores_file=x.npz", f"--output={tmp_path / 'x.npz'}")
    assert done.returncode == 2 and "--output must end with .csv" in done.stderr
    help_text = subprocess.run(
        [sys.executable, "-c", "from heldout.cli.main import run; run()", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert any(line.split()[:1] == ["table"] for line in help_text.splitlines())


def test_labels_come_from_the_data_source_and_missing_data_is_one_line(tmp_path):
    from heldout.scores.experiment import score_experiment
    from heldout.scores.file import save_scores
    from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

    spec = SyntheticSpec(num_train=40, num_test=10, subset_ratios=(0.5,), runs_per_ratio=4)
    experiment = write_synthetic_experiment(tmp_path / "synthetic", spec)
    save_scores(tmp_path / "scores.npz", score_experiment(experiment).arrays())
    labels = np.arange(40) % 4
    np.savez(
        tmp_path / "data.npz",
        x_train=np.zeros((40, 4, 4, 1), np.uint8),
        y_train=labels,
        x_test=np.zeros((10, 4, 4, 1), np.uint8),
        y_test=np.zeros(10, np.int64),
    )
    common = [f"--scores_file={tmp_path / 'scores.npz'}", f"--output={tmp_path / 't.csv'}"]
    done = run_script(
        "tools/table.py", *common, "--dataset=npz", f"--data_dir={tmp_path / 'data.npz'}"
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(load_score_table(tmp_path / "t.csv")["label"], labels)
    done = run_script("tools/table.py", *common, f"--experiment_dir={experiment.path}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "does not record its dataset" in done.stderr
