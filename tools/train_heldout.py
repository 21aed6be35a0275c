r"""Train heldout models on MNIST-like data and write them in the released layout.

Example (the paper's MNIST settings, on Debian's Fashion-MNIST files):

    python tools/train_heldout.py --output_dir=/tmp/fashion_mnist-mlp \
        --subset_ratios=0.1,0.3,0.5,0.7,0.9 --runs_per_ratio=32 --epochs=20

Random labels (Zhang et al., 2017): every example trained on, every label redrawn
uniformly, one hidden layer of 512 units:

    python tools/train_heldout.py --output_dir=/tmp/random-labels --subset_ratios=1.0 \
        --runs_per_ratio=1 --label_corrupt_prob=1.0 --mlp_spec=512 --epochs=400

Re-running the same command skips the runs already written. Each group of models trained
together gets a heading line, then one line per epoch, means over the group:
`000: Acc-tr:  58.49, Acc-val: 56.92, L-tr: 1.1574, L-val: 1.1857` (accuracy on the
epoch's training batches and on the first --val_examples test examples, in percent, and
the two cross-entropies). Several commands may train into one --output_dir at once (e.g.
one per --subset_ratios); a run another one is training is skipped. Implementation:
`heldout.cli.train_heldout`.
"""

from heldout.cli.train_heldout import run

if __name__ == "__main__":
    run()
