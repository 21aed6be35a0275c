"""heldout: the heldout-training releases, and memorization, influence and C-scores from them.

The map a user reads first. Every name here is importable as `heldout.<name>`:

    import heldout

    experiment = heldout.open_experiment("data/cifar10-inception")     # the release layout
    request = heldout.ScoreRequest(("cscore", "memorization"))
    result = heldout.score_experiment(experiment, request)
    heldout.save_scores("scores.npz", result.arrays())

    model = heldout.build_model("small_inception", 10)                 # TensorFlow from here
    heldout.restore(model, experiment.runs[0].path)
    correct = heldout.evaluate(model, heldout.get_source("cifar10", data_dir), "test")

    heldout.train_experiment(heldout.TrainingConfig(), "experiments/fashion_mnist-mlp")

Names are resolved on first use: `import heldout` imports neither TensorFlow nor Dask, so
tools that only read aux arrays start fast. The modules behind the names (`heldout.scores.experiment`,
`heldout.release.layout`, ...) stay importable for everything else.
"""

from __future__ import annotations

import importlib
from typing import Any

from heldout._core.provenance import TOOLKIT_VERSION as __version__

# public name -> module that defines it. Grouped as a user meets them.
_EXPORTS: dict[str, str] = {
    # errors: one hierarchy; a CLI prints these as one line
    "HeldoutError": "heldout.errors",
    "UsageError": "heldout.errors",
    "AuxArraysError": "heldout.errors",
    "CheckpointError": "heldout.errors",
    "DatasetError": "heldout.errors",
    "DownloadError": "heldout.errors",
    "LockBusyError": "heldout.errors",
    "ReleaseLayoutError": "heldout.errors",
    "StaleResultError": "heldout.errors",
    "TrainingError": "heldout.errors",
    # what was released
    "EXPERIMENTS": "heldout.release.registry",
    "experiment_spec": "heldout.release.registry",
    # getting it: `heldout.download.download(...)` (the subpackage keeps its name)
    # the layout: experiments, ratios, runs
    "Experiment": "heldout.release.layout",
    "ExperimentMeta": "heldout.release.layout",
    "Run": "heldout.release.layout",
    "open_experiment": "heldout.release.layout",
    "open_run": "heldout.release.layout",
    "find_experiments": "heldout.release.layout",
    "write_run": "heldout.release.layout",
    "AuxArrays": "heldout.release.aux_arrays",
    "load_aux_arrays": "heldout.release.aux_arrays",
    "read_runs": "heldout.release.reading",
    # scores (no TensorFlow)
    "score_experiment": "heldout.scores.experiment",
    "ScoreRequest": "heldout.scores.request",
    "save_scores": "heldout.scores.file",
    "load_scores": "heldout.scores.file",
    "compute_cscores": "heldout.scores.counts",
    "compute_memorization": "heldout.scores.counts",
    "compute_influence": "heldout.scores.influence",
    "ScoreAccumulator": "heldout.scores.counts",
    "ExperimentScores": "heldout.scores.results",
    "score_intervals": "heldout.scores.uncertainty",
    "plan_runs": "heldout.scores.uncertainty",
    "compute_influence_pairs": "heldout.scores.uncertainty",
    "compute_proxies": "heldout.proxies",
    "ProxyOptions": "heldout.proxies",
    "SyntheticSpec": "heldout.testing.synthetic",
    "write_synthetic_experiment": "heldout.testing.synthetic",
    # models, checkpoints, data, evaluation (TensorFlow)
    "build_model": "heldout.models",
    "restore": "heldout.models.checkpoints",
    "save_checkpoint": ("heldout.models.checkpoints", "save"),
    "get_source": "heldout.datasets",
    "evaluate": "heldout.evaluation.evaluate",
    "cross_check": "heldout.evaluation.evaluate",
    "check_run": "heldout.evaluation.evaluate",
    # training
    "TrainingConfig": "heldout.training",
    "default_config": "heldout.training",
    "train_experiment": "heldout.training",
    # many runs at once (Dask)
    "train_on_cluster": "heldout.training.fanout",
    "score_on_cluster": "heldout.scores.fanout",
    "slurm_cluster": "heldout.cluster",
    "evaluate_runs": "heldout.evaluation.fanout",
    "select_runs": "heldout.evaluation.fanout",
    # the published files and the papers' analyses
    "load_cscores": "heldout.published.cscores",
    "load_influence_pairs": "heldout.published.pairs",
    "load_classwise_influence": "heldout.published.classwise",
    "save_cscores": "heldout.published.cscores",
    "save_influence_pairs": "heldout.published.pairs",
    "compute_classwise_influence": "heldout.scores.classwise",
    "class_statistics": "heldout.published.analysis",
    # checkpoints outside TensorFlow
    "export_run": "heldout.export",
    "export_experiment": "heldout.export",
    "numpy_forward": "heldout.export",
    # figures
    "write_figures": "heldout.plots",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'heldout' has no attribute {name!r}")
    module_name, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
