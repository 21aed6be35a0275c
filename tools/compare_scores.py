r"""Compare our scores with published ones (or with another scores file).

  # C-scores recomputed from the release vs. the published file, both in TFDS order
  # (bring the published file into TFDS order first with tools/map_order.py):
  python tools/compare_scores.py --scores=scores.npz --reference=cifar10-cscores-tfds.npz
  # memorization of two of our own runs of compute_scores:
  python tools/compare_scores.py --scores=a.npz --reference=b.npz --key=memorization
  # how many published high-influence pairs our dense influence recovers:
  python tools/compare_scores.py --scores=scores.npz \
      --pairs=cifar100_high_infl_pairs_infl0.15_mem0.25.npz

It prints Spearman, Kendall tau-b and Pearson, the overlap of the lowest and highest 1 %
and 10 %, per-class rho (with the reference's `labels`, or --labels), and for pairs the
published pairs our influence recovers plus the precision and recall of our own pairs
(--min_influence 0.15, --min_memorization 0.25); --output_dir adds the figure (rank
scatter, histograms). Both sides must index the same examples in the same order; the
command checks lengths, not orders. Exit status 2 when the inputs cannot be compared
(one line naming the file).
The command lives in `heldout.cli.compare_scores`.
"""

from heldout.cli.compare_scores import run

if __name__ == "__main__":
    run()
