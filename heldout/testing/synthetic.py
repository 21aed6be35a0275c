"""Synthetic experiments in the exact released layout, with a known answer.

Every example gets a planted difficulty, so its C-score and memorization have known
expected values, and a few (training, test) pairs get a planted influence (the model:
`PlantedStructure`). Each run is drawn from its own seed, so any subset of runs comes out
the same in any order. Runs from given probabilities: `known_probabilities`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from heldout.release import layout as release
from heldout.release.aux_arrays import AuxArrays, aux_from_predictions
from heldout.testing.experiment_folder import write_experiment_folder


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Size and planted structure of a synthetic experiment.

    Args:
      num_train: size of the full training split (N).
      num_test: size of the test split (N_test).
      subset_ratios: the ratio folders to create; each run trains on
        `round(subset_ratio * num_train)` examples, as the release did.
      runs_per_ratio: runs in every ratio folder.
      atypical_fraction: share of training examples made hard and highly memorized.
      num_influence_pairs: planted (train, test) pairs; at most the number of atypical
        examples and of test examples. Default: 5, or fewer if the experiment is too small.
      pair_p_trained, pair_p_heldout: a pair's test accuracy with its partner in or out;
        the expected influence of the pair is their difference (0.75 by default).
      fit: share of held-out mistakes a run fixes on examples it trained on.
      ratio_slope: how much easier every example gets as the subset ratio grows.
      seed: fixes the planted structure and every run.
    """

    num_train: int = 1000
    num_test: int = 200
    subset_ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    runs_per_ratio: int = 20
    atypical_fraction: float = 0.05
    num_influence_pairs: int | None = None
    pair_p_trained: float = 0.8
    pair_p_heldout: float = 0.05
    fit: float = 0.95
    ratio_slope: float = 2.0
    seed: int = 0

    def __post_init__(self):
        if self.num_train < 1 or self.num_test < 1:
            raise ValueError(
                f"num_train and num_test must be positive, got {self.num_train}, {self.num_test}"
            )
        for ratio in self.subset_ratios:
            release.ratio_dir_name(ratio)  # raises unless 0 < ratio <= 1
        most = min(self.num_atypical, self.num_test)
        if self.num_influence_pairs is None:
            object.__setattr__(self, "num_influence_pairs", min(5, most))
        elif not 0 <= self.num_influence_pairs <= most:
            raise ValueError(
                f"num_influence_pairs={self.num_influence_pairs} must be between 0 and the "
                f"number of atypical training examples ({self.num_atypical}) and of test "
                f"examples ({self.num_test})"
            )

    @property
    def num_atypical(self) -> int:
        return int(round(self.atypical_fraction * self.num_train))


@dataclasses.dataclass(frozen=True)
class PlantedStructure:
    """The ground truth a synthetic experiment was drawn from.

    The model behind each run (probabilities, all per example):
    - held out: correct with `sigmoid(ease + ratio_slope * (subset_ratio - 0.5))`, so larger
      training subsets generalize better, as in the paper's C-score curves;
    - trained on: the model fits a fraction `fit` of what it got wrong when held out,
      `p_trained = 1 - (1 - p_heldout) * (1 - fit)`;
    - atypical training examples (a fraction `atypical_fraction`) have a very low ease, so they
      are highly memorized; planted pair partners are drawn from them;
    - test examples follow the held-out rule; a planted pair's test example is correct with
      `pair_p_trained` when its partner is in the run's subset and `pair_p_heldout` otherwise.

    Each run is drawn from its own seed `(seed, subset ratio, run_id)`, so two processes
    of a benchmark see identical data without sharing files.
    """

    train_ease: np.ndarray  # float64 [num_train]
    test_ease: np.ndarray  # float64 [num_test]
    atypical: np.ndarray  # int64: training examples planted as hard and memorized
    pair_train: np.ndarray  # int64 [num_influence_pairs]
    pair_test: np.ndarray  # int64 [num_influence_pairs]
    fit: float
    ratio_slope: float
    pair_p_trained: float
    pair_p_heldout: float

    def p_heldout(self, subset_ratio: float) -> np.ndarray:
        """P(correct | held out) per training example: the expected C-score at the ratio."""
        return sigmoid(self.train_ease + self.ratio_slope * (subset_ratio - 0.5))

    def p_trained(self, subset_ratio: float) -> np.ndarray:
        return 1.0 - (1.0 - self.p_heldout(subset_ratio)) * (1.0 - self.fit)

    def expected_memorization(self, subset_ratio: float) -> np.ndarray:
        return self.p_trained(subset_ratio) - self.p_heldout(subset_ratio)

    def p_test(self, subset_ratio: float) -> np.ndarray:
        """Test accuracy per example, ignoring the planted pairs."""
        return sigmoid(self.test_ease + self.ratio_slope * (subset_ratio - 0.5))

    @property
    def expected_pair_influence(self) -> float:
        return self.pair_p_trained - self.pair_p_heldout


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def with_planted_pairs(p_test: np.ndarray, train_mask: np.ndarray, planted) -> np.ndarray:
    """A copy of `p_test` in which each planted pair's test example takes its trained or
    held-out probability, as the run trained its partner or not; `planted` has the pairs
    (`pair_test`, `pair_train`, `pair_p_trained`, `pair_p_heldout`)."""
    p_test = p_test.copy()
    p_test[planted.pair_test] = np.where(
        train_mask[planted.pair_train], planted.pair_p_trained, planted.pair_p_heldout
    )
    return p_test


class RunDrawer:
    """`draw_run` and `write` for an experiment that draws its runs' predictions
    (`draw_predictions`), lists them (`iter_runs`) and says what its folder records."""

    def draw_predictions(
        self, subset_ratio: float, run_id: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
        raise NotImplementedError

    def draw_run(self, subset_ratio: float, run_id: int, shuffle: bool = True) -> AuxArrays:
        """One run's aux arrays; `shuffle=False` keeps index order (faster, for benchmarks)."""
        train_mask, train_correct, test_correct, rng = self.draw_predictions(subset_ratio, run_id)
        return aux_from_predictions(
            train_mask, train_correct, test_correct, rng=rng if shuffle else None
        )

    def folder_record(self) -> tuple[dict[float, int], tuple[int, int], dict]:
        """(runs per ratio, (N, N_test), what `experiment.json` records as `extra`)."""
        raise NotImplementedError

    def write(
        self,
        experiment_dir: str | Path,
        on_run_written: Callable[[release.Run], None] | None = None,
    ) -> release.Experiment:
        """Writes every run (shuffled evaluation orders) and `experiment.json` (which
        records how they were drawn); returns it.

        Raises:
          FileExistsError: `experiment_dir` already holds an experiment or runs; checked
            before anything is written, so another experiment's record is never replaced.
        """
        runs_per_ratio, split_sizes, extra = self.folder_record()
        return write_experiment_folder(
            Path(experiment_dir),
            runs_per_ratio,
            split_sizes,
            extra,
            self.iter_runs(),
            on_run_written,
        )


def planted_structure(spec: SyntheticSpec) -> PlantedStructure:
    """Draws the per-example difficulties and the influence pairs from `spec.seed`."""
    rng = np.random.default_rng([spec.seed, 0])
    train_ease = rng.normal(2.0, 1.5, spec.num_train)
    test_ease = rng.normal(2.0, 1.5, spec.num_test)
    atypical = np.sort(rng.choice(spec.num_train, spec.num_atypical, replace=False))
    train_ease[atypical] = -3.0
    pair_train = rng.choice(atypical, spec.num_influence_pairs, replace=False)
    pair_test = rng.choice(spec.num_test, spec.num_influence_pairs, replace=False)
    return PlantedStructure(
        train_ease=train_ease,
        test_ease=test_ease,
        atypical=atypical.astype(np.int64),
        pair_train=pair_train.astype(np.int64),
        pair_test=pair_test.astype(np.int64),
        fit=spec.fit,
        ratio_slope=spec.ratio_slope,
        pair_p_trained=spec.pair_p_trained,
        pair_p_heldout=spec.pair_p_heldout,
    )


class SyntheticExperiment(RunDrawer):
    """Draws runs of a synthetic experiment, in memory or into a release-layout folder.

    Per-ratio probabilities are computed once and cached, so drawing a run costs a
    permutation and two uniform draws: fast enough for ImageNet-sized benchmarks.
    """

    def __init__(self, spec: SyntheticSpec):
        self.spec = spec
        self.planted = planted_structure(spec)
        self._probabilities: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _probabilities_at(self, subset_ratio: float):
        cached = self._probabilities.get(subset_ratio)
        if cached is None:
            planted = self.planted
            cached = (
                planted.p_heldout(subset_ratio).astype(np.float32),
                planted.p_trained(subset_ratio).astype(np.float32),
                planted.p_test(subset_ratio).astype(np.float32),
            )
            self._probabilities[subset_ratio] = cached
        return cached

    def draw_predictions(
        self, subset_ratio: float, run_id: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
        """One run in index order: (train_mask, train_correct, test_correct, its rng)."""
        spec = self.spec
        # The ratio enters the seed as an integer so 0.7 and 0.7000000001 agree.
        rng = np.random.default_rng([spec.seed, 1, int(round(subset_ratio * 10**6)), run_id])
        p_heldout, p_trained, p_test = self._probabilities_at(subset_ratio)
        num_trained = int(round(subset_ratio * spec.num_train))
        train_mask = np.zeros(spec.num_train, dtype=bool)
        train_mask[rng.permutation(spec.num_train)[:num_trained]] = True
        p_correct = np.where(train_mask, p_trained, p_heldout)
        train_correct = rng.random(spec.num_train, dtype=np.float32) < p_correct
        p_test = with_planted_pairs(p_test, train_mask, self.planted)
        test_correct = rng.random(spec.num_test, dtype=np.float32) < p_test
        return train_mask, train_correct, test_correct, rng

    def iter_runs(
        self,
        subset_ratios: Sequence[float] | None = None,
        num_runs: int | None = None,
        shuffle: bool = True,
    ) -> Iterator[tuple[float, int, AuxArrays]]:
        """Yields (subset_ratio, run_id, aux) lazily, one run in memory at a time."""
        ratios = self.spec.subset_ratios if subset_ratios is None else subset_ratios
        num_runs = self.spec.runs_per_ratio if num_runs is None else num_runs
        for subset_ratio in ratios:
            for run_id in range(num_runs):
                yield subset_ratio, run_id, self.draw_run(subset_ratio, run_id, shuffle)

    def folder_record(self) -> tuple[dict[float, int], tuple[int, int], dict]:
        """What `write` records: runs per ratio, (N, N_test), and the spec."""
        spec = self.spec
        return (
            {ratio: spec.runs_per_ratio for ratio in spec.subset_ratios},
            (spec.num_train, spec.num_test),
            {"synthetic": dataclasses.asdict(spec)},
        )


def write_synthetic_experiment(
    experiment_dir: str | Path, spec: SyntheticSpec | None = None
) -> release.Experiment:
    """Writes a synthetic experiment with a known answer into `experiment_dir`.

    Shorthand for `SyntheticExperiment(spec).write(experiment_dir)`: every run of every
    ratio (shuffled evaluation orders) in the released layout, plus `experiment.json`,
    which records the spec.

    Args:
      experiment_dir: the folder to create (or an empty one).
      spec: sizes and planted structure; None: `SyntheticSpec()`'s defaults.

    Returns:
      The written experiment, opened (`heldout.release.layout.Experiment`).

    Raises:
      FileExistsError: `experiment_dir` already holds an experiment or runs; checked
        before anything is written.
    """
    return SyntheticExperiment(spec or SyntheticSpec()).write(experiment_dir)
