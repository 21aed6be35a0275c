r"""Compute C-scores, memorization and influence of an experiment into one `.npz` file.

Example:
  python tools/compute_scores.py --experiment_dir=/data/cifar10-inception \
      --output=/tmp/cifar10-scores.npz --scores=cscore,memorization,influence

The file is written under a temporary name and renamed when complete: a failed run leaves
no output. A malformed run stops the command with a message naming its file, unless
--skip_bad_runs (then it is reported and left out). Output keys are listed in the README.
"""

from heldout.cli.compute_scores import run

if __name__ == "__main__":
    run()
