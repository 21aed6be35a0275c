"""The influence figure's q-values are the `influence_pairs` selection's; with too few runs
it says that no pair survives and orders the picks by their lower interval limit."""

from __future__ import annotations

import re

import numpy as np
import pytest

import heldout.testing as synthetic
from heldout.plots import draw_figures
from heldout.plots.influence import choose_influence_rows, influence_topk
from heldout.plots.influence_evidence import (
    InfluenceEvidence,
    influence_evidence_for,
    influence_picks,
    pairs_from_scores,
)
from heldout.scores.experiment import score_experiment
from heldout.scores.request import ScoreRequest
from heldout.scores.uncertainty import q_values_of
from tests.plots.figure_data import figure_texts

NUM_TRAIN, NUM_TEST, MIN_RUNS, SHOWN = 200, 40, 5, 4


def _experiment(folder, runs: int, ratio: float, topk: int):
    spec = synthetic.SyntheticSpec(
        num_train=NUM_TRAIN,
        num_test=NUM_TEST,
        subset_ratios=(ratio,),
        runs_per_ratio=runs,
        num_influence_pairs=6,
        seed=2,
    )
    experiment = synthetic.write_synthetic_experiment(folder, spec)
    request = ScoreRequest(
        ("cscore", "influence", "influence_pairs"),
        subset_ratio=ratio,
        influence_topk=topk,
        confidence=0.95,
    )
    return spec, experiment, score_experiment(experiment, request).arrays()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """120 runs: the planted pairs survive FDR control, the others mostly do not."""
    return _experiment(tmp_path_factory.mktemp("planted") / "e", 120, 0.7, topk=8)


@pytest.fixture(scope="module")
def few_runs(tmp_path_factory):
    """12 runs at ratio 0.5: no pair can survive (the smallest p-value is about 1/924, and
    Benjamini-Hochberg needs 0.05 / 8000 for the first of 8000 tests); a dense matrix."""
    return _experiment(tmp_path_factory.mktemp("few") / "e", 12, 0.5, topk=0)


def _images():
    rng = np.random.default_rng(0)
    train_labels, test_labels = np.arange(NUM_TRAIN) % 4, np.arange(NUM_TEST) % 4
    train_images = rng.integers(0, 256, (NUM_TRAIN, 28, 28, 1), dtype=np.uint8)
    test_images = rng.integers(0, 256, (NUM_TEST, 28, 28, 1), dtype=np.uint8)
    return train_images, train_labels, test_images, test_labels


def _without_pairs(arrays):
    return {key: value for key, value in arrays.items() if not key.startswith("pairs_")}


def _pick_panels(figure, rows: int):
    """Per row, the titles and greyed state of the 4 pick panels."""
    per_row = 1 + SHOWN + 5
    for row in range(rows):
        yield figure.axes[row * per_row + 1 : row * per_row + 1 + SHOWN]


def test_figure_q_values_are_the_pairs_selections(planted):
    spec, experiment, arrays = planted
    train_images, train_labels, test_images, test_labels = _images()
    scores = _without_pairs(arrays)  # as `heldout default` writes it: no pairs in the file
    evidence = influence_evidence_for(scores, experiment)  # from the runs, by the accumulator
    selection = pairs_from_scores(arrays)  # what --scores=influence_pairs wrote
    for name in ("test_index", "train_index", "q_value", "p_value"):
        np.testing.assert_array_equal(getattr(evidence.pairs, name), getattr(selection, name))
    assert evidence.pairs.num_tests == selection.num_tests
    truth = synthetic.planted_structure(spec)
    planted_q = q_values_of(selection, truth.pair_test, truth.pair_train)
    assert np.isfinite(planted_q).sum() >= 4  # most planted pairs survive

    index, value = influence_topk(scores, min_runs=MIN_RUNS)
    picks = influence_picks(scores, index, value, evidence, MIN_RUNS)
    assert not picks.by_lower_limit and picks.lower is None  # some survive: by estimate
    rows = np.broadcast_to(np.arange(NUM_TEST)[:, None], index.shape)
    selected_q = q_values_of(selection, rows, index)
    family_q = evidence.runs.family_q_values(rows, index)  # the pairs not selected too
    chosen = np.isfinite(selected_q)
    np.testing.assert_array_equal(picks.q_value[chosen], selected_q[chosen])
    np.testing.assert_array_equal(picks.q_value[~chosen], family_q[~chosen])
    assert np.all(picks.q_value[~chosen & (index >= 0)] > 0.05)
    figure = draw_figures(
        scores,
        train_images,
        train_labels,
        test_images,
        test_labels,
        influence_evidence=evidence,
    )["influence"]
    texts = figure_texts(figure)
    survivors = selection.q_value.size
    assert any(f"{survivors} pairs survive FDR 0.05" in t for t in texts)
    shown = choose_influence_rows(
        picks.index, picks.value, test_labels, train_labels, 6, picks.q_value[:, :SHOWN] <= 0.05
    )
    seen = {"survives": 0, "greyed": 0}
    for t, panels in zip(shown, _pick_panels(figure, 6), strict=True):
        for k, ax in enumerate(panels):
            q = picks.q_value[t, picks.index[t] == picks.index[t, k]][0]
            assert f"q {q:.3g}" in ax.get_title()
            if np.isfinite(q_values_of(selection, t, picks.index[t, k])):
                assert ax.images[0].get_alpha() is None
                seen["survives"] += 1
            else:
                assert ax.images[0].get_alpha() < 1
                seen["greyed"] += 1
    assert seen["survives"] >= 4 and seen["greyed"] > 0
    # The file's own pairs give the same figure without any evidence passed, except that
    # without the runs a pair not selected only shows "q > 0.05".
    again = draw_figures(arrays, train_images, train_labels, test_images, test_labels)

    def above_fdr(title):
        return re.sub(
            r"q (?!> )[\d.e+-]+", lambda m: m[0] if float(m[0][2:]) <= 0.05 else "q > 0.05", title
        )

    assert [ax.get_title() for ax in again["influence"].axes] == [
        above_fdr(ax.get_title()) for ax in figure.axes
    ]


def test_with_too_few_runs_the_title_says_none_survive_and_picks_go_by_lower_limit(few_runs):
    _, experiment, arrays = few_runs
    train_images, train_labels, test_images, test_labels = _images()
    scores = _without_pairs(arrays)
    evidence = influence_evidence_for(scores, experiment)
    assert evidence.pairs.q_value.size == 0
    figure = draw_figures(
        scores, train_images, train_labels, test_images, test_labels, influence_evidence=evidence
    )["influence"]
    texts = figure_texts(figure)
    assert any(t.startswith("No pair survives FDR 0.05") for t in texts)
    assert any("ordered by the lower limit" in t for t in texts)
    assert any("influence from 12 runs at subset ratio 0.5 (40 test examples" in t for t in texts)
    for panels in _pick_panels(figure, 6):
        lows = [float(re.search(r"low (-?[\d.]+)", ax.get_title()).group(1)) for ax in panels]
        assert lows == sorted(lows, reverse=True)
        qs = [float(re.search(r"q ([\d.e+-]+)", ax.get_title()).group(1)) for ax in panels]
        assert all(q > 0.05 for q in qs)
        assert all(ax.images[0].get_alpha() < 1 for ax in panels)

    index, value = influence_topk(scores, min_runs=MIN_RUNS)
    picks = influence_picks(scores, index, value, evidence, MIN_RUNS)
    assert picks.by_lower_limit
    assert np.any(picks.index[:, 0] != index[:, 0])  # the order by estimate is not kept
    # The limits are those `heldout scores --confidence` writes beside the same pairs.
    from_file = influence_picks(scores, index, value, InfluenceEvidence(evidence.pairs), MIN_RUNS)
    np.testing.assert_array_equal(from_file.index, picks.index)
    np.testing.assert_array_equal(from_file.lower, picks.lower)


def test_heldout_plot_reads_the_runs_for_the_q_values(tmp_path, few_runs):
    """`heldout plot --experiment_dir` on a file without pairs: the verdict in the figure."""
    import subprocess
    import sys

    import matplotlib.image

    from heldout.datasets.base import ArraySplit
    from heldout.datasets.numpy_source import save_npz

    _, experiment, arrays = few_runs
    train_images, train_labels, test_images, test_labels = _images()
    np.savez(tmp_path / "scores.npz", **_without_pairs(arrays))
    save_npz(
        tmp_path / "data.npz",
        {
            "train": ArraySplit(train_images, train_labels.astype(np.int64)),
            "test": ArraySplit(test_images, test_labels.astype(np.int64)),
        },
    )
    argv = [
        sys.executable,
        "-c",
        "import sys; from heldout.cli import main; sys.argv[0] = 'heldout'; sys.exit(main.run())",
        "plot",
        f"--scores_file={tmp_path / 'scores.npz'}",
        f"--experiment_dir={experiment.path}",
        "--dataset=npz",
        f"--data_dir={tmp_path / 'data.npz'}",
        f"--output_dir={tmp_path / 'figs'}",
        "--formats=png",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # The same figure drawn here, with the evidence read from the same runs, carries the
    # verdict; the command drew it with the evidence when its height matches (the
    # verdict adds two lines above the note).
    evidence = influence_evidence_for(_without_pairs(arrays), experiment)
    figure = draw_figures(
        _without_pairs(arrays),
        train_images,
        train_labels,
        test_images,
        test_labels,
        influence_evidence=evidence,
    )["influence"]
    without = draw_figures(
        _without_pairs(arrays), train_images, train_labels, test_images, test_labels
    )["influence"]
    assert without.get_figheight() != figure.get_figheight()
    written = matplotlib.image.imread(tmp_path / "figs" / "influence.png")
    assert written.shape[0] == round(figure.get_figheight() * 150)
