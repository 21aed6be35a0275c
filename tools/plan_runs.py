r"""How reliable is each score's ranking, and how many runs per ratio are enough?

Example:
  python tools/plan_runs.py --experiment_dir=data/cifar10-inception \
      --scores=cscore,memorization --target_rho=0.9 --output=plan.json --figure=plan.png

Works on the aux arrays alone, so it can run on the first few hundred downloaded runs
before committing to more. Per score it prints the runs per ratio read, the measured
split-half reliability (Spearman rho between the scores of two random halves of every
ratio's runs, averaged over --repeats splits), the predicted reliability at 2x, 4x and 8x
the runs (from the deconvolved distribution of true values, not Spearman-Brown, which
over-predicts for ranks of binomial estimates), and the runs per ratio for --target_rho.
--output writes the same as JSON; --figure draws reliability against runs.
The command lives in `heldout.cli.plan_runs`.
"""

from heldout.cli.plan_runs import run

if __name__ == "__main__":
    run()
