"""Cheap proxies for the C-score from one training run, measured against a holdout C-score.

    recipe = heldout.training.Recipe(dataset="fashion_mnist", epochs=20)
    result = compute_proxies(ProxyOptions(recipe=recipe, num_seeds=2))
    scores = result.arrays()  # the keys of tools/compute_proxies.py's output file

Modules, each with one job: `learning_speed` (CBTL and its relatives from a per-epoch
table), `confidence` (softmax confidences), `kde` (kernel densities, tiled over all pairs),
`ranking` (Spearman and Kendall tau-b against a reference), `reference` (the reference
scores file, checked), `recording` (the per-epoch statistics, a training-loop hook) and
`compute` (the entry point the CLI calls). Only `compute` imports TensorFlow, and only
when it trains.
"""

from heldout.proxies.compute import PROXY_GROUPS, ProxyOptions, ProxyResult, compute_proxies
from heldout.proxies.kde import kde_bandwidth, kde_proxies
from heldout.proxies.learning_speed import learning_speed_proxies
from heldout.proxies.ranking import kendall_tau_b, spearman_rho

__all__ = [
    "PROXY_GROUPS",
    "ProxyOptions",
    "ProxyResult",
    "compute_proxies",
    "kde_bandwidth",
    "kde_proxies",
    "kendall_tau_b",
    "learning_speed_proxies",
    "spearman_rho",
]
