"""Heldout training on image-classification data, written in the released layout.

    config = TrainingConfig(subset_ratios=(0.3, 0.7), runs_per_ratio=16, epochs=6)
    result = train_experiment(config, "experiments/fashion_mnist-mlp", on_event=print)
    cifar = TrainingConfig.for_dataset("cifar10", data_dir="~/tensorflow_datasets")

Modules, each with one job (none but `loops` and `stacked_mlp` imports TensorFlow on
import): `recipe` (how models are trained, shared with the proxies), `config` (what an
experiment trains: a recipe plus its layout, and the papers' recipes), `plan` (each
run's subset, random streams and schedule), `data` (the source -- IDX files, a .npz, any
TFDS dataset -- in memory, and its record), `record` (`experiment.json`), `resume`
(finished, invalid and leftover runs), `run_record` (the sizes a finished run is checked
against), `legacy_runs` (runs written before that record), `divergence` (runs whose loss
became NaN), `partial` (mid-training checkpoints of a run), `augment` (the CIFAR
training augmentation), `locks` (several trainers in one folder), `experiment` (the
driver), `fanout` (the same on a Dask cluster), `events` (what is reported), `loops` and
`stacked_mlp` (TensorFlow), `precision` (mixed precision).
"""

from heldout.errors import TrainingError
from heldout.training.config import DATASETS, RECIPES, TrainingConfig, default_config
from heldout.training.events import (
    EpochLog,
    Event,
    OutputsPacked,
    RunDiverged,
    RunSetAside,
    RunsSkipped,
    RunWritten,
    TemporariesRemoved,
    TrainingPlan,
    TrainingResult,
)
from heldout.training.experiment import train_experiment
from heldout.training.plan import run_subset, subset_size
from heldout.training.recipe import ARCHS, LR_SCHEDULES, Recipe

__all__ = [
    "ARCHS",
    "DATASETS",
    "LR_SCHEDULES",
    "RECIPES",
    "Recipe",
    "EpochLog",
    "Event",
    "OutputsPacked",
    "RunDiverged",
    "RunSetAside",
    "RunWritten",
    "RunsSkipped",
    "TemporariesRemoved",
    "TrainingConfig",
    "TrainingError",
    "TrainingPlan",
    "TrainingResult",
    "default_config",
    "run_subset",
    "subset_size",
    "train_experiment",
]
