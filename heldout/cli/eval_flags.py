"""The flags and the exit-status rule that `demo.py` and `tools/evaluate_runs.py` share.

Both commands restore runs, re-evaluate them and cross-check the predictions with the
runs' aux arrays, so they choose runs, data, model and the `--min_match` tolerance the
same way; defining those flags here once keeps their names, defaults and help identical.

    eval_flags.define_flags(__name__)                # at import of the command module
    options = eval_flags.eval_options()              # heldout.evaluation.fanout.EvalOptions
    verdict = eval_flags.match_verdict(matches, total, failed_runs=0)
"""

from __future__ import annotations

import dataclasses

from absl import flags

from heldout.cli.app import EXIT_FAILED, EXIT_OK
from heldout.errors import UsageError

FLAGS = flags.FLAGS
SPLIT_CHOICES = ("train", "test", "all")

_NAMES = (
    "experiment_dir",
    "subset_ratio",
    "max_runs",
    "dataset",
    "data_dir",
    "split",
    "batch_size",
    "arch",
    "num_classes",
    "min_match",
)
_defined: set[int] = set()  # id() of the FlagValues the group was defined in


def define_flags(command_module: str, flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the shared flags (once per FlagValues) as key flags of `command_module`.

    Run selection: --experiment_dir, --subset_ratio, --max_runs. Data: --dataset,
    --data_dir, --split, --batch_size. Model: --arch, --num_classes. Verdict: --min_match.

    Args:
      command_module: the `__name__` of the command that uses them: absl's `--help`
        lists a module's key flags, and these are defined here, not there.
      flag_values: where to define them.
    """
    if id(flag_values) not in _defined:
        _define(flag_values)
        _defined.add(id(flag_values))
    for name in _NAMES:
        flag_values.register_key_flag_for_module(command_module, flag_values[name])


def _define(flag_values: flags.FlagValues) -> None:
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("experiment_dir", None, "An experiment folder <root>/<experiment>.", **fv)
    flags.DEFINE_float(
        "subset_ratio",
        None,
        "Only runs of this subset ratio (demo.py default: the smallest ratio that has "
        "checkpoints; evaluate_runs.py default: all ratios).",
        **fv,
    )
    flags.DEFINE_integer(
        "max_runs",
        None,
        "At most this many runs, by (ratio, run id) (demo.py default: 1; evaluate_runs.py "
        "default: all).",
        **fv,
    )
    flags.DEFINE_string(
        "dataset",
        None,
        "Data source (heldout.datasets names: cifar10, cifar100, mnist, fashion_mnist, "
        "fashion_mnist_idx, mnist_idx, npz, imagenet). Default: the experiment's.",
        **fv,
    )
    flags.DEFINE_string(
        "data_dir", None, "TFDS data_dir, IDX folder, .npz file or TFRecord folder.", **fv
    )
    flags.DEFINE_enum("split", "all", list(SPLIT_CHOICES), "Which splits to re-evaluate.", **fv)
    flags.DEFINE_integer("batch_size", 500, "Images per evaluation step.", **fv)
    flags.DEFINE_string(
        "arch", None, "Override the architecture: small_inception, resnet50, mlp.", **fv
    )
    flags.DEFINE_integer("num_classes", None, "Override the number of classes.", **fv)
    flags.DEFINE_float(
        "min_match", 1.0, "Fraction of predictions that must match for exit status 0.", **fv
    )


def check_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Raises UsageError for out-of-range values of the shared flags (exit status 2)."""
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


def eval_options(flag_values: flags.FlagValues = FLAGS):
    """The evaluation options the shared flags describe (a `distributed.EvalOptions`)."""
    from heldout.evaluation.fanout import EvalOptions

    fv = flag_values
    return EvalOptions(
        dataset=fv.dataset,
        data_dir=fv.data_dir,
        splits=splits(fv),
        batch_size=fv.batch_size,
        arch=fv.arch,
        num_classes=fv.num_classes,
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
