"""heldout: the heldout-training releases, and memorization, influence and C-scores from them.

The map a user reads first: the verbs below, and the namespaces (`heldout.release`,
`heldout.scores`, `heldout.published`, `heldout.datasets`, `heldout.models`,
`heldout.evaluation`, `heldout.export`, `heldout.training`, `heldout.proxies`,
`heldout.kernels`, `heldout.plots`, `heldout.testing`, `heldout.download`,
`heldout.cluster`, `heldout.errors`; `heldout.cli` is the command line).

    import heldout

    experiment = heldout.open_experiment("data/cifar10-inception")     # the release layout
    request = heldout.ScoreRequest(scores=("cscore", "memorization"))
    heldout.save_scores("scores.npz", heldout.score_experiment(experiment, request).arrays())

    model = heldout.build_model("small_inception", 10)                 # TensorFlow from here
    heldout.restore(model, experiment.runs[0].path)

Names are resolved on first use, so `import heldout` imports neither TensorFlow nor Dask
and tools that only read aux arrays start fast. Every name is also written out below for
type checkers, IDEs and `help()`. Internals (`heldout._core`, the influence backends) are
not part of this map.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heldout.cluster import slurm_cluster
    from heldout.datasets import get_source
    from heldout.errors import (
        AuxArraysError,
        CheckpointError,
        DatasetError,
        DownloadError,
        HeldoutError,
        LockBusyError,
        ReleaseLayoutError,
        StaleResultError,
        TrainingError,
        UsageError,
    )
    from heldout.evaluation.evaluate import check_run, cross_check, evaluate
    from heldout.evaluation.fanout import evaluate_runs, select_runs
    from heldout.export import export_experiment, export_run, numpy_forward
    from heldout.models import build_model
    from heldout.models.checkpoints import restore
    from heldout.models.checkpoints import save as save_checkpoint
    from heldout.plots import write_figures
    from heldout.proxies import ProxyOptions, compute_proxies
    from heldout.published.analysis import class_statistics
    from heldout.published.classwise import load_classwise_influence
    from heldout.published.cscores import load_cscores, save_cscores
    from heldout.published.pairs import load_influence_pairs, save_influence_pairs
    from heldout.release.aux_arrays import AuxArrays, load_aux_arrays
    from heldout.release.layout import (
        Experiment,
        ExperimentMeta,
        Run,
        find_experiments,
        open_experiment,
        open_run,
        write_run,
    )
    from heldout.release.reading import read_runs
    from heldout.release.registry import EXPERIMENTS, experiment_spec
    from heldout.scores.classwise import compute_classwise_influence
    from heldout.scores.counts import ScoreAccumulator, compute_cscores, compute_memorization
    from heldout.scores.experiment import score_experiment
    from heldout.scores.fanout import score_on_cluster
    from heldout.scores.file import load_scores, save_scores
    from heldout.scores.influence import compute_influence
    from heldout.scores.request import ScoreRequest
    from heldout.scores.results import ExperimentScores
    from heldout.scores.uncertainty import compute_influence_pairs, plan_runs, score_intervals
    from heldout.testing.synthetic import SyntheticSpec, write_synthetic_experiment
    from heldout.training import Recipe, TrainingConfig, default_config, train_experiment
    from heldout.training.fanout import train_on_cluster

# public name -> module that defines it (or (module, attribute)). Grouped as a user meets them.
_EXPORTS: dict[str, str | tuple[str, str]] = {
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
    "Recipe": "heldout.training",
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


# subpackages reachable as `heldout.<name>` without importing them first
_NAMESPACES = frozenset(
    {
        "cli",
        "cluster",
        "datasets",
        "download",
        "errors",
        "evaluation",
        "export",
        "kernels",
        "models",
        "plots",
        "proxies",
        "published",
        "release",
        "scores",
        "testing",
        "training",
    }
)
_VERSION = ("heldout._core.provenance", "TOOLKIT_VERSION")

__all__ = [
    "AuxArrays",
    "AuxArraysError",
    "CheckpointError",
    "DatasetError",
    "DownloadError",
    "EXPERIMENTS",
    "Experiment",
    "ExperimentMeta",
    "ExperimentScores",
    "HeldoutError",
    "LockBusyError",
    "ProxyOptions",
    "Recipe",
    "ReleaseLayoutError",
    "Run",
    "ScoreAccumulator",
    "ScoreRequest",
    "StaleResultError",
    "SyntheticSpec",
    "TrainingConfig",
    "TrainingError",
    "UsageError",
    "build_model",
    "check_run",
    "class_statistics",
    "compute_classwise_influence",
    "compute_cscores",
    "compute_influence",
    "compute_influence_pairs",
    "compute_memorization",
    "compute_proxies",
    "cross_check",
    "default_config",
    "evaluate",
    "evaluate_runs",
    "experiment_spec",
    "export_experiment",
    "export_run",
    "find_experiments",
    "get_source",
    "load_aux_arrays",
    "load_classwise_influence",
    "load_cscores",
    "load_influence_pairs",
    "load_scores",
    "numpy_forward",
    "open_experiment",
    "open_run",
    "plan_runs",
    "read_runs",
    "restore",
    "save_checkpoint",
    "save_cscores",
    "save_influence_pairs",
    "save_scores",
    "score_experiment",
    "score_intervals",
    "score_on_cluster",
    "select_runs",
    "slurm_cluster",
    "train_experiment",
    "train_on_cluster",
    "write_figures",
    "write_run",
    "write_synthetic_experiment",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        module_name, attribute = _VERSION
    elif name in _NAMESPACES:
        module_name, attribute = f"heldout.{name}", None
    elif name in _EXPORTS:
        target = _EXPORTS[name]
        module_name, attribute = target if isinstance(target, tuple) else (target, name)
    else:
        raise AttributeError(f"module 'heldout' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    # Importing a submodule binds it here; internals stay off the map.
    globals().pop("_core", None)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | _NAMESPACES)
