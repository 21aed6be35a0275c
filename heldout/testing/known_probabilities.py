"""Runs drawn from probabilities the caller gives, so every true value is known exactly.

`KnownProbabilities` holds, per example and per ratio, P(correct) held out and trained on,
plus planted influence pairs of known effect (built e.g. by `cscore_like_probabilities`
and `plant_pairs`); `ProbabilityExperiment` draws runs from them, so that intervals,
reliability predictions and false-discovery rates can be checked against the truth.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from heldout.release import layout as release
from heldout.release.aux_arrays import AuxArrays
from heldout.testing.synthetic import (
    RunDrawer,
    SyntheticSpec,
    planted_structure,
    sigmoid,
    with_planted_pairs,
)

# ---------------------------------------------------------------------------------------
# Known probabilities: each run's correctness drawn from given per-example probabilities.
#
# Intervals, reliability predictions and false-discovery rates can only be checked against
# a truth. `SyntheticExperiment` plants one through a fixed model; here the caller gives the
# probabilities themselves (per example and per ratio; e.g. shaped like the published
# CIFAR-10 C-scores), and every true value an estimator targets is known exactly.

DESIGNS = ("subset", "fixed_count")


def _as_probabilities(name: str, values, shape: tuple[int, ...]) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if array.size and not (np.all(array >= 0) and np.all(array <= 1)):
        raise ValueError(f"{name} must hold probabilities in [0, 1]")
    return array


def _ratio_seed(subset_ratio: float) -> int:
    # The ratio enters seeds as an integer so 0.7 and 0.7000000001 agree.
    return int(round(subset_ratio * 10**6))


@dataclasses.dataclass(frozen=True)
class KnownProbabilities:
    """The probabilities a `ProbabilityExperiment` draws its runs from: its ground truth.

    Attributes:
      subset_ratios: the S ratios, increasing.
      p_heldout: float64 [S, N]: P(correct | held out) per training example; row s is the
        true C-score at `subset_ratios[s]`.
      p_trained: float64 [S, N]: P(correct | trained on).
      p_test: float64 [S, T]: test accuracy per test example (planted pairs aside).
      pair_train, pair_test: int64 [P]: planted pairs; each test example in at most one.
      pair_p_trained, pair_p_heldout: float64 [P]: the pair's test example is correct with
        these probabilities when its partner is trained on / held out (at every ratio), so
        the pair's true influence is their difference.
    """

    subset_ratios: tuple[float, ...]
    p_heldout: np.ndarray
    p_trained: np.ndarray
    p_test: np.ndarray
    pair_train: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    pair_test: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    pair_p_trained: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    pair_p_heldout: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        ratios = tuple(float(r) for r in self.subset_ratios)
        if not ratios or list(ratios) != sorted(set(ratios)):
            raise ValueError(f"subset_ratios must be increasing and not empty, got {ratios}")
        for ratio in ratios:
            release.ratio_dir_name(ratio)  # raises unless 0 < ratio <= 1
        p_heldout = np.array(self.p_heldout, dtype=np.float64)
        if p_heldout.ndim != 2 or p_heldout.shape[0] != len(ratios) or p_heldout.shape[1] < 1:
            raise ValueError(
                f"p_heldout must have shape [{len(ratios)}, N] (a row per ratio), got "
                f"{p_heldout.shape}"
            )
        num_train = p_heldout.shape[1]
        p_test = np.array(self.p_test, dtype=np.float64)
        if p_test.ndim != 2 or p_test.shape[0] != len(ratios) or p_test.shape[1] < 1:
            raise ValueError(f"p_test must have shape [{len(ratios)}, T], got {p_test.shape}")
        pair_train = np.array(self.pair_train, dtype=np.int64).reshape(-1)
        pair_test = np.array(self.pair_test, dtype=np.int64).reshape(-1)
        num_pairs = pair_train.size
        fields = {
            "subset_ratios": ratios,
            "p_heldout": _as_probabilities("p_heldout", p_heldout, p_heldout.shape),
            "p_trained": _as_probabilities("p_trained", self.p_trained, p_heldout.shape),
            "p_test": _as_probabilities("p_test", p_test, p_test.shape),
            "pair_train": pair_train,
            "pair_test": pair_test,
            "pair_p_trained": _as_probabilities(
                "pair_p_trained", self.pair_p_trained, (num_pairs,)
            ),
            "pair_p_heldout": _as_probabilities(
                "pair_p_heldout", self.pair_p_heldout, (num_pairs,)
            ),
        }
        if pair_test.size != num_pairs:
            raise ValueError("pair_train and pair_test must have the same length")
        if num_pairs:
            if pair_train.min() < 0 or pair_train.max() >= num_train:
                raise ValueError(f"pair_train must index the {num_train} training examples")
            if pair_test.min() < 0 or pair_test.max() >= p_test.shape[1]:
                raise ValueError(f"pair_test must index the {p_test.shape[1]} test examples")
            if np.unique(pair_test).size != num_pairs:
                raise ValueError("a test example can be in at most one planted pair")
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def num_train(self) -> int:
        return self.p_heldout.shape[1]

    @property
    def num_test(self) -> int:
        return self.p_test.shape[1]

    def ratio_index(self, subset_ratio: float) -> int:
        """The row of `subset_ratio` in the `[S, ...]` arrays."""
        for index, ratio in enumerate(self.subset_ratios):
            if round(ratio, 9) == round(float(subset_ratio), 9):
                return index
        raise ValueError(f"no subset ratio {subset_ratio}; ratios: {list(self.subset_ratios)}")

    def true_cscore(self, heldout_count_by_ratio: np.ndarray | None = None) -> np.ndarray:
        """float64 [N]: the mean of the per-ratio true C-scores.

        Args:
          heldout_count_by_ratio: optional [S, N] counts; the estimate averages only the
            ratios where an example was held out, and so does its true value then (NaN
            where it never was).
        """
        if heldout_count_by_ratio is None:
            return self.p_heldout.mean(axis=0)
        defined = np.asarray(heldout_count_by_ratio) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(defined, self.p_heldout, 0.0).sum(axis=0) / defined.sum(axis=0)

    def true_memorization(self, subset_ratio: float) -> np.ndarray:
        """float64 [N]: p_trained - p_heldout at `subset_ratio`."""
        s = self.ratio_index(subset_ratio)
        return self.p_trained[s] - self.p_heldout[s]

    @property
    def true_pair_influence(self) -> np.ndarray:
        """float64 [P]: each planted pair's influence."""
        return self.pair_p_trained - self.pair_p_heldout


def probabilities_from_spec(spec: SyntheticSpec) -> KnownProbabilities:
    """The truth behind `SyntheticExperiment(spec)`, as known probabilities."""
    planted = planted_structure(spec)
    ratios = tuple(sorted(spec.subset_ratios))
    pairs = planted.pair_train.size
    return KnownProbabilities(
        subset_ratios=ratios,
        p_heldout=np.stack([planted.p_heldout(r) for r in ratios]),
        p_trained=np.stack([planted.p_trained(r) for r in ratios]),
        p_test=np.stack([planted.p_test(r) for r in ratios]),
        pair_train=planted.pair_train,
        pair_test=planted.pair_test,
        pair_p_trained=np.full(pairs, planted.pair_p_trained),
        pair_p_heldout=np.full(pairs, planted.pair_p_heldout),
    )


def cscore_like_probabilities(
    cscores: np.ndarray,
    subset_ratios: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    num_train: int | None = None,
    num_test: int = 1000,
    slope_mean: float = 2.0,
    slope_sd: float = 1.0,
    fit_beta: tuple[float, float] = (19.0, 1.0),
    seed: int = 0,
) -> KnownProbabilities:
    """Probabilities whose C-scores follow a given distribution (e.g. the published ones).

    Each training example gets the logit of a C-score drawn from `cscores` (all of them in
    order when `num_train` is None) as its ease, and its own slope over ratios, so its
    curve is `sigmoid(ease + slope * (ratio - 0.5))`: curves cross, as real ones do, and
    no single number orders the examples at every ratio. Trained-on examples are right
    with `1 - (1 - p_heldout) * (1 - fit)`, `fit ~ Beta(*fit_beta)` per example (mean 0.95
    by default: trained examples are nearly always right). Test examples are drawn the
    same way from `cscores`.

    Args:
      cscores: C-scores to imitate (values are clipped to [0.001, 0.999]).
      subset_ratios: the ratios to make rows for.
      num_train: training examples; default `len(cscores)`, in order.
      num_test: test examples.
      slope_mean, slope_sd: the normal distribution of the per-example slopes.
      fit_beta: the beta distribution of the per-example fit.
      seed: fixes every draw.
    """
    cscores = np.clip(np.asarray(cscores, dtype=np.float64).reshape(-1), 1e-3, 1 - 1e-3)
    if cscores.size == 0:
        raise ValueError("cscores is empty")
    rng = np.random.default_rng([seed, 4])
    chosen = cscores if num_train is None else rng.choice(cscores, num_train)
    ratios = np.asarray(sorted(subset_ratios), dtype=np.float64)

    def curves(values: np.ndarray) -> np.ndarray:
        ease = np.log(values / (1 - values))
        slope = rng.normal(slope_mean, slope_sd, values.size)
        return sigmoid(ease[None, :] + slope[None, :] * (ratios[:, None] - 0.5))

    p_heldout = curves(chosen)
    fit = rng.beta(*fit_beta, chosen.size)
    p_test = curves(rng.choice(cscores, num_test))
    return KnownProbabilities(
        subset_ratios=tuple(ratios.tolist()),
        p_heldout=p_heldout,
        p_trained=1 - (1 - p_heldout) * (1 - fit[None, :]),
        p_test=p_test,
    )


def point_mass_probabilities(
    subset_ratios: Sequence[float] = (0.3, 0.5, 0.7),
    num_train: int = 3000,
    num_test: int = 5,
    always_right: float = 0.7,
    always_wrong: float = 0.05,
    seed: int = 0,
) -> KnownProbabilities:
    """Probabilities with point masses at 0 and 1, as real C-scores and memorization have.

    A share `always_right` of the training examples is right in every run, trained on or
    held out (true C-score exactly 1, memorization exactly 0); a share `always_wrong` is
    wrong whenever held out and right when trained on (C-score 0, memorization 1). The rest
    follow per-example logistic curves over the ratios with a mean near 0.6, and trained
    examples are right with `1 - (1 - p_heldout) * (1 - fit)`, `fit ~ Beta(19, 1)`. Ties
    in truth are what make a run planner's curve plateau or fall, so it is checked here.
    """
    if not (0 <= always_right and 0 <= always_wrong and always_right + always_wrong <= 1):
        raise ValueError("always_right and always_wrong must be shares summing to at most 1")
    rng = np.random.default_rng([seed, 6])
    ratios = np.asarray(sorted(subset_ratios), dtype=np.float64)
    kind = rng.choice(
        3, num_train, p=[always_right, always_wrong, 1.0 - always_right - always_wrong]
    )
    ease, slope = rng.normal(0.5, 1.5, num_train), rng.normal(2.0, 1.0, num_train)
    curve = sigmoid(ease[None, :] + slope[None, :] * (ratios[:, None] - 0.5))
    p_heldout = np.where(kind == 0, 1.0, np.where(kind == 1, 0.0, curve))
    fit = rng.beta(19.0, 1.0, num_train)
    p_trained = np.where(kind == 2, 1 - (1 - p_heldout) * (1 - fit[None, :]), 1.0)
    return KnownProbabilities(
        subset_ratios=tuple(ratios.tolist()),
        p_heldout=p_heldout,
        p_trained=p_trained,
        p_test=np.full((ratios.size, num_test), 0.5),
    )


def plant_pairs(
    probabilities: KnownProbabilities,
    effects: Sequence[float],
    subset_ratio: float,
    min_memorization: float = 0.25,
    seed: int = 0,
) -> KnownProbabilities:
    """The same probabilities with influence pairs of known effect planted at random.

    Partners are distinct training examples whose true memorization at `subset_ratio` is at
    least `min_memorization` (highly influential training examples are memorized ones); the
    test examples are distinct. A pair's test example keeps its own accuracy when its
    partner is held out (lowered where needed so that accuracy + effect <= 1) and gains the
    effect when its partner is trained on.

    Raises:
      ValueError: an effect outside (0, 1], or too few eligible examples.
    """
    effects = np.asarray(effects, dtype=np.float64).reshape(-1)
    if effects.size and (effects.min() <= 0 or effects.max() > 1):
        raise ValueError("effects must be in (0, 1]")
    rng = np.random.default_rng([seed, 5])
    memorized = np.flatnonzero(probabilities.true_memorization(subset_ratio) >= min_memorization)
    if memorized.size < effects.size or probabilities.num_test < effects.size:
        raise ValueError(
            f"cannot plant {effects.size} pairs: {memorized.size} training examples have "
            f"memorization >= {min_memorization} and there are {probabilities.num_test} "
            "test examples"
        )
    pair_train = rng.choice(memorized, effects.size, replace=False)
    pair_test = rng.choice(probabilities.num_test, effects.size, replace=False)
    base = probabilities.p_test[probabilities.ratio_index(subset_ratio), pair_test]
    base = np.minimum(base, 1 - effects)
    return dataclasses.replace(
        probabilities,
        pair_train=pair_train,
        pair_test=pair_test,
        pair_p_trained=base + effects,
        pair_p_heldout=base,
    )


class ProbabilityExperiment(RunDrawer):
    """Draws runs whose correctness comes from `KnownProbabilities`, in the released layout.

    Args:
      probabilities: the truth.
      runs_per_ratio: one count for every ratio, or one per ratio.
      design: how training subsets are drawn. "subset" (the release's): each run trains
        on `round(ratio * N)` examples, so an example's held-out count varies from example
        to example. "fixed_count": each example is held out in exactly
        `round((1 - ratio) * runs)` of a ratio's runs, chosen independently per example
        (run sizes then vary a little); it measures what happens at exactly n held-out runs,
        and makes examples' memberships independent, so every unplanted influence is 0.
      seed: fixes every run.

    Runs are drawn from seeds `(seed, ratio, run_id)` (and, for "fixed_count", the ratio's
    membership table from `(seed, ratio)`), so any subset of runs comes out the same in
    any order.
    """

    def __init__(
        self,
        probabilities: KnownProbabilities,
        runs_per_ratio: int | Sequence[int] = 20,
        design: str = "subset",
        seed: int = 0,
    ):
        if design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
        ratios = probabilities.subset_ratios
        counts = (
            [runs_per_ratio] * len(ratios)
            if isinstance(runs_per_ratio, int | np.integer)
            else list(runs_per_ratio)
        )
        if len(counts) != len(ratios) or min(counts) < 1:
            raise ValueError(
                f"runs_per_ratio must be a positive count or one per ratio ({len(ratios)}), "
                f"got {runs_per_ratio}"
            )
        self.probabilities = probabilities
        self.runs_per_ratio = {ratio: int(n) for ratio, n in zip(ratios, counts, strict=True)}
        self.design = design
        self.seed = seed
        self._heldout_tables: dict[float, np.ndarray] = {}

    @property
    def subset_ratios(self) -> tuple[float, ...]:
        return self.probabilities.subset_ratios

    def heldout_runs(self, subset_ratio: float) -> int | None:
        """Runs each example is held out in ("fixed_count"), else None (it varies)."""
        if self.design != "fixed_count":
            return None
        num_runs = self.runs_per_ratio[self._ratio(subset_ratio)]
        return int(round((1 - subset_ratio) * num_runs))

    def _ratio(self, subset_ratio: float) -> float:
        return self.subset_ratios[self.probabilities.ratio_index(subset_ratio)]

    def _heldout_table(self, subset_ratio: float) -> np.ndarray:
        """bool [runs, N] for "fixed_count": which runs hold each example out."""
        table = self._heldout_tables.get(subset_ratio)
        if table is None:
            num_runs = self.runs_per_ratio[subset_ratio]
            heldout = self.heldout_runs(subset_ratio)
            num_train = self.probabilities.num_train
            rng = np.random.default_rng([self.seed, 3, _ratio_seed(subset_ratio)])
            table = np.zeros((num_runs, num_train), dtype=bool)
            if heldout >= num_runs:
                table[:] = True
            elif heldout > 0:
                for start in range(0, num_train, 1 << 16):  # bounded temporaries
                    stop = min(start + (1 << 16), num_train)
                    draws = rng.random((num_runs, stop - start), dtype=np.float32)
                    chosen = np.argpartition(draws, heldout - 1, axis=0)[:heldout]
                    np.put_along_axis(table[:, start:stop], chosen, True, axis=0)
            self._heldout_tables[subset_ratio] = table
        return table

    def draw_predictions(
        self, subset_ratio: float, run_id: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
        """One run in index order: (train_mask, train_correct, test_correct, its rng)."""
        ratio = self._ratio(subset_ratio)
        s = self.probabilities.ratio_index(ratio)
        truth = self.probabilities
        rng = np.random.default_rng([self.seed, 2, _ratio_seed(ratio), run_id])
        if self.design == "fixed_count":
            if not 0 <= run_id < self.runs_per_ratio[ratio]:
                raise ValueError(
                    f"run {run_id} does not exist: the fixed-count design has "
                    f"{self.runs_per_ratio[ratio]} runs at ratio {ratio}"
                )
            train_mask = ~self._heldout_table(ratio)[run_id]
        else:
            num_trained = int(round(ratio * truth.num_train))
            train_mask = np.zeros(truth.num_train, dtype=bool)
            train_mask[rng.permutation(truth.num_train)[:num_trained]] = True
        p_correct = np.where(train_mask, truth.p_trained[s], truth.p_heldout[s])
        train_correct = rng.random(truth.num_train) < p_correct
        p_test = with_planted_pairs(truth.p_test[s], train_mask, truth)
        test_correct = rng.random(truth.num_test) < p_test
        return train_mask, train_correct, test_correct, rng

    def iter_runs(
        self, subset_ratios: Sequence[float] | None = None, shuffle: bool = True
    ) -> Iterator[tuple[float, int, AuxArrays]]:
        """Yields (subset_ratio, run_id, aux) for every run of the ratios, one at a time."""
        for subset_ratio in self.subset_ratios if subset_ratios is None else subset_ratios:
            ratio = self._ratio(subset_ratio)
            for run_id in range(self.runs_per_ratio[ratio]):
                yield ratio, run_id, self.draw_run(ratio, run_id, shuffle)

    def true_influence(self, subset_ratio: float) -> np.ndarray:
        """float64 [T, N]: the exact influence every estimate targets (small sizes only).

        Zero but for the planted pairs; under "subset", an unplanted training example of a
        planted pair's test example has -effect / (N - 1), because a fixed subset size makes
        its membership and its partner's slightly anti-correlated.
        """
        truth = self.probabilities
        out = np.zeros((truth.num_test, truth.num_train))
        effect = truth.true_pair_influence
        if self.design == "subset" and truth.num_train > 1:
            out[truth.pair_test] = -effect[:, None] / (truth.num_train - 1)
        out[truth.pair_test, truth.pair_train] = effect
        return out

    def folder_record(self) -> tuple[dict[float, int], tuple[int, int], dict]:
        """What `write` records: runs per ratio, (N, N_test), the design and a digest of
        the probabilities."""
        truth = self.probabilities
        digest = hashlib.sha256()
        for array in (
            truth.p_heldout,
            truth.p_trained,
            truth.p_test,
            truth.pair_train,
            truth.pair_test,
            truth.pair_p_trained,
            truth.pair_p_heldout,
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
        extra = {
            "known_probabilities": {
                "design": self.design,
                "seed": self.seed,
                "runs_per_ratio": {str(r): n for r, n in self.runs_per_ratio.items()},
                "num_pairs": int(truth.pair_train.size),
                "sha256": digest.hexdigest(),
            }
        }
        return self.runs_per_ratio, (truth.num_train, truth.num_test), extra
