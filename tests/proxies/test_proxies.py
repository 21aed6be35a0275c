"""heldout.proxies: the definitions against direct numpy formulas, on small data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from heldout.errors import UsageError
from heldout.proxies import confidence, kde, learning_speed, ranking
from heldout.proxies.compute import ORIENTED_NEGATIVE, oriented


def test_cbtl_and_relatives_from_a_hand_made_table():
    # 5 epochs x 6 examples; the expected values are worked out by hand.
    correct = np.array(
        [
            [1, 0, 0, 1, 0, 1],
            [1, 1, 0, 0, 0, 1],
            [1, 0, 0, 1, 0, 1],
            [1, 1, 0, 1, 1, 0],
            [1, 1, 0, 1, 1, 1],
        ],
        dtype=bool,
    )
    loss = np.arange(30, dtype=np.float64).reshape(5, 6) / 10
    out = learning_speed.learning_speed_proxies(correct, loss)
    np.testing.assert_array_equal(out["cbtl"], [5, 3, 0, 4, 2, 4])
    np.testing.assert_allclose(out["cumulative_loss"], loss.sum(0))
    # correct -> incorrect transitions: ex1 2->3, ex3 1->2, ex5 4->5 (0-based epochs 3->4).
    np.testing.assert_array_equal(out["forgetting_events"], [0, 1, 0, 1, 0, 1])
    # first epoch after which it stays correct (1-based); never at the end -> E + 1 = 6.
    np.testing.assert_array_equal(out["first_learned_epoch"], [1, 4, 6, 3, 4, 5])
    assert out["cbtl"].dtype == np.int64


def test_learning_speed_by_epoch_is_each_prefix():
    rng = np.random.default_rng(0)
    correct = rng.random((7, 50)) < 0.6
    loss = rng.random((7, 50))
    by_epoch = learning_speed.learning_speed_by_epoch(correct, loss)
    for e in range(7):
        direct = learning_speed.learning_speed_proxies(correct[: e + 1], loss[: e + 1])
        for key, table in by_epoch.items():
            np.testing.assert_array_equal(table[e], direct[key])
    np.testing.assert_array_equal(by_epoch["cbtl"][-1], correct.sum(0))


def test_softmax_statistics_against_direct_formulas():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 40, 10)).astype(np.float32) * 4
    labels = rng.integers(0, 10, 40)
    stats = confidence.softmax_statistics(logits, labels)
    p = np.exp(logits.astype(np.float64))
    p /= p.sum(-1, keepdims=True)
    p_label = p[:, np.arange(40), labels]
    np.testing.assert_allclose(stats["p_label"], p_label, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["loss"], -np.log(p_label), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["p_max"], p.max(-1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["entropy"], -(p * np.log(p)).sum(-1), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(stats["correct"], p.argmax(-1) == labels)
    final = confidence.confidence_proxies(p_label, p.max(-1), stats["entropy"])
    np.testing.assert_allclose(final["p_label"], p_label[-1])
    np.testing.assert_allclose(final["p_label_mean"], p_label.mean(0))
    by_epoch = confidence.confidence_by_epoch(p_label, p.max(-1), stats["entropy"])
    np.testing.assert_allclose(by_epoch["p_max_mean"][1], p.max(-1)[:2].mean(0))


def _direct_kde(x, labels):
    """All pairs, written out loop by loop (the definition, nothing shared with kde.py)."""
    n = len(labels)
    dist = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        dist[i, j] = np.sqrt(np.sum((x[i].astype(np.float64) - x[j]) ** 2))
    h = 0.5 * dist[~np.eye(n, dtype=bool)].mean()
    out = {k: np.zeros(n) for k in kde.KDE_VARIANTS}
    for j in range(n):
        for i in range(n):
            if i == j:
                continue
            k = np.exp(-(dist[i, j] ** 2) / h**2)
            same = labels[i] == labels[j]
            out["pm_label"][j] += (1.0 if same else -1.0) * k / n
            out["label"][j] += same * k / n
            out["unlabeled"][j] += k / n
    return out, h


def test_kde_equals_the_definition_over_all_pairs():
    rng = np.random.default_rng(2)
    x = rng.random((40, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    want, h_want = _direct_kde(x, labels)
    got, h = kde.kde_proxies(x, labels, 3)
    assert h == pytest.approx(h_want, rel=1e-6)
    assert kde.kde_bandwidth(x) == pytest.approx(h_want, rel=1e-6)
    for key in kde.KDE_VARIANTS:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("block", [5, 64, 300, 4096])
def test_tiled_kde_equals_the_direct_one(block):
    # Pixel-like data with exact duplicates (distance 0) and an odd size against the blocks.
    rng = np.random.default_rng(3)
    x = (rng.random((301, 28)) < 0.3).astype(np.float32) * rng.random((301, 28))
    x[10] = x[11]
    labels = rng.integers(0, 10, 301)
    want, h_want = kde.kde_direct(x, labels)
    got, h = kde.kde_proxies(x, labels, 10, block=block)
    assert h == pytest.approx(h_want, rel=1e-6)
    for key in kde.KDE_VARIANTS:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=1e-9)


def test_kde_refuses_what_it_cannot_compute():
    with pytest.raises(UsageError, match="at least 2"):
        kde.kde_proxies(np.zeros((1, 3)), np.zeros(1, int))
    with pytest.raises(UsageError, match="bandwidth"):
        kde.kde_proxies(np.ones((5, 3)), np.zeros(5, int))
    with pytest.raises(UsageError, match="labels"):
        kde.kde_proxies(np.random.rand(5, 3), np.zeros(4, int))


def _tau_b_direct(a, b):
    """Kendall's tau-b from its definition: (C - D) / sqrt((n0 - n1)(n0 - n2))."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            ties_a += da == 0
            ties_b += db == 0
            if da * db > 0:
                concordant += 1
            elif da * db < 0:
                discordant += 1
    n0 = n * (n - 1) / 2
    return (concordant - discordant) / np.sqrt((n0 - ties_a) * (n0 - ties_b))


def test_kendall_tau_b_with_ties_on_both_sides():
    rng = np.random.default_rng(4)
    cbtl = rng.integers(0, 4, 60).astype(float)  # few distinct values, as CBTL
    cscore = np.round(rng.random(60) + 0.3 * cbtl, 1)  # ties too
    tau_b = _tau_b_direct(cbtl, cscore)
    assert ranking.kendall_tau_b(cbtl, cscore) == pytest.approx(tau_b)
    # tau-a (ties not corrected) differs by far with these many ties: the variant matters.
    from scipy import stats

    tau_c = stats.kendalltau(cbtl, cscore, variant="c").statistic
    assert abs(tau_c - tau_b) > 1e-3


def test_spearman_uses_average_ranks_and_skips_nan():
    a = np.array([1.0, 2.0, 2.0, 3.0, np.nan, 5.0])
    b = np.array([1.0, 3.0, 2.0, 4.0, 0.0, np.nan])
    ra = np.array([1.0, 2.5, 2.5, 4.0])
    rb = np.array([1.0, 3.0, 2.0, 4.0])
    want = np.corrcoef(ra, rb)[0, 1]
    assert ranking.spearman_rho(a, b) == pytest.approx(want)
    assert np.isnan(ranking.spearman_rho(a[:2], b[:2]))


def test_orientation_makes_higher_mean_regular():
    values = np.array([0.1, 0.5])
    for name in ORIENTED_NEGATIVE:
        np.testing.assert_array_equal(oriented(name, values), -values)
    np.testing.assert_array_equal(oriented("cbtl", values), values)


def test_check_reference_names_the_file_and_what_disagrees(tmp_path):
    from heldout._core.atomic import write_npz_atomic
    from heldout.errors import ScoresFileError
    from heldout.proxies import reference

    labels = np.arange(20) % 10
    path = tmp_path / "scores.npz"
    write_npz_atomic(path, {"cscore": np.linspace(0, 1, 20), "experiment": np.asarray("e")})
    ref = reference.load_reference(path)
    assert ref.kind == "scores" and ref.experiment == "e" and ref.labels is None
    # The full-length reference is sliced to the proxies' first examples.
    np.testing.assert_array_equal(
        reference.check_reference(ref, 20, 8, labels[:8], labels[:8]), np.linspace(0, 1, 20)[:8]
    )
    with pytest.raises(ScoresFileError, match=f"{path}.*20 C-scores.*21 examples"):
        reference.check_reference(ref, 21, 21, labels, labels)
    # The reference experiment trained on other (e.g. otherly corrupted) labels.
    other = labels.copy()
    other[[3, 7]] = 0
    with pytest.raises(ScoresFileError, match=f"{path}.*disagree.*at 2 of 20 positions"):
        reference.check_reference(ref, 20, 20, labels, labels, reference_labels=other)
    published = tmp_path / "published.npz"
    write_npz_atomic(published, {"scores": np.linspace(0, 1, 20), "labels": labels[::-1]})
    ref = reference.load_reference(published)
    assert ref.kind == "published"
    with pytest.raises(ScoresFileError, match=f"{published}.*labels disagree"):
        reference.check_reference(ref, 20, 20, labels, labels)


def test_proxy_options_refuse_what_cannot_be_recorded():
    from heldout.proxies import ProxyOptions
    from heldout.training import Recipe

    with pytest.raises(UsageError, match="unknown proxies"):
        ProxyOptions(proxies=("cbtl",))
    with pytest.raises(UsageError, match="mlp only"):
        ProxyOptions(recipe=Recipe(arch="small_inception"))
    with pytest.raises(UsageError, match="^num_seeds must be at least 1, got 0$"):
        ProxyOptions(num_seeds=0)
    with pytest.raises(UsageError, match="^num_train must be at least 2, got 1$"):
        ProxyOptions(num_train=1)


def test_proxy_options_train_with_the_recipe_as_an_experiment_would():
    from heldout.proxies import ProxyOptions
    from heldout.training import Recipe, TrainingConfig

    recipe = Recipe(epochs=3, batch_size=64, learning_rate=0.05, seed=7, mlp_hidden_sizes=[32])
    config = ProxyOptions(recipe=recipe, num_seeds=2).training_config()
    assert config == TrainingConfig(
        epochs=3,
        batch_size=64,
        learning_rate=0.05,
        seed=7,
        mlp_hidden_sizes=(32,),
        subset_ratios=(1.0,),
        runs_per_ratio=2,
        models_per_step=2,
    )
    assert config.recipe == recipe
    # A config given as the recipe is taken for its recipe part alone.
    assert ProxyOptions(recipe=config).recipe == recipe
    recorded = ProxyOptions(recipe=recipe).as_json()
    assert recorded["mlp_hidden_sizes"] == [32] and recorded["epochs"] == 3
    assert recorded["proxies"] == list(ProxyOptions().proxies)
