r"""Re-evaluate and cross-check many runs of an experiment, fanned out over Dask.

  # every run with a checkpoint, on a local cluster of 4 worker processes:
  python tools/evaluate_runs.py --experiment_dir=<root>/cifar10-inception \
      --output_dir=checks/cifar10-inception --data_dir=~/tensorflow_datasets --workers=4
  # 100 runs of one ratio, in this process; rerun the same command to resume:
  python tools/evaluate_runs.py --experiment_dir=... --output_dir=... \
      --subset_ratio=0.7 --max_runs=100 --scheduler=none
  # on a running cluster (workers need `heldout` installed and the files in reach):
  python tools/evaluate_runs.py ... --scheduler=tcp://10.0.0.5:8786

One JSON record per run goes to <output_dir>/<ratio>/<run_id>.json, saying what it is a
result of; runs whose record matches their current files and options are skipped, stale
records are re-evaluated. An output folder holds one experiment's records. A run that
fails gets an error record (kept until --retry_errors, or until its files change).

Exit status: 0 when every run was checked and the predictions match (all of them, or at
least --min_match of them), 1 when some do not match or some runs failed, 2 on usage
errors (bad flags, no runs, unreachable scheduler, an output folder of another
experiment).

The implementation is `heldout.cli.evaluate_runs` (also the `heldout-evaluate` entry point).
"""

from heldout.cli.evaluate_runs import run

if __name__ == "__main__":
    run()
