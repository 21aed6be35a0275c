"""Random runs for the influence tests, and influence by its plain definition to check
every backend against."""

import numpy as np

from heldout.release.aux_arrays import aux_from_predictions


def random_runs(num_runs, num_train, num_test, seed=0, p_in=0.6, p_correct=0.5, ties=False):
    """Runs with each training example in with probability `p_in` and each test example
    right with `p_correct`.

    Args:
      ties: make the second half of the training masks a copy of the first: few distinct
        (n_in, S) pairs, so many exactly equal influences.

    Returns:
      (runs, masks bool [R, N], tests bool [R, N_test]).
    """
    rng = np.random.default_rng(seed)
    masks = rng.random((num_runs, num_train)) < p_in
    tests = rng.random((num_runs, num_test)) < p_correct
    if ties:
        masks[:, num_train // 2 :] = masks[:, : num_train - num_train // 2]
    runs = [
        aux_from_predictions(m, rng.random(num_train) < 0.5, t, rng=rng)
        for m, t in zip(masks, tests, strict=True)
    ]
    return runs, masks, tests


def influence_by_definition(masks, tests):
    """P(t correct | j in) - P(t correct | j out), float64, NaN where undefined."""
    m, t = masks.astype(np.float64), tests.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (t.T @ m) / m.sum(0) - (t.T @ (1 - m)) / (1 - m).sum(0)
