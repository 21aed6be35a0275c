"""The scores file as a CSV table (`heldout.scores.table`): every array it shows reads
back exactly, NaN as an empty cell, counts beside every estimate, every column described."""

import numpy as np
import pytest

from heldout.errors import ScoresError
from heldout.scores.experiment import score_experiment
from heldout.scores.file import load_scores, save_scores
from heldout.scores.request import ScoreRequest
from heldout.scores.table import (
    load_score_table,
    proxy_columns,
    save_score_table,
    score_table,
)
from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment

N = 120


@pytest.fixture(scope="module")
def scores_arrays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    spec = SyntheticSpec(num_train=N, num_test=30, subset_ratios=(0.3, 0.7), runs_per_ratio=6)
    experiment = write_synthetic_experiment(folder / "synthetic", spec)
    result = score_experiment(experiment, ScoreRequest(confidence=0.95))
    save_scores(folder / "scores.npz", result.arrays())
    return load_scores(folder / "scores.npz")


@pytest.fixture
def written(scores_arrays, tmp_path):
    labels = np.arange(N) % 10
    columns = score_table(scores_arrays, labels=labels, original_index=np.arange(N)[::-1])
    path = tmp_path / "scores.csv"
    save_score_table(path, columns, title="a test table")
    return path, columns


def test_the_csv_round_trips_the_scores_files_arrays(scores_arrays, written):
    path, _ = written
    got = load_score_table(path)
    for key in (
        "cscore",
        "cscore_ci_low",
        "cscore_ci_high",
        "cscore_ratio_count",
        "memorization",
        "memorization_ci_low",
        "memorization_ci_high",
        "memorization_stderr",
    ):
        np.testing.assert_array_equal(got[key], scores_arrays[key], err_msg=key)
    for row, ratio in enumerate(("0.3", "0.7")):
        np.testing.assert_array_equal(
            got[f"cscore_at_{ratio}"], scores_arrays["cscore_by_ratio"][row]
        )
        for side in ("low", "high"):
            np.testing.assert_array_equal(
                got[f"cscore_at_{ratio}_ci_{side}"],
                scores_arrays[f"cscore_by_ratio_ci_{side}"][row],
            )
    np.testing.assert_array_equal(got["index"], np.arange(N))
    np.testing.assert_array_equal(got["original_index"], np.arange(N)[::-1])
    np.testing.assert_array_equal(got["label"], np.arange(N) % 10)
    # 6 runs at 0.7: some examples were never held out; their cells are empty.
    never = np.isnan(scores_arrays["cscore_by_ratio"][1])
    assert never.any()
    text = path.read_text().splitlines()
    names = next(line for line in text if not line.startswith("#")).split(",")
    rows = [line.split(",") for line in text if not line.startswith("#")][1:]
    column = names.index("cscore_at_0.7")
    assert all((rows[i][column] == "") == never[i] for i in range(N))


def test_counts_columns_match_the_files_counts(scores_arrays, written):
    got = load_score_table(written[0])
    for key in ("memorization_count_in", "memorization_count_out"):
        np.testing.assert_array_equal(got[key], scores_arrays[key])
    for row, ratio in enumerate(("0.3", "0.7")):
        np.testing.assert_array_equal(
            got[f"cscore_at_{ratio}_count_out"], scores_arrays["cscore_count_out_by_ratio"][row]
        )
    text = written[0].read_text()
    assert "\n0,119,0," in text  # integers stay integers: index, original index, label


def test_the_header_says_what_every_column_is(written):
    path, columns = written
    lines = path.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert comments[0] == "# a test table"
    header = lines[len(comments)].split(",")
    assert header == [column.name for column in columns]
    for name in header:
        (line,) = [c for c in comments if c.startswith(f"# {name}: ")]
        assert len(line) > len(f"# {name}: ") + 5
    assert any("95% interval" in c for c in comments)
    assert len(lines) == len(comments) + 1 + N


def test_proxies_are_placed_by_their_index_and_lengths_are_checked(scores_arrays):
    proxies = {
        "index": np.arange(0, N, 2),
        "labels": np.zeros(N // 2, np.int64),
        "cbtl": np.arange(N // 2, dtype=np.float64),
        "spearman_by_epoch_cbtl": np.zeros(3),
    }
    (column,) = proxy_columns(proxies, N)
    assert column.name == "proxy_cbtl"
    np.testing.assert_array_equal(column.values[::2], np.arange(N // 2))
    assert np.isnan(column.values[1::2]).all()
    with pytest.raises(ScoresError, match="different dataset or order"):
        score_table(scores_arrays, labels=np.zeros(N + 1))
    with pytest.raises(ScoresError, match="no per-example score"):
        score_table({"subset_ratios": np.array([0.5])})
