"""`tools/compare_scores.py`: our scores against published ones (or another scores file).

Both sides must index the same examples in the same order; the command checks lengths,
not orders (bring published files into TFDS order with `tools/map_order.py` first). Exit
status 2 when the inputs cannot be compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import flags

from heldout.cli import app

FLAGS = flags.FLAGS
NAME = "compare_scores"
_SCORES_FILE = "a scores .npz file (tools/compute_scores.py)"


def define_flags() -> None:
    """This command's flags (defined when it runs, so importing the module defines none)."""
    flags.DEFINE_string("scores", None, "Our scores .npz (tools/compute_scores.py).")
    flags.DEFINE_string("key", "cscore", "Which of our per-example scores to compare.")
    flags.DEFINE_string(
        "reference",
        None,
        "Published scores (.npz with `scores`, or .npy) or another scores .npz (uses --key).",
    )
    flags.DEFINE_string("pairs", None, "Published high-influence pairs .npz.")
    flags.DEFINE_float("threshold", 0.15, "Influence that counts as recovered.")


def _load_key(path: str, key: str) -> np.ndarray:
    from heldout.errors import CompareError
    from heldout.io import load_npz

    return load_npz(path, keys=[key], error=CompareError, what=_SCORES_FILE)[key]


def _load_reference(path: str, key: str) -> np.ndarray:
    """Another scores file (it has `key` and no `scores`), or a published score file."""
    from heldout.datasets.order import load_published_scores
    from heldout.errors import CompareError
    from heldout.io import load_npz

    if path.endswith(".npz"):
        arrays = load_npz(path, error=CompareError, what="a score file (.npz)")
        if key in arrays and "scores" not in arrays:
            return arrays[key]
    return load_published_scores(path).scores


def main(argv: Sequence[str]) -> int:
    del argv
    from heldout import compare
    from heldout.errors import UsageError

    if not FLAGS.scores or not (FLAGS.reference or FLAGS.pairs):
        raise UsageError("pass --scores and --reference and/or --pairs")
    if FLAGS.reference:
        ours = _load_key(FLAGS.scores, FLAGS.key)
        agreement = compare.compare_scores(ours, _load_reference(FLAGS.reference, FLAGS.key))
        print(
            f"{FLAGS.key}: {agreement.num_compared} of {agreement.num_examples} examples "
            f"compared (NaN on either side skipped)\n"
            f"  Spearman {agreement.spearman:.4f}  Pearson {agreement.pearson:.4f}  "
            f"mean |diff| {agreement.mean_abs_difference:.4f}  "
            f"max |diff| {agreement.max_abs_difference:.4f}"
        )
    if FLAGS.pairs:
        influence = _load_key(FLAGS.scores, "influence")
        pairs = compare.load_influence_pairs(FLAGS.pairs)
        recovery = compare.pair_recovery(pairs, influence, FLAGS.threshold)
        print(
            f"influence pairs: {recovery.num_pairs} published, {recovery.num_defined} "
            f"defined here, {recovery.num_above_threshold} with our influence >= "
            f"{recovery.threshold}\n"
            f"  Pearson {recovery.pearson:.4f}  mean |diff| {recovery.mean_abs_difference:.4f}"
        )
    return app.EXIT_OK


def run() -> None:
    """The console entry point."""
    define_flags()
    app.run_command(main, name=NAME)
