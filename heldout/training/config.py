"""What decides a heldout experiment: `TrainingConfig`, and the embedded default.

No TensorFlow here: a config is built, checked and compared with an experiment's record
(resume) before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses

from heldout.errors import TrainingError

DATASETS = ("fashion_mnist", "mnist")
ARCHS = ("mlp", "small_inception")
# Hyperparameters that define an experiment: resuming with different values would mix
# runs of different experiments in one folder (`heldout.training.record` refuses it).
DEFINING_FIELDS = (
    "dataset",
    "arch",
    "epochs",
    "batch_size",
    "learning_rate",
    "momentum",
    "warmup_fraction",
    "label_corrupt_prob",
    "seed",
    "compute_dtype",
)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what is trained.

    Attributes:
      dataset: `fashion_mnist` (default) or `mnist`.
      data_dir: a folder of IDX files or a prepared TFDS data_dir. None: Debian's
        Fashion-MNIST IDX folder (MNIST has no default). Recorded as an absolute path.
      subset_ratios: fractions of the training set each run trains on.
      runs_per_ratio: runs (models) per subset ratio; run ids 0..runs_per_ratio-1.
      epochs, batch_size, learning_rate, momentum: SGD with momentum; defaults are the
        paper's MNIST settings (Table 2: 20 epochs, batch 256, lr 0.1, momentum 0.9).
      warmup_fraction: linear warm-up over this fraction of the steps, then linear decay
        to 0 (the paper's schedule).
      models_per_step: MLPs trained simultaneously (speed only: results do not depend on it).
      label_corrupt_prob: fraction of training labels replaced by a random other class,
        once for the whole experiment.
      seed: root of every random choice.
      arch: `mlp` (stacked training) or `small_inception` (one model at a time).
      val_examples: test examples behind the per-epoch held-out accuracy (`Acc-val`); the
        first ones of the test split. Kept small: it is only a progress signal.
      eval_batch_size: batch size of the final evaluation that fills the aux arrays.
      compute_dtype: `float32`, or `bfloat16` for the MLP's matrix products.

    Raises:
      TrainingError: a value out of range (the message names the field).
    """

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    subset_ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    runs_per_ratio: int = 16
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.1
    momentum: float = 0.9
    warmup_fraction: float = 0.15
    models_per_step: int = 32
    label_corrupt_prob: float = 0.0
    seed: int = 0
    arch: str = "mlp"
    val_examples: int = 1000
    eval_batch_size: int = 500  # demo.py's default (heldout.evaluation.DEFAULT_BATCH_SIZE)
    compute_dtype: str = "float32"

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise TrainingError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.arch not in ARCHS:
            raise TrainingError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if not self.subset_ratios:
            raise TrainingError("subset_ratios is empty: give at least one ratio in (0, 1]")
        for ratio in self.subset_ratios:
            if not 0.0 < ratio <= 1.0:
                raise TrainingError(f"subset ratios must lie in (0, 1], got {ratio}")
        for name in (
            "runs_per_ratio",
            "epochs",
            "batch_size",
            "models_per_step",
            "eval_batch_size",
            "val_examples",
        ):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise TrainingError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise TrainingError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0.0 <= self.label_corrupt_prob < 1.0:
            raise TrainingError(
                f"label_corrupt_prob must be in [0, 1), got {self.label_corrupt_prob}"
            )
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise TrainingError(
                f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}"
            )

    def defining(self) -> dict:
        """The hyperparameters recorded in the experiment and checked when resuming."""
        return {name: getattr(self, name) for name in DEFINING_FIELDS}


def default_config() -> TrainingConfig:
    """The embedded default experiment (`tools/run_default.py`): small enough for a CPU.

    Fashion-MNIST from Debian's IDX files; 3 subset ratios x 32 runs x 6 epochs (the
    paper's 20 epochs gain about 1 point of test accuracy, 88% vs 87%, for 3x the time).
    0.7 is among the ratios because memorization and influence are scored there, as in
    the release. About 5 minutes on 2 CPU cores.

    Returns:
      The config `run_default` trains.
    """
    return TrainingConfig(subset_ratios=(0.3, 0.5, 0.7), runs_per_ratio=32, epochs=6)
