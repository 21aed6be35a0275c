r"""Brings a published per-example score file from the original order into TFDS order.

  python tools/map_order.py --scores=../shared/data/cifar10-cscores-orig-order.npz \
      --dataset=cifar10 --data_dir=~/tensorflow_datasets --output=cifar10-cscores-tfds.npz

The released checkpoints' `index_*` arrays are TFDS positions, while the published
C-scores are in the original CIFAR order. The mapping comes from CIFAR's `id` feature, or
for MNIST-like data from matching images against the IDX files (--idx_dir). When the score
file carries `labels`, they are checked against the TFDS labels after the move. Output
keys: `scores`, `labels` (TFDS order), `original_index` (original position of each TFDS
example) and `provenance` (what the file was made from). The command lives in
`heldout.cli.map_order`.
"""

from heldout.cli.map_order import run

if __name__ == "__main__":
    run()
