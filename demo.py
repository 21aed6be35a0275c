"""Rebuild released models, restore their checkpoints, re-evaluate, and cross-check.

For each chosen run: restore its final checkpoint, predict the dataset, and compare the
correctness of every example with the run's `aux_arrays.npz`.

    python demo.py --model_dir=<root>/cifar10-inception/0.7/0 --data_dir=~/tensorflow_datasets
    python demo.py --experiment_dir=<root>/cifar100-inception --subset_ratio=0.7 --max_runs=3
    python demo.py                  # the project's embedded default experiment, if built

Exit status: 0 when the predictions match (all of them, or at least --min_match of them),
1 when they do not, 2 when the runs could not be evaluated (bad flags, missing or
mismatching checkpoint, missing data).

The implementation is `heldout.cli.demo` (also the `heldout-demo` entry point).
"""

from heldout.cli.demo import run

if __name__ == "__main__":
    run()
