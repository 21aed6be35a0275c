"""The shared flags' values, read and checked after parsing: what a command passes on.

`heldout.cli.flags` defines the groups; this module turns their values into the option
objects of the library (cluster, evaluation, training data, recipe) and the exit-status
rule of a cross-check, so every command reads a group the same way.
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags

from heldout.cli.app import EXIT_FAILED, EXIT_OK
from heldout.errors import UsageError

FLAGS = flags.FLAGS
DEFAULT_LOCAL_WORKERS = 2
DEFAULT_TRAINING_DATASET = "fashion_mnist"

# ----------------------------------------------------------------------- cluster


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """What the flags ask for; `workers` (Dask processes) is None when not given."""

    scheduler: str
    workers: int | None

    @property
    def distributed(self) -> bool:
        from heldout import cluster

        return self.scheduler != cluster.SCHEDULER_NONE

    @property
    def local_workers(self) -> int:
        return self.workers or DEFAULT_LOCAL_WORKERS


def cluster_options(flag_values: flags.FlagValues = FLAGS) -> ClusterOptions:
    """--scheduler and --dask_workers, checked; quiets Dask's INFO logging before it loads.

    Raises:
      UsageError: a --scheduler that is not 'none', 'local' or an address (exit 2).
    """
    from heldout import cluster

    try:
        cluster.check_scheduler(flag_values.scheduler)
    except UsageError as error:
        raise UsageError(f"--{error}") from None
    # Dask logs every cluster event at INFO, which absl shows; the progress bar says
    # enough. Dask reads this when first imported, and its worker processes inherit it.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    return ClusterOptions(flag_values.scheduler, flag_values.dask_workers)


# -------------------------------------------------------------------- evaluation


def check_evaluation_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Raises UsageError for out-of-range values of the evaluation flags (exit status 2)."""
    fv = flag_values
    if not 0.0 <= fv.min_match <= 1.0:
        raise UsageError(f"--min_match must be a fraction in [0, 1], got {fv.min_match:g}")
    if fv.max_runs is not None and fv.max_runs < 1:
        raise UsageError(f"--max_runs must be at least 1, got {fv.max_runs}")
    if fv.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {fv.batch_size}")
    if fv.num_classes is not None and fv.num_classes < 2:
        raise UsageError(f"--num_classes must be at least 2, got {fv.num_classes}")


def splits(flag_values: flags.FlagValues = FLAGS) -> tuple[str, ...]:
    """The dataset splits --split asks for ("all": train and test)."""
    return ("train", "test") if flag_values.split == "all" else (flag_values.split,)


def evaluation_options(flag_values: flags.FlagValues = FLAGS):
    """The evaluation options the flags describe (a `heldout.evaluation.fanout.EvalOptions`)."""
    from heldout.evaluation.fanout import EvalOptions

    fv = flag_values
    return EvalOptions(
        dataset=fv.dataset,
        data_dir=fv.data_dir,
        splits=splits(fv),
        batch_size=fv.batch_size,
        arch=fv.arch,
        num_classes=fv.num_classes,
        outputs=tuple(getattr(fv, "outputs", None) or ()),
        outputs_dir=getattr(fv, "outputs_dir", None),
    ).resolved()


@dataclasses.dataclass(frozen=True)
class MatchVerdict:
    """The exit status of a cross-check, and the line that explains it (None: nothing)."""

    status: int
    message: str | None


def match_verdict(
    matches: int, total: int, failed_runs: int = 0, min_match: float | None = None
) -> MatchVerdict:
    """Exit status 0 when every prediction matches, or at least `min_match` of them do.

    Args:
      matches: predictions that agree with the stored correctness.
      total: predictions compared (including those not evaluated).
      failed_runs: runs that could not be evaluated; any makes the status 1.
      min_match: the tolerated fraction; None reads --min_match.

    Returns:
      Status 0 (all match, or at least `min_match`) or 1 (mismatches, failed runs, or
      nothing compared) and the message to print (stdout for 0, stderr for 1).
    """
    min_match = FLAGS.min_match if min_match is None else min_match
    if failed_runs:
        return MatchVerdict(EXIT_FAILED, f"{failed_runs} run(s) could not be evaluated")
    if not total:
        return MatchVerdict(EXIT_FAILED, "no predictions were compared")
    if matches == total:
        return MatchVerdict(EXIT_OK, None)
    fraction = matches / total
    if fraction >= min_match:
        return MatchVerdict(
            EXIT_OK, f"{100 * fraction:.3f}% match, at least --min_match={min_match:g}"
        )
    return MatchVerdict(
        EXIT_FAILED,
        f"MISMATCH: {total - matches} of {total} predictions differ from the stored "
        f"correctness ({100 * fraction:.3f}% match)",
    )


# ---------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """What the training-data flags ask for."""

    dataset: str
    data_dir: str | None
    label_corrupt_prob: float
    seed: int


def data_options(flag_values: flags.FlagValues = FLAGS) -> DataOptions:
    """The training-data flags' values, checked (--dataset unset: fashion_mnist).

    Raises:
      UsageError: an empty --dataset, or --label_corrupt_prob outside [0, 1] (exit 2).
    """
    fv = flag_values
    dataset = DEFAULT_TRAINING_DATASET if fv.dataset is None else fv.dataset
    if not dataset:
        raise UsageError("--dataset is empty: name the data to learn")
    if not 0.0 <= fv.label_corrupt_prob <= 1.0:
        raise UsageError(f"--label_corrupt_prob must be in [0, 1], got {fv.label_corrupt_prob:g}")
    return DataOptions(dataset, fv.data_dir, fv.label_corrupt_prob, fv.seed)


def mlp_hidden_sizes(spec: str) -> tuple[int, ...]:
    """`--mlp_spec` as layer sizes.

    Raises:
      UsageError: not comma-separated positive integers.
    """
    try:
        sizes = tuple(int(part) for part in spec.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise UsageError(
            f"--mlp_spec must be comma-separated positive layer sizes (e.g. 512,256 or 512), "
            f"got {spec!r}"
        )
    return sizes


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
    """What the recipe flags ask for."""

    arch: str
    epochs: int
    batch_size: int
    learning_rate: float
    mlp_hidden_sizes: tuple[int, ...]


def recipe_options(flag_values: flags.FlagValues = FLAGS) -> RecipeOptions:
    """The recipe flags' values, checked.

    Raises:
      UsageError: a malformed --mlp_spec, or epochs / batch size / learning rate below range.
    """
    fv = flag_values
    sizes = mlp_hidden_sizes(fv.mlp_spec)
    if fv.epochs < 1 or fv.batch_size < 1 or not fv.learning_rate > 0:
        raise UsageError(
            f"--epochs and --batch_size must be at least 1 and --learning_rate positive, got "
            f"{fv.epochs}, {fv.batch_size}, {fv.learning_rate:g}"
        )
    return RecipeOptions(fv.arch, fv.epochs, fv.batch_size, fv.learning_rate, sizes)


def training_recipe(flag_values: flags.FlagValues = FLAGS):
    """The `heldout.training.recipe.Recipe` the data and recipe flags describe (the rest
    keep the recipe's defaults).

    Raises:
      UsageError: a flag value out of range (exit status 2).
    """
    from heldout.training.recipe import Recipe

    data = data_options(flag_values)
    recipe = recipe_options(flag_values)
    return Recipe(**dataclasses.asdict(data), **dataclasses.asdict(recipe))
