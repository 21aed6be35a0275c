"""Comparing our scores with published ones: statistics, loaders and the command line."""

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from tool_runs import run_script

from heldout._core.ranks import average_ranks
from heldout.errors import CompareError
from heldout.published import PublishedPairs, compare, load_influence_pairs

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_average_ranks_averages_ties():
    np.testing.assert_array_equal(average_ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])


def test_agreement_skips_nans_and_is_rank_based():
    reference = np.array([0.1, 0.5, 0.9, np.nan, 0.3])
    ours = reference**3  # monotone: Spearman 1, Pearson below 1
    ours[0] = np.nan
    agreement = compare.compare_scores(ours, reference)
    assert (agreement.num_examples, agreement.num_compared) == (5, 3)
    assert agreement.spearman == pytest.approx(1.0)
    assert agreement.pearson < 0.999
    assert agreement.max_abs_difference == pytest.approx(0.5 - 0.125)


def test_reversed_order_is_anticorrelated():
    values = np.linspace(0, 1, 11)
    assert compare.compare_scores(values, values[::-1]).spearman == pytest.approx(-1.0)


def test_length_mismatch_is_an_error():
    with pytest.raises(CompareError, match="equally long"):
        compare.compare_scores(np.zeros(3), np.zeros(4))


def _pairs_file(path, **overrides):
    arrays = {
        "tr_idx": np.array([0, 2]),
        "tt_idx": np.array([1, 0]),
        "infl": np.array([0.2, 0.3]),
        "mem": np.array([0.5, 0.6]),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_pair_recovery_looks_up_test_row_train_column(tmp_path):
    pairs = load_influence_pairs(_pairs_file(tmp_path / "p.npz"))
    influence = np.zeros((2, 3), np.float32)
    influence[1, 0] = 0.25  # pair (train 0, test 1) recovered
    influence[0, 2] = np.nan  # pair (train 2, test 0) undefined here
    recovery = compare.pair_recovery(pairs, influence, threshold=0.15)
    assert (recovery.num_pairs, recovery.num_defined, recovery.num_above_threshold) == (2, 1, 1)
    assert recovery.mean_abs_difference == pytest.approx(0.05)


def test_pair_file_errors_name_the_file(tmp_path):
    path = _pairs_file(tmp_path / "p.npz", mem=None)
    with pytest.raises(CompareError, match=r"p.npz: missing arrays \['mem'\]"):
        load_influence_pairs(path)
    pairs = load_influence_pairs(_pairs_file(tmp_path / "q.npz"))
    with pytest.raises(
        CompareError,
        match=r"q.npz: 2 pair\(s\) lie outside .* 1 test x 1 training .* = \[\(0, 1\), \(2, 0\)\]",
    ):
        compare.pair_recovery(pairs, np.zeros((1, 1), np.float32))


def test_negative_pair_indices_are_refused_not_wrapped_around(tmp_path):
    """Index -1 would silently look up the last row/column of the influence matrix."""
    path = _pairs_file(tmp_path / "neg.npz", tr_idx=np.array([0, -1]), tt_idx=np.array([1, 0]))
    with pytest.raises(
        CompareError, match=r"neg.npz: tr_idx holds 1 negative index.*\[-1\] at pair"
    ):
        load_influence_pairs(path)
    with pytest.raises(CompareError, match=r"<memory>: tt_idx holds 2 negative"):
        PublishedPairs(np.array([0, 1]), np.array([-3, -1]), np.zeros(2), np.zeros(2))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tr_idx": np.array([0.0, 2.0])}, "tr_idx has dtype float64; expected integer"),
        ({"tt_idx": np.array([1, 0, 2])}, "1-D and equally long"),
        ({"infl": np.array(["a", "b"])}, "infl has dtype <U1; expected numbers"),
    ],
)
def test_pair_files_with_wrong_dtypes_or_lengths(tmp_path, overrides, message):
    with pytest.raises(CompareError, match=message):
        load_influence_pairs(_pairs_file(tmp_path / "p.npz", **overrides))


def test_inputs_that_are_not_number_arrays(tmp_path):
    pairs = load_influence_pairs(_pairs_file(tmp_path / "p.npz"))
    with pytest.raises(CompareError, match="real \\[test, train\\] matrix"):
        compare.pair_recovery(pairs, np.zeros(3))
    with pytest.raises(CompareError, match="our scores have dtype <U1"):
        compare.compare_scores(np.array(["a", "b"]), np.zeros(2))


@pytest.mark.skipif(
    not (SHARED_DATA / "cifar100_high_infl_pairs_infl0.15_mem0.25.npz").is_file(),
    reason="the published CIFAR-100 pairs file is not in ../shared/data",
)
def test_published_pair_files_load():
    pairs = load_influence_pairs(SHARED_DATA / "cifar100_high_infl_pairs_infl0.15_mem0.25.npz")
    assert pairs.train_index.size == 1015
    assert np.all(pairs.influence >= 0.15) and np.all(pairs.memorization >= 0.25)


def _run(*args):
    return run_script("tools/compare_scores.py", *args)


def test_cli_compares_with_a_published_style_file_and_pairs(tmp_path):
    rng = np.random.default_rng(0)
    cscore = rng.random(50)
    influence = rng.random((4, 50)).astype(np.float32)
    np.savez(tmp_path / "ours.npz", cscore=cscore, influence=influence)
    np.savez(tmp_path / "published.npz", scores=cscore, labels=np.zeros(50, np.int64))
    _pairs_file(tmp_path / "pairs.npz")
    result = _run(
        f"--scores_file={tmp_path / 'ours.npz'}",
        f"--reference={tmp_path / 'published.npz'}",
        f"--pairs={tmp_path / 'pairs.npz'}",
    )
    assert result.returncode == 0, result.stderr
    assert "cscore: 50 of 50 examples compared" in result.stdout
    assert "Spearman 1.0000" in result.stdout
    assert "influence pairs: 2 published, 2 defined here" in result.stdout


def _one_error_line(result, path) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"compare_scores: error: {path}:"), lines[0]
    return lines[0]


def test_cli_truncated_and_empty_files_are_one_line(tmp_path):
    np.savez(tmp_path / "ours.npz", cscore=np.zeros(3), influence=np.zeros((2, 3)))
    whole = (tmp_path / "ours.npz").read_bytes()
    truncated, empty = tmp_path / "truncated.npz", tmp_path / "empty.npz"
    truncated.write_bytes(whole[: len(whole) // 2])
    empty.write_bytes(b"")
    pairs = _pairs_file(tmp_path / "pairs.npz")
    ours = tmp_path / "ours.npz"
    for bad, message in ((truncated, "cannot read"), (empty, "empty")):
        for args in (
            (f"--scores_file={bad}", f"--reference={ours}"),
            (f"--scores_file={ours}", f"--reference={bad}"),
            (f"--scores_file={ours}", f"--pairs={bad}"),
        ):
            assert message in _one_error_line(_run(*args), bad)
    negative = _pairs_file(tmp_path / "negative.npz", tt_idx=np.array([1, -2]))
    line = _one_error_line(_run(f"--scores_file={ours}", f"--pairs={negative}"), negative)
    assert "negative" in line and "[-2]" in line
    assert pairs.is_file()


def test_cli_reports_unusable_input(tmp_path):
    np.savez(tmp_path / "ours.npz", cscore=np.zeros(3))
    result = _run(
        f"--scores_file={tmp_path / 'ours.npz'}",
        f"--reference={tmp_path / 'ours.npz'}",
        "--key=memorization",
    )
    assert result.returncode == 2
    assert "ours.npz: missing arrays ['memorization']" in result.stderr
    result = _run(f"--scores_file={tmp_path / 'ours.npz'}")
    assert result.returncode == 2 and "pass --scores_file and --reference" in result.stderr


def _tau_b_by_pairs(a, b) -> float:
    """Kendall's tau-b from its definition, over all pairs (for small inputs)."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    n0 = concordant + discordant
    return (concordant - discordant) / np.sqrt((n0 + ties_a) * (n0 + ties_b))


def test_kendall_tau_b_with_ties_matches_its_definition():
    pytest.importorskip("scipy", reason="Kendall's tau-b uses scipy.stats.kendalltau")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 40).astype(float)  # many ties
    b = a + rng.integers(0, 3, 40)
    agreement = compare.compare_scores(a, b)
    assert agreement.kendall_tau_b == pytest.approx(_tau_b_by_pairs(a, b))


def test_extreme_overlaps_count_the_shared_lowest_and_highest():
    reference = np.arange(1000.0)
    ours = reference.copy()
    ours[:10], ours[10:20] = reference[10:20], reference[:10]  # lowest 1 % swapped out
    ours[500] = np.nan  # compared over 999
    overlaps = {(o.side, o.fraction): o for o in compare.extreme_overlaps(ours, reference)}
    lowest1 = overlaps[("lowest", 0.01)]
    assert (lowest1.size, lowest1.overlap, lowest1.num_compared) == (10, 0, 999)
    assert overlaps[("lowest", 0.1)].overlap == 100
    assert overlaps[("highest", 0.01)].share == 1.0


def test_per_class_rho():
    reference = np.tile(np.arange(10.0), 2)
    labels = np.repeat([0, 1], 10)
    ours = reference.copy()
    ours[10:] = ours[10:][::-1]  # class 1 ranked backwards
    classes = compare.per_class_agreement(ours, reference, labels)
    assert [(c.label, c.num_compared) for c in classes] == [(0, 10), (1, 10)]
    assert classes[0].spearman == pytest.approx(1.0)
    assert classes[1].spearman == pytest.approx(-1.0)
    with pytest.raises(CompareError, match="labels must be integers"):
        compare.per_class_agreement(ours, reference, labels[:5])


def test_pair_precision_and_recall():
    ours = PublishedPairs(np.array([0, 1, 2]), np.array([0, 0, 5]), np.zeros(3), np.zeros(3))
    published = PublishedPairs(np.array([1, 2]), np.array([0, 4]), np.zeros(2), np.zeros(2))
    agreement = compare.pair_set_agreement(ours, published)
    assert (agreement.num_common, agreement.precision, agreement.recall) == (1, 1 / 3, 0.5)


def test_cli_prints_every_statistic_with_its_counts_and_draws_the_figure(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    reference = rng.random(200)
    ours = reference + rng.normal(0, 0.05, 200)
    influence = np.zeros((3, 200), np.float32)
    influence[0, 0], influence[1, 2] = 0.5, 0.3  # ours: (0, 0) and (2, 1)
    memorization = np.full(200, 0.5)
    np.savez(tmp_path / "ours.npz", cscore=ours, influence=influence, memorization=memorization)
    np.savez(tmp_path / "published.npz", scores=reference, labels=labels)
    _pairs_file(tmp_path / "pairs.npz", tr_idx=np.array([0, 5]), tt_idx=np.array([0, 2]))
    out = tmp_path / "figures"
    result = _run(
        f"--scores_file={tmp_path / 'ours.npz'}",
        f"--reference={tmp_path / 'published.npz'}",
        f"--pairs={tmp_path / 'pairs.npz'}",
        f"--output_dir={out}",
        "--formats=png",
    )
    assert result.returncode == 0, result.stderr
    assert "cscore: 200 of 200 examples compared" in result.stdout
    tau = compare.compare_scores(ours, reference).kendall_tau_b
    assert f"Kendall tau-b {tau:.4f}" in result.stdout and 0.8 < tau < 0.95
    assert "lowest 1%: " in result.stdout and "of 2 examples in both" in result.stdout
    assert "highest 10%: " in result.stdout and "of 20 examples in both" in result.stdout
    assert "per-class Spearman over 4 classes" in result.stdout
    assert (
        "our pairs (influence >= 0.15, memorization >= 0.25): 2; 1 also published: "
        "precision 0.500, recall 0.500 (of 2 published)" in result.stdout
    )
    figure = matplotlib.image.imread(out / "comparison.png")
    assert figure.shape[0] > 300 and figure.shape[1] > 2 * figure.shape[0] * 0.9
