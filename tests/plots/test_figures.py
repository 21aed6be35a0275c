"""write_figures and its command line: every figure a scores file allows, and the errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from heldout.errors import ScoresFileError, UsageError
from heldout.plots import influence
from heldout.plots.figures import FIGURE_NAMES, draw_figures, load_scores, write_figures
from tests.plots.figure_data import figure_texts, run_plan, shown


def test_unknown_format_is_refused_before_anything_is_written(tmp_path, data):
    scores, train_images, train_labels, _, _ = data
    with pytest.raises(UsageError, match="cannot write figures as \\['nope'\\]"):
        write_figures(scores, train_images, train_labels, tmp_path / "f", formats=("png", "nope"))
    assert not (tmp_path / "f").exists()


def test_truncated_scores_file_names_the_file(tmp_path, data):
    scores, *_ = data
    np.savez(tmp_path / "scores.npz", **scores)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "scores.npz").read_bytes()[:1000])
    with pytest.raises(ScoresFileError, match="truncated.npz: cannot read"):
        load_scores(truncated)


def test_topk_scores_and_no_influence(data):
    scores, train_images, train_labels, test_images, test_labels = data
    index, value = influence.topk_from_dense(scores.pop("influence"), 5)
    scores.update(influence_topk_index=index, influence_topk_value=value)
    figures = draw_figures(
        scores, train_images, train_labels, test_images=test_images, test_labels=test_labels
    )
    assert sorted(figures) == sorted(FIGURE_NAMES)
    first_row = figures["influence"].axes[:5]  # the test image and its 4 most influential
    t = int(first_row[0].get_title().split()[1])
    for k, ax in enumerate(first_row[1:]):
        np.testing.assert_array_equal(shown(ax), train_images[index[t, k], :, :, 0])
    for key in ("influence_topk_index", "influence_topk_value"):
        scores.pop(key)
    figures = draw_figures(scores, train_images, train_labels)
    assert sorted(figures) == ["cscore_bands", "cscore_bins", "examples", "histograms"]
    for key in ("cscore_ci_low", "cscore_ci_high"):
        scores.pop(key)
    figures = draw_figures(scores, train_images, train_labels)
    assert sorted(figures) == ["cscore_bins", "examples", "histograms"]


def test_every_figure_says_the_runs_and_examples_behind_it(data):
    scores, train_images, train_labels, test_images, test_labels = data
    scores["num_runs_by_ratio"] = np.array([32, 32, 32])
    figures = draw_figures(
        scores, train_images, train_labels, test_images=test_images, test_labels=test_labels
    )
    runs = "32 runs at each of ratios 0.3, 0.5, 0.7"
    texts = {name: "\n".join(figure_texts(figure)) for name, figure in figures.items()}
    assert runs in texts["examples"] and "299 training examples" in texts["examples"]
    assert "(295 examples, 32 runs)" in texts["histograms"]
    assert "(300 examples, 32 runs)" in texts["histograms"]
    assert runs in texts["cscore_bins"] and "299 examples binned" in texts["cscore_bins"]
    assert runs in texts["cscore_bands"] and "C-scores of 299 examples" in texts["cscore_bands"]
    assert "influence from 16 runs" in texts["influence"]
    assert "40 test examples" in texts["influence"]


def test_mismatched_dataset_is_an_error(tmp_path, data):
    scores, train_images, train_labels, _, _ = data
    with pytest.raises(ScoresFileError, match="300 training examples"):
        write_figures(scores, train_images[:10], train_labels[:10], tmp_path)
    with pytest.raises(ScoresFileError, match="cscore_by_ratio"):
        write_figures(
            {"subset_ratios": scores["subset_ratios"], "cscore": scores["cscore"]},
            train_images,
            train_labels,
            tmp_path,
        )


def _run_plot_scores(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    tool = Path(__file__).resolve().parents[2] / "tools" / "plot_scores.py"
    return subprocess.run(
        [
            sys.executable,
            str(tool),
            f"--scores_file={tmp_path / 'scores.npz'}",
            "--dataset=npz",
            f"--data_dir={tmp_path / 'data.npz'}",
            f"--output_dir={tmp_path / 'figs'}",
            "--formats=png",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line(tmp_path, data):
    """tools/plot_scores.py on an .npz data source, with intervals and a run plan."""
    import json

    from heldout.datasets.base import ArraySplit
    from heldout.datasets.numpy_source import save_npz

    scores, train_images, train_labels, test_images, test_labels = data
    np.savez(tmp_path / "scores.npz", **scores)
    save_npz(
        tmp_path / "data.npz",
        {
            "train": ArraySplit(train_images, train_labels.astype(np.int64)),
            "test": ArraySplit(test_images, test_labels.astype(np.int64)),
        },
    )
    (tmp_path / "plan.json").write_text(json.dumps(run_plan()))
    completed = _run_plot_scores(tmp_path, f"--plan={tmp_path / 'plan.json'}")
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "cscore_bands.png",
        "cscore_bins.png",
        "examples.png",
        "histograms.png",
        "influence.png",
        "reliability.png",
    ]
    # The examples figure is 21 x 3 panels of 0.62 x 0.9 inches (+ margins) at 150 dpi.
    examples = matplotlib.image.imread(tmp_path / "figs" / "examples.png")
    assert examples.shape == (round(150 * (0.9 * 3 + 0.7)), round(150 * (0.62 * 21 + 1.2)), 4)
    # Not a plan: refused with the file named, before any figure is written.
    (tmp_path / "bad.json").write_text(json.dumps({"scores": [{"score": "cscore"}]}))
    (tmp_path / "figs" / "reliability.png").unlink()
    completed = _run_plot_scores(tmp_path, f"--plan={tmp_path / 'bad.json'}")
    assert completed.returncode == 2
    assert "bad.json: not a run plan" in completed.stderr
    assert not (tmp_path / "figs" / "reliability.png").exists()
