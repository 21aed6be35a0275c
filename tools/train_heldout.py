r"""Train heldout models on MNIST-like data and write them in the released layout.

Example (the paper's MNIST settings, on Debian's Fashion-MNIST files):

    python tools/train_heldout.py --output_dir=/tmp/fashion_mnist-mlp \
        --subset_ratios=0.1,0.3,0.5,0.7,0.9 --runs_per_ratio=32 --epochs=20

Re-running the same command skips the runs already written. Each epoch of each group of
models trained together prints one line with the mean training loss, the accuracy on the
epoch's training batches (Acc-tr) and on held-out test examples (Acc-val). Several
commands may train into one --output_dir at once (e.g. one per --subset_ratios); a run
another one is training is skipped. Implementation: `heldout.cli.train_heldout`.
"""

from heldout.cli.train_heldout import run

if __name__ == "__main__":
    run()
