"""Every proxy from one (or `num_seeds`) training run(s), and its rank agreement with a reference.

The models are trained with the experiment's `Recipe` on the full training set, through
the heldout trainer itself (its `EpochEnd` hook records the per-epoch statistics), and
their proxies averaged. Correlations are of proxies oriented like the C-score (higher:
more regular), so every rho reads the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from heldout._core.provenance import provenance_for
from heldout.errors import TrainingError, UsageError
from heldout.proxies import confidence, kde, learning_speed
from heldout.proxies.ranking import kendall_tau_b, spearman_rho
from heldout.proxies.recording import PROXY_SOURCES
from heldout.training.config import TrainingConfig
from heldout.training.recipe import Recipe, recipe_of

PROXY_GROUPS = ("learning_speed", "confidence", "kde_input", "kde_hidden")
GROUP_KEYS = {
    "learning_speed": learning_speed.LEARNING_SPEED_KEYS,
    "confidence": confidence.CONFIDENCE_KEYS,
    "kde_input": tuple(f"kde_input_{v}" for v in kde.KDE_VARIANTS),
    "kde_hidden": tuple(f"kde_hidden_{v}" for v in kde.KDE_VARIANTS),
}
PROXY_SOURCE_KEY = "proxy_source"
# What a proxies file without the key was made with: the inference pass, then synchronous.
LEGACY_PROXY_SOURCE = "inference_sync"
ORIENTED_NEGATIVE = frozenset(
    {"cumulative_loss", "forgetting_events", "first_learned_epoch", "entropy", "entropy_mean"}
)


@dataclasses.dataclass(frozen=True)
class ProxyOptions:
    """What to train and which proxies to compute.

    Attributes:
      recipe: how the proxies' models are trained (`heldout.training.recipe.Recipe`:
        data, model, optimisation, seed), the experiment's own; the default is the
        paper's MNIST recipe, the one `train_heldout` uses. `arch` must be `mlp` (the
        per-epoch hook evaluates the stacked MLPs).
      num_seeds: models trained independently (run ids 0..num_seeds-1 at ratio 1.0);
        their proxies are averaged.
      num_train: the first n training examples only (quick runs); None: all.
      proxies: any of `PROXY_GROUPS`.
      kde_hidden_every: the hidden densities at every k-th epoch and the last (for the
        rho-by-epoch curve; 1: every epoch), 0: the last only. Each is a density pass
        over all pairs per seed.
      proxy_source: where the per-epoch statistics of the learning-speed and confidence
        proxies come from (`heldout.proxies.recording.PROXY_SOURCES`): `training_passes`
        (default: the training steps' own forward passes, free; they see augmented
        images where the recipe augments, as the paper's did), `inference` (a pass in
        inference mode after every epoch, overlapping the next epoch) or
        `inference_sync` (the same pass, training waiting). The hidden densities always
        come from an inference pass, whatever the source.

    Raises:
      UsageError: an unknown proxy or source, another architecture than the MLP, or a
        count out of range.
      TrainingError: the recipe itself is out of range.
    """

    recipe: Recipe = Recipe()
    num_seeds: int = 1
    num_train: int | None = None
    proxies: tuple[str, ...] = PROXY_GROUPS
    kde_hidden_every: int = 1
    proxy_source: str = "training_passes"

    def __post_init__(self):
        object.__setattr__(self, "recipe", recipe_of(self.recipe))
        object.__setattr__(self, "proxies", tuple(self.proxies))
        unknown = sorted(set(self.proxies) - set(PROXY_GROUPS))
        if unknown or not self.proxies:
            raise UsageError(f"unknown proxies {unknown}; choose from {list(PROXY_GROUPS)}")
        if self.recipe.arch != "mlp":
            raise UsageError(
                f"proxies are recorded for arch mlp only (the per-epoch hook evaluates the "
                f"stacked MLPs), got {self.recipe.arch!r}"
            )
        if self.proxy_source not in PROXY_SOURCES:
            raise UsageError(
                f"unknown proxy_source {self.proxy_source!r}; choose from {list(PROXY_SOURCES)}"
            )
        if self.num_seeds < 1:
            raise UsageError(f"num_seeds must be at least 1, got {self.num_seeds}")
        if self.kde_hidden_every < 0:
            raise UsageError(f"kde_hidden_every must be at least 0, got {self.kde_hidden_every}")
        if self.num_train is not None and self.num_train < 2:
            raise UsageError(f"num_train must be at least 2, got {self.num_train}")

    def training_config(self) -> TrainingConfig:
        """The `TrainingConfig` of the proxies' models: ratio 1.0, `num_seeds` runs."""
        return TrainingConfig.from_recipe(
            self.recipe,
            subset_ratios=(1.0,),
            runs_per_ratio=self.num_seeds,
            models_per_step=self.num_seeds,
        )

    def as_json(self) -> dict:
        """The options as recorded in the output's provenance: one flat JSON object."""
        values = dataclasses.asdict(self.recipe)
        values["mlp_hidden_sizes"] = list(self.recipe.mlp_hidden_sizes)
        values.update(
            num_seeds=self.num_seeds,
            num_train=self.num_train,
            proxies=list(self.proxies),
            kde_hidden_every=self.kde_hidden_every,
            proxy_source=self.proxy_source,
        )
        return values


@dataclasses.dataclass(frozen=True)
class ProxyResult:
    """The proxies of the first `num_train` training examples, in the experiment's order.

    Attributes:
      labels: int64 [N], the labels trained on (corrupted where asked).
      clean_labels: int64 [N], the dataset's labels.
      proxies: name -> float64 / int64 [N] (averaged over seeds).
      by_epoch: name -> [E, N], each per-epoch proxy from the first e epochs (hidden
        densities: at epoch e), averaged over seeds.
      bandwidth_input: h of the input densities, or None.
      bandwidth_hidden: float64 [num_seeds], h at the last epoch per seed, or None.
      num_train_full: the dataset's training-set size.
      seconds: wall time per part (`training`, `hook`, `kde_input`, `kde_hidden`).
      options: what was asked.
      source: the dataset's name and folder.
    """

    labels: np.ndarray
    clean_labels: np.ndarray
    proxies: dict[str, np.ndarray]
    by_epoch: dict[str, np.ndarray]
    bandwidth_input: float | None
    bandwidth_hidden: np.ndarray | None
    num_train_full: int
    seconds: dict[str, float]
    options: ProxyOptions
    source: dict

    @property
    def num_train(self) -> int:
        return int(self.labels.size)

    @property
    def model_epochs(self) -> int:
        """The training budget: models x epochs (each epoch a pass over `num_train`)."""
        return self.options.num_seeds * self.options.recipe.epochs

    def arrays(self) -> dict[str, np.ndarray]:
        """The output file's keys (see `tools/compute_proxies.py`)."""
        out = {"index": np.arange(self.num_train, dtype=np.int64), "labels": self.labels}
        out[PROXY_SOURCE_KEY] = np.asarray(self.options.proxy_source)
        out.update(self.proxies)
        if self.bandwidth_input is not None:
            out["kde_bandwidth_input"] = np.float64(self.bandwidth_input)
        if self.bandwidth_hidden is not None:
            out["kde_bandwidth_hidden"] = np.asarray(self.bandwidth_hidden, np.float64)
        out["provenance"] = np.asarray(
            json.dumps(
                provenance_for(
                    options=self.options.as_json(),
                    source=self.source,
                    num_train_full=self.num_train_full,
                    model_epochs=self.model_epochs,
                ),
                sort_keys=True,
            )
        )
        return out


def proxy_source_of(arrays, path: str) -> str:
    """The proxy source a proxies file (or its arrays) records.

    Files written before the source was recorded were made with the synchronous
    inference pass (`LEGACY_PROXY_SOURCE`).

    Raises:
      UsageError: the file records a source this toolkit does not know.
    """
    if PROXY_SOURCE_KEY not in arrays:
        return LEGACY_PROXY_SOURCE
    source = str(np.asarray(arrays[PROXY_SOURCE_KEY]))
    if source not in PROXY_SOURCES:
        raise UsageError(f"{path}: unknown proxy_source {source!r}")
    return source


def check_same_source(ours: str, theirs: str, what: str, allow_mismatch: bool = False) -> None:
    """Refuses to compare proxies of two sources, unless `allow_mismatch`.

    `inference` and `inference_sync` are one statistic (bit-identical), so they agree.

    Raises:
      UsageError: one line naming `what` and both sources.
    """
    same = {ours, theirs} <= {"inference", "inference_sync"} or ours == theirs
    if not same and not allow_mismatch:
        raise UsageError(
            f"{what} was made with proxy_source={theirs}, these proxies with {ours}: "
            "not the same statistic (pass --allow_mismatch to compare anyway)"
        )


def oriented(name: str, values: np.ndarray) -> np.ndarray:
    """`values` with higher = more regular (negated for `ORIENTED_NEGATIVE` proxies)."""
    base = name.removeprefix("spearman_").removeprefix("kendall_")
    return -np.asarray(values, np.float64) if base in ORIENTED_NEGATIVE else values


def correlations(result: ProxyResult, reference: np.ndarray) -> dict[str, np.ndarray]:
    """`spearman_<proxy>`, `kendall_<proxy>` and `spearman_by_epoch_<proxy>` [E] arrays.

    Args:
      result: the proxies.
      reference: float [N] C-scores of the same examples (NaN: left out).
    """
    out = {}
    for name, values in result.proxies.items():
        values = oriented(name, values)
        out[f"spearman_{name}"] = np.float64(spearman_rho(values, reference))
        out[f"kendall_{name}"] = np.float64(kendall_tau_b(values, reference))
    for name, table in result.by_epoch.items():
        out[f"spearman_by_epoch_{name}"] = np.array(
            [spearman_rho(oriented(name, row), reference) for row in table]
        )
    return out


def _sliced_data(data, num_train: int | None):
    """`data` (a `TrainingData`) restricted to its first `num_train` training examples."""
    if num_train is None or num_train >= data.num_train:
        return data
    from heldout.datasets.base import ArraySource, ArraySplit

    class FirstExamples(ArraySource):
        """`base` with only the first `num_train` training examples."""

        def __init__(self, base):
            super().__init__(base.name, base.num_classes, base.image_shape, splits=base.splits)
            self.base = base

        def _load(self, split: str) -> ArraySplit:
            arrays = self.base.load_arrays(split)
            if split != "train":
                return arrays
            original = arrays.original_index
            return ArraySplit(
                images=arrays.images[:num_train],
                labels=arrays.labels[:num_train],
                original_index=None if original is None else original[:num_train],
            )

    return dataclasses.replace(
        data,
        source=FirstExamples(data.source),
        train_images=data.train_images[:num_train],
        train_labels=data.train_labels[:num_train],
    )


def _load_data(options: ProxyOptions, config):
    from heldout.release import label_corruption
    from heldout.training.data import load_training_data, open_source
    from heldout.training.plan import corruption_rng

    recipe = options.recipe
    opened = open_source(recipe.dataset, recipe.data_dir)
    clean = opened.source.load_arrays("train")
    corruption = None
    if recipe.label_corrupt_prob > 0:
        # The same draw as the experiment's (heldout.training.record.prepare_corruption).
        corruption = label_corruption.corrupt_labels(
            clean.labels,
            recipe.label_corrupt_prob,
            opened.source.num_classes,
            corruption_rng(recipe.seed),
        )
    data = load_training_data(config, corruption, opened)
    if options.num_train is not None and options.num_train > data.num_train:
        raise UsageError(
            f"num_train={options.num_train} is more than the {data.num_train} training "
            f"examples of {opened.name}"
        )
    return data, np.asarray(clean.labels, np.int64), opened


def training_labels(options: ProxyOptions) -> tuple[np.ndarray, np.ndarray]:
    """(clean, trained-on) labels int64 [N] of the whole training set, without training.

    What a reference is checked against before any training starts (the first
    `num_train` of them are the proxies' examples).
    """
    data, clean, _ = _load_data(options, options.training_config())
    return clean, np.asarray(data.train_labels, np.int64)


def compute_proxies(
    options: ProxyOptions,
    on_event: Callable | None = None,
    kde_block: int | None = None,
    parts=None,
) -> ProxyResult:
    """Trains the proxies' model(s) and computes every proxy asked for.

    Args:
      options: what to train and compute.
      on_event: receives the trainer's events (`heldout.training.events`) as they come.
      kde_block: rows per tile of the densities (default `heldout.proxies.kde.DEFAULT_BLOCK`).
      parts: a `heldout.proxies.parts.SeedParts`: the seeds are trained one at a time,
        each one's tables stored there as it finishes, and a stored part whose record
        matches is loaded instead of retrained (a killed run resumes, bit-identical).
        None: all seeds trained together, nothing kept.

    Returns:
      A `ProxyResult`.

    Raises:
      UsageError: options out of range.
      TrainingError, DatasetError: the data cannot be read or trained on.
      UsageError: a stored part of `parts` was made by another run.
    """
    config = options.training_config()
    data, clean_full, opened = _load_data(options, config)
    num_train_full = data.num_train
    data = _sliced_data(data, options.num_train)
    labels = np.asarray(data.train_labels, np.int64)
    groups = set(options.proxies)
    seconds = {}
    proxies: dict[str, np.ndarray] = {}
    by_epoch: dict[str, np.ndarray] = {}
    bandwidth_hidden = None
    trained = groups & {"learning_speed", "confidence", "kde_hidden"}
    if trained:
        from heldout.proxies import train_seeds

        if parts is None:
            recorder = train_seeds.train_together(
                options, config, data, labels, on_event, kde_block, seconds
            )
        else:
            recorder = train_seeds.train_by_seed(
                options, config, data, labels, on_event, kde_block, seconds, parts, opened
            )
        tables = recorder.tables  # [M, E, N]
        if not recorder.seen.all():  # ratio 1.0: every example once an epoch
            raise TrainingError("the proxies' models did not see every example every epoch")
        if "learning_speed" in groups:
            _add_averaged(
                proxies,
                by_epoch,
                [
                    (
                        learning_speed.learning_speed_proxies(c, loss),
                        learning_speed.learning_speed_by_epoch(c, loss),
                    )
                    for c, loss in zip(tables["correct"], tables["loss"], strict=True)
                ],
            )
        if "confidence" in groups:
            _add_averaged(
                proxies,
                by_epoch,
                [
                    (
                        confidence.confidence_proxies(p, m, e),
                        confidence.confidence_by_epoch(p, m, e),
                    )
                    for p, m, e in zip(
                        tables["p_label"], tables["p_max"], tables["entropy"], strict=True
                    )
                ],
            )
        if "kde_hidden" in groups:
            hidden = recorder.kde_hidden  # variant -> [M, E', N]
            rows = np.array(recorder.kde_hidden_epochs) - 1
            for variant, table in hidden.items():
                proxies[f"kde_hidden_{variant}"] = table[:, -1].mean(axis=0)
                if len(rows) > 1:  # NaN rows: epochs without densities
                    full = np.full((options.recipe.epochs, table.shape[-1]), np.nan)
                    full[rows] = table.mean(axis=0)
                    by_epoch[f"kde_hidden_{variant}"] = full
            bandwidth_hidden = recorder.kde_hidden_bandwidth[:, -1]
    bandwidth_input = None
    if "kde_input" in groups:
        start = time.perf_counter()
        pixels = data.train_images.reshape(data.num_train, -1).astype(np.float32) / 255.0
        kwargs = {} if kde_block is None else {"block": kde_block}
        values, bandwidth_input = kde.kde_proxies(pixels, labels, data.num_classes, **kwargs)
        for variant, array in values.items():
            proxies[f"kde_input_{variant}"] = array
        seconds["kde_input"] = time.perf_counter() - start
    order = [key for group in PROXY_GROUPS if group in groups for key in GROUP_KEYS[group]]
    return ProxyResult(
        labels=labels,
        clean_labels=clean_full[: data.num_train],
        proxies={key: proxies[key] for key in order},
        by_epoch={key: by_epoch[key] for key in order if key in by_epoch},
        bandwidth_input=bandwidth_input,
        bandwidth_hidden=bandwidth_hidden,
        num_train_full=num_train_full,
        seconds=seconds,
        options=options,
        source={"name": opened.name, "data_dir": opened.data_dir, "order": opened.index_order},
    )


def _add_averaged(proxies: dict, by_epoch: dict, per_seed: Sequence[tuple[dict, dict]]) -> None:
    """Averages each seed's proxies (and by-epoch tables); one seed keeps its dtypes."""
    for key in per_seed[0][0]:
        values = [final[key] for final, _ in per_seed]
        proxies[key] = values[0] if len(values) == 1 else np.mean(values, axis=0)
        by_epoch[key] = np.mean([epochs[key] for _, epochs in per_seed], axis=0)


def model_epochs_of_experiment(experiment) -> tuple[int, float]:
    """(models x epochs, the same in full-training-set passes) of a heldout experiment.

    A run at subset ratio s passes over s N examples per epoch; the second number counts
    the budget in passes over the whole training set (what the proxies' budget counts).
    """
    epochs = experiment.meta.extra.get("training", {}).get("epochs")
    if epochs is None:
        return 0, math.nan
    runs = list(experiment.runs)
    return len(runs) * int(epochs), sum(run.subset_ratio for run in runs) * int(epochs)
