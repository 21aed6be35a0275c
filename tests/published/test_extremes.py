"""Overlaps of the lowest and highest scored examples when the scores are full of ties."""

import numpy as np
import pytest
from tool_runs import run_script

from heldout.published import compare


def _cscores_like_fashion_mnist(rng, n=60_000, ones=46_980, zeros=3_570):
    """C-scores as 32 runs give them: k/32 fractions, most exactly 1.0, many exactly 0.0."""
    middle = rng.integers(1, 32, n - ones - zeros) / 32
    return rng.permutation(np.concatenate([np.ones(ones), np.zeros(zeros), middle]))


def test_a_shuffled_reference_overlaps_at_chance():
    """Ties broken by index made a random reference agree 77 % in the highest 1 %."""
    rng = np.random.default_rng(0)
    ours = _cscores_like_fashion_mnist(rng)
    reference = rng.permutation(ours)
    for overlap in compare.extreme_overlaps(ours, reference):
        assert abs(overlap.share - overlap.fraction) < 0.02, overlap
        assert overlap.chance_share == pytest.approx(overlap.fraction)
        assert abs(overlap.share - overlap.chance_share) < 3 * overlap.chance_share_sd + 1e-9


def test_a_cut_inside_a_tied_block_counts_it_fractionally():
    values = np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    overlaps = {(o.side, o.fraction): o for o in compare.extreme_overlaps(values, values, (0.2,))}
    highest = overlaps[("highest", 0.2)]  # 2 of the 4 at 1.0 on each side: 4 * 1/2 * 1/2
    assert (highest.size, highest.overlap, highest.tied_ours, highest.cut_ours) == (2, 1.0, 4, 1.0)
    lowest = overlaps[("lowest", 0.2)]  # distinct values: no ties at the cut
    assert (lowest.overlap, lowest.tied_ours, lowest.tied_reference) == (2.0, 0, 0)


def test_chance_level_and_its_sd_match_random_permutations():
    rng = np.random.default_rng(1)
    ours = rng.integers(0, 5, 300) / 4  # five values: every cut splits a block
    reference = rng.integers(0, 3, 300) / 2
    expected = {(o.side, o.fraction): o for o in compare.extreme_overlaps(ours, reference, (0.1,))}
    draws = {key: [] for key in expected}
    for _ in range(3000):
        for o in compare.extreme_overlaps(ours, rng.permutation(reference), (0.1,)):
            draws[(o.side, o.fraction)].append(o.overlap)
    for key, overlap in expected.items():
        standard_error = overlap.chance_sd / np.sqrt(len(draws[key]))
        assert np.mean(draws[key]) == pytest.approx(overlap.chance, abs=4 * standard_error)
        assert np.std(draws[key]) == pytest.approx(overlap.chance_sd, rel=0.1)
        assert overlap.chance == pytest.approx(overlap.size**2 / overlap.num_compared)


def test_cli_prints_the_ties_at_the_cut_and_the_chance_level(tmp_path):
    rng = np.random.default_rng(0)
    ours = _cscores_like_fashion_mnist(rng)
    np.savez(tmp_path / "ours.npz", cscore=ours)
    np.savez(tmp_path / "shuffled.npz", cscore=rng.permutation(ours))
    result = run_script(
        "tools/compare_scores.py",
        f"--scores_file={tmp_path / 'ours.npz'}",
        f"--reference={tmp_path / 'shuffled.npz'}",
    )
    assert result.returncode == 0, result.stderr
    highest = next(line for line in result.stdout.splitlines() if "highest 1%" in line)
    share = float(highest.split("(")[1].split("%")[0])
    assert abs(share - 1.0) < 2, highest
    assert "chance 1.0%" in highest
    assert "ties at the cut: ours 46980 at 1, reference 46980 at 1" in highest
