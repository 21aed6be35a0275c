"""The papers' per-class analyses of C-scores: class means and SDs, and the figures.

  # the published CIFAR-10 C-scores (labels are in the file):
  python tools/analyze_scores.py --scores=../shared/data/cifar10-cscores-orig-order.npz \
      --output_dir=analysis
  # our scores, with the experiment's images for the examples figure:
  python tools/analyze_scores.py --scores=scores.npz --experiment_dir=data/cifar10-inception \
      --data_dir=~/tensorflow_datasets --output_dir=analysis

Prints the examples and classes behind every number, the most and least regular classes
and r(class mean, class SD); writes class_statistics, cscore_histogram (30 bins),
cscore_bins (our scores files) and examples (with images). ImageNet's published file
needs --allow_pickle (its `filenames` are pickled). The command lives in
`heldout.cli.analyze_scores`.
"""

from heldout.cli.analyze_scores import run

if __name__ == "__main__":
    run()
