r"""C-score proxies from one training run, measured against a holdout C-score.

Example (Fashion-MNIST, the paper's MNIST recipe, against an experiment's C-scores):
  python tools/compute_proxies.py --output=/tmp/proxies.npz \
      --reference=/tmp/fashion-scores.npz --reference_experiment_dir=/tmp/fashion-mnist \
      --figure=/tmp/proxies.png

Quick look (first 2 000 examples, 2 epochs, no reference):
  python tools/compute_proxies.py --num_train=2000 --epochs=2 --output=/tmp/p.npz

Output keys: `index`, `labels`, one array per proxy (`cbtl`, `cumulative_loss`,
`forgetting_events`, `first_learned_epoch`, `p_label`, `p_label_mean`, `p_max`,
`p_max_mean`, `entropy`, `entropy_mean`, `kde_input_*`, `kde_hidden_*` with `*` one of
`pm_label`, `label`, `unlabeled`), `kde_bandwidth_input`, `kde_bandwidth_hidden` (per
seed), `provenance`; with --reference also `reference`, `spearman_<proxy>`,
`kendall_<proxy>`, `spearman_by_epoch_<proxy>` (rho of the proxy oriented so that higher
means more regular) and, with --reference_experiment_dir, `reference_split_half_rho`.
Definitions: `heldout.proxies`. Nothing is written when a check fails.
"""

from heldout.cli.compute_proxies import run

if __name__ == "__main__":
    run()
