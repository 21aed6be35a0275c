"""Checks the papers' published score files, and writes our scores in their formats.

  # what a published file holds (any format; ImageNet's matrix parts joined with "+"):
  python tools/published_scores.py \
      --inspect=../shared/data/cifar100_high_infl_pairs_infl0.15_mem0.25.npz
  # our C-scores as a published C-score file (labels from the experiment's dataset):
  python tools/published_scores.py --export=cscores --scores=scores.npz \
      --experiment_dir=data/cifar10-inception --output=cifar10-cscores-tfds-order.npz
  # high-influence pairs with the published thresholds (0.15, 0.25):
  python tools/published_scores.py --export=pairs --scores=infl.npz \
      --output=cifar100_high_infl_pairs_infl0.15_mem0.25.npz
  # class-wise influence matrices from the runs, class by class (ImageNet fits in a few GB):
  python tools/published_scores.py --export=classwise --experiment_dir=data/imagenet-resnet50 \
      --labels=imagenet_labels.npz --output=imagenet_infl_matrix.npz

ImageNet's C-score file needs --allow_pickle (its `filenames` are pickled). The command
lives in `heldout.cli.published_scores`.
"""

from heldout.cli.published_scores import run

if __name__ == "__main__":
    run()
