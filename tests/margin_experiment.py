"""A tiny experiment whose runs carry `outputs.npz` margins that follow a planted linear
datamodel: the input of the ground-truth export tests (real aux arrays, real outputs files,
written by the toolkit's own writers)."""

from __future__ import annotations

import numpy as np


def planted_tau(num_test: int = 12, num_train: int = 40, seed: int = 1) -> np.ndarray:
    """float32 [num_test, num_train]: a few positive entries per row, column 0 for every row."""
    rng = np.random.default_rng(seed)
    tau = (rng.random((num_test, num_train)) < 0.15) * rng.uniform(0.2, 1.0, (num_test, num_train))
    tau[:, 0] = 0.5
    return tau.astype(np.float32)


def _subset(rng, num_train: int, ratio: float) -> np.ndarray:
    """A bool mask of round(ratio * n) - 1, + 0 or + 1 examples, drawn without replacement."""
    size = int(round(ratio * num_train)) + int(rng.integers(-1, 2))
    mask = np.zeros(num_train, dtype=bool)
    mask[rng.choice(num_train, size, replace=False)] = True
    return mask


def write_margin_experiment(root, tau, runs=40, ratio=0.5, noise=0.05, seed=0, extra_ratio=None):
    """Runs whose test logit margin is mask @ tau.T - tau.sum / 2 + noise. Two classes, label
    1, logits (0, phi): phi is then the logit margin and the hinge margin alike, and
    correctness is phi > 0, as outputs files must agree with the aux arrays. Subset sizes
    differ by up to one example between runs (within the ratio check's rounding).

    Returns:
      `root`.
    """
    from heldout.release import layout as release
    from heldout.release.aux_arrays import aux_from_predictions
    from heldout.release.outputs import save_run_outputs

    rng = np.random.default_rng(seed)
    num_test, num_train = tau.shape
    labels = {"train": np.ones(num_train, np.int64), "test": np.ones(num_test, np.int64)}
    for run_id in range(runs):
        mask = _subset(rng, num_train, ratio)
        phi = {
            "test": mask @ tau.T - 0.5 * tau.sum(axis=1) + rng.normal(0, noise, num_test),
            "train": rng.normal(0, 1, num_train),
        }
        logits = {s: np.stack([np.zeros_like(v), v], axis=1) for s, v in phi.items()}
        aux = aux_from_predictions(mask, phi["train"] > 0, phi["test"] > 0, rng=rng)
        run = release.write_run(root, ratio, run_id, aux)
        save_run_outputs(run.path, ratio, run_id, aux, logits, labels)
    if extra_ratio is not None:  # runs of another ratio, with aux arrays only
        for run_id in range(3):
            mask = _subset(rng, num_train, extra_ratio)
            aux = aux_from_predictions(
                mask, rng.random(num_train) < 0.5, rng.random(num_test) < 0.5, rng=rng
            )
            release.write_run(root, extra_ratio, run_id, aux)
    return root
