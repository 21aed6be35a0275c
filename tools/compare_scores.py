"""Compare our scores with published ones (or with another scores file).

  # C-scores recomputed from the release vs. the published file, both in TFDS order
  # (bring the published file into TFDS order first with tools/map_order.py):
  python tools/compare_scores.py --scores=scores.npz --reference=cifar10-cscores-tfds.npz
  # memorization of two of our own runs of compute_scores:
  python tools/compare_scores.py --scores=a.npz --reference=b.npz --key=memorization
  # how many published high-influence pairs our dense influence recovers:
  python tools/compare_scores.py --scores=scores.npz \
      --pairs=cifar100_high_infl_pairs_infl0.15_mem0.25.npz

Both sides must index the same examples in the same order; the command checks lengths,
not orders. Exit status 2 when the inputs cannot be compared.
"""

from __future__ import annotations

import sys

import numpy as np
from absl import app, flags

from heldout import compare
from heldout.datasets.base import DatasetError
from heldout.datasets.order import load_published_scores

_SCORES = flags.DEFINE_string("scores", None, "Our scores .npz (tools/compute_scores.py).")
_KEY = flags.DEFINE_string("key", "cscore", "Which of our per-example scores to compare.")
_REFERENCE = flags.DEFINE_string(
    "reference",
    None,
    "Published scores (.npz with `scores`, or .npy) or another scores .npz (uses --key).",
)
_PAIRS = flags.DEFINE_string("pairs", None, "Published high-influence pairs .npz.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.15, "Influence that counts as recovered.")


def _load_npz_key(path: str, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise compare.CompareError(f"{path}: no `{key}` (keys: {sorted(npz.files)})")
            return npz[key]
    except (OSError, ValueError) as error:
        if isinstance(error, compare.CompareError):
            raise
        raise compare.CompareError(f"{path}: cannot read as a numpy .npz file ({error})") from None


def _load_reference(path: str, key: str) -> np.ndarray:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            if key in npz.files and "scores" not in npz.files:
                return _load_npz_key(path, key)
    return load_published_scores(path).scores


def main(argv) -> int:
    del argv
    if not _SCORES.value or not (_REFERENCE.value or _PAIRS.value):
        print("error: pass --scores and --reference and/or --pairs", file=sys.stderr)
        return 2
    try:
        if _REFERENCE.value:
            ours = _load_npz_key(_SCORES.value, _KEY.value)
            agreement = compare.compare_scores(ours, _load_reference(_REFERENCE.value, _KEY.value))
            print(
                f"{_KEY.value}: {agreement.num_compared} of {agreement.num_examples} examples "
                f"compared (NaN on either side skipped)\n"
                f"  Spearman {agreement.spearman:.4f}  Pearson {agreement.pearson:.4f}  "
                f"mean |diff| {agreement.mean_abs_difference:.4f}  "
                f"max |diff| {agreement.max_abs_difference:.4f}"
            )
        if _PAIRS.value:
            influence = _load_npz_key(_SCORES.value, "influence")
            pairs = compare.load_influence_pairs(_PAIRS.value)
            recovery = compare.pair_recovery(pairs, influence, _THRESHOLD.value)
            print(
                f"influence pairs: {recovery.num_pairs} published, {recovery.num_defined} "
                f"defined here, {recovery.num_above_threshold} with our influence >= "
                f"{recovery.threshold}\n"
                f"  Pearson {recovery.pearson:.4f}  mean |diff| {recovery.mean_abs_difference:.4f}"
            )
    except (compare.CompareError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
