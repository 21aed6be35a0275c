"""What each run trains on, and in which order: subsets, random streams, schedule.

Everything a run draws derives from `(seed, subset_ratio, run_id)` only, never from which
other runs it was trained with, so the same seed gives the same runs whichever runs were
resumed, grouped together, or trained by another process. Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

from heldout.errors import TrainingError
from heldout.release.layout import ratio_key
from heldout.training.config import STEP_BOUNDARIES, STEP_FACTOR
from heldout.training.recipe import LR_SCHEDULES

# Appended, never reordered: stream k is child k of the run's SeedSequence whatever the
# number of streams, so a new stream leaves every earlier run's draws as they were.
_STREAMS = ("subset", "init", "shuffle", "aux_order", "augment")


def _ratio_seed(subset_ratio: float) -> int:
    """The subset ratio as an integer seed component (millionths of the canonical ratio)."""
    return int(round(ratio_key(subset_ratio) * 1_000_000))


def run_rngs(seed: int, subset_ratio: float, run_id: int) -> dict[str, np.random.Generator]:
    """Independent generators of one run, derived from (seed, subset ratio, run id) only."""
    streams = np.random.SeedSequence([int(seed), _ratio_seed(subset_ratio), int(run_id)]).spawn(
        len(_STREAMS)
    )
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, streams, strict=True)}


def subset_size(subset_ratio: float, num_train: int) -> int:
    """How many training examples a run of `subset_ratio` trains on (at least one)."""
    return max(1, int(round(subset_ratio * num_train)))


def run_subset(seed: int, subset_ratio: float, run_id: int, num_train: int) -> np.ndarray:
    """Sorted int64 indices of the training examples run `run_id` trains on."""
    rng = run_rngs(seed, subset_ratio, run_id)["subset"]
    chosen = rng.permutation(num_train)[: subset_size(subset_ratio, num_train)]
    return np.sort(chosen).astype(np.int64)


def corruption_rng(seed: int) -> np.random.Generator:
    """The generator of the experiment-wide label corruption (independent of every run)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x1AB3_1005]))


def learning_rates(
    base: float,
    total_steps: int,
    warmup_fraction: float,
    schedule: str = "linear",
    boundaries: tuple[float, ...] = STEP_BOUNDARIES,
    factor: float = STEP_FACTOR,
) -> np.ndarray:
    """float32 [total_steps]: linear warm-up to `base`, then the schedule.

    `linear`: linear decay towards 0 (the paper's MNIST and CIFAR schedule). `step`: the
    base rate, multiplied by `factor` at each of the `boundaries` (fractions of all steps;
    the paper's ImageNet schedule: x0.1 at 30%, 60%, 90%).
    """
    steps = np.arange(total_steps, dtype=np.float64)
    warmup = min(total_steps, max(1, int(round(warmup_fraction * total_steps))))
    if schedule == "linear":
        after = base * (total_steps - steps) / max(1, total_steps - warmup)
    elif schedule == "step":
        drops = sum(steps >= round(b * total_steps) for b in boundaries)
        after = base * factor ** np.asarray(drops, dtype=np.float64)
    else:
        raise TrainingError(f"unknown learning-rate schedule {schedule!r}; known: {LR_SCHEDULES}")
    rates = np.where(steps < warmup, base * (steps + 1) / warmup, after)
    return rates.astype(np.float32)


def epoch_batches(subset: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """int32 [steps, batch_size]: one shuffled pass over `subset`.

    Every example appears once; the last batch is filled up with the first examples of
    the same shuffled order, so all batches (and all models of a group) have one shape.
    """
    order = subset[rng.permutation(subset.size)]
    steps = math.ceil(subset.size / batch_size)
    padded = np.resize(order, steps * batch_size)  # repeats from the start to fill up
    return padded.reshape(steps, batch_size).astype(np.int32)
