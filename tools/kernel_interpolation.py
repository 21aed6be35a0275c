"""Minimum-norm RBF kernel interpolation of MNIST-like training labels (Zhang et al., 2017).

Example (the FAQ's recipe, on Debian's Fashion-MNIST: gamma 0.02 on pixels in [0, 1],
all 60 000 training examples, 14.4 GB of memory in float32):

    python tools/kernel_interpolation.py --output=/tmp/kernel.npz
    python tools/kernel_interpolation.py --label_corrupt_prob=1.0 --output=/tmp/random.npz

Solves K alpha = Y (one-hot labels) by an in-place Cholesky factorization with iterative
refinement, prints the stages, the relative residual, the training error (0% for an
exact interpolant) and `err = X.XX%` on the test split. A numerically singular system is
an error that says what to change (--dtype=float64 for a smaller --num_train, or
--jitter). Implementation: `heldout.cli.kernel_interpolation`, `heldout.kernels.interpolation`.
"""

from heldout.cli.kernel_interpolation import run

if __name__ == "__main__":
    run()
