r"""Draw the figures of a scores file (from tools/compute_scores.py) as PDF and PNG.

Example:
  python tools/plot_scores.py --scores=/tmp/scores.npz \
      --experiment_dir=~/.cache/heldout/experiments/fashion_mnist-mlp --output_dir=/tmp/figs

Writes examples (per class, the 10 highest and 10 lowest C-score training images),
histograms (C-score per subset ratio), cscore_bins (mean C-score per bin of integral
C-score against subset ratio) and, when the scores hold influence, influence (test images
with their most influential training images). The images come from the experiment's
recorded dataset (with its corrupted labels, if it was trained on any), or from --dataset
and --data_dir. The command lives in `heldout.cli.plot_scores`.
"""

from heldout.cli.plot_scores import run

if __name__ == "__main__":
    run()
