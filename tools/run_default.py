"""The embedded default: train a small Fashion-MNIST experiment, cross-check, score, plot.

    python tools/run_default.py [--output_dir=./default_output]

1. Builds the default experiment (`heldout.training.default_config()`: MLPs on random
   subsets of Fashion-MNIST, in the released layout) once, cached at
   `$HELDOUT_HOME/experiments/fashion_mnist-mlp` (default `~/.cache/heldout/...`); a
   later call reuses it, and an interrupted build resumes where it stopped.
2. Restores one run's checkpoint and re-evaluates it as demo.py does: every prediction
   must match its aux arrays (N out of N).
3. Computes C-scores, memorization and the top influences (`<output_dir>/scores.npz`).
4. Draws the figures into `<output_dir>/figures/` (PDF and PNG).

Exit status 0 when everything ran and the cross-check matched, 1 otherwise (an expected
error prints one line, no traceback). Implementation: `heldout.cli.run_default`.
"""

from heldout.cli.run_default import run

if __name__ == "__main__":
    run()
