"""What decides a heldout experiment: `TrainingConfig` (a `Recipe` plus its layout), the
papers' recipes and the embedded default.

No TensorFlow here: a config is built, checked and compared with an experiment's record
(resume) before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses

from heldout.errors import TrainingError
from heldout.training.recipe import ARCHS as ARCHS  # the CLI's choices read it here
from heldout.training.recipe import DEFAULT_MLP_HIDDEN_SIZES, Recipe, recipe_fields

# Names read from a folder of IDX files when --data_dir is one (else from a TFDS data_dir).
DATASETS = ("fashion_mnist", "mnist")
NPZ_DATASET = "npz"  # --data_dir is a .npz file (x_train, y_train, x_test, y_test)
# The step schedule's boundaries (fractions of all steps) and factor: ImageNet's ResNet-50
# recipe (Table 2 of the paper: ramp-up 15%, then x0.1 at 30%, 60% and 90%).
STEP_BOUNDARIES = (0.3, 0.6, 0.9)
STEP_FACTOR = 0.1
# Hyperparameters that define an experiment: resuming with different values would mix
# runs of different experiments in one folder (`heldout.training.record` refuses it).
# The `Recipe` fields but `data_dir` (a test keeps them so), in the order of the record.
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
    "weight_decay",
    "mlp_hidden_sizes",
    "augment",
    "lr_schedule",
)
# What experiments recorded before a defining field existed were trained with: a record
# without the field is read as this value, so adding a field does not refuse their resume.
LEGACY_DEFINING_VALUES = {
    "weight_decay": 0.0,
    "mlp_hidden_sizes": [512, 256],
    "augment": False,
    "lr_schedule": "linear",
}
# The papers' recipes (Table 2) that differ from the MNIST defaults of `TrainingConfig`,
# by TFDS dataset name: SmallInception, batch 512, base lr 0.4, linear ramp-up/down, 80
# (CIFAR-10) or 160 (CIFAR-100) epochs, and the CIFAR training augmentation (zero-pad 4
# and random-crop back, random left-right flip). Weight decay: the table gives none.
RECIPES = {
    "cifar10": {
        "arch": "small_inception",
        "epochs": 80,
        "batch_size": 512,
        "learning_rate": 0.4,
        "augment": True,
    },
    "cifar100": {
        "arch": "small_inception",
        "epochs": 160,
        "batch_size": 512,
        "learning_rate": 0.4,
        "augment": True,
    },
}


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Recipe):
    """Everything that decides what is trained: a `Recipe`, then the experiment's layout.

    The recipe's attributes (dataset, data_dir, arch, mlp_hidden_sizes, epochs,
    batch_size, learning_rate, momentum, warmup_fraction, lr_schedule, weight_decay,
    augment, compute_dtype, label_corrupt_prob, seed) are documented on
    `heldout.training.recipe.Recipe`; `config.recipe` is that part alone, and
    `TrainingConfig.from_recipe` builds a config from one.

    Attributes:
      subset_ratios: fractions of the training set each run trains on.
      runs_per_ratio: runs (models) per subset ratio; run ids 0..runs_per_ratio-1.
      models_per_step: MLPs trained simultaneously (speed only: results do not depend on it).
      val_examples: test examples behind the per-epoch held-out accuracy (`Acc-val`); the
        first ones of the test split. Kept small: it is only a progress signal.
      eval_batch_size: batch size of the final evaluation that fills the aux arrays.
      record_heldout_probs: each run also writes `heldout_probs.npz`, the softmax of its
        held-out training examples (float16, with their index): out-of-sample
        probabilities for the soft C-score and for cleanlab. Not a defining field:
        it changes no model, and `aux_arrays.npz` stays byte-identical.
      checkpoint_every: every this many epochs, a mid-training checkpoint of the run
        (`heldout.training.partial`), from which an interrupted run continues to the
        very model an uninterrupted run gives; 0 (default): none. Not a defining field:
        it changes no result. Convolutional architectures only.

    Raises:
      TrainingError: a value out of range (the message names the field).
    """

    subset_ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    runs_per_ratio: int = 16
    models_per_step: int = 32
    val_examples: int = 1000
    eval_batch_size: int = 500  # demo.py's default (heldout.evaluation.evaluate.DEFAULT_BATCH_SIZE)
    record_heldout_probs: bool = False
    checkpoint_every: int = 0

    @classmethod
    def from_recipe(cls, recipe: Recipe, **settings) -> TrainingConfig:
        """The config that trains with `recipe`, laid out by `settings`.

        Args:
          recipe: the recipe (a `TrainingConfig`'s own recipe part is taken alone).
          **settings: the other attributes (subset_ratios, runs_per_ratio, ...); a
            recipe attribute given here wins over `recipe`'s.

        Returns:
          The config.

        Raises:
          TrainingError: a value out of range.
        """
        values = {name: getattr(recipe, name) for name in recipe_fields()}
        return cls(**{**values, **settings})

    @classmethod
    def for_dataset(cls, dataset: str, **settings) -> TrainingConfig:
        """The config of `dataset` with the papers' recipe for it, then `settings`.

        Args:
          dataset: as the `dataset` attribute; a CIFAR name (`cifar10`, `cifar100`, with
            or without `:version`) brings its recipe (`RECIPES`), others the MNIST one.
          **settings: any other attribute; these win over the recipe.

        Returns:
          The config.

        Raises:
          TrainingError: a value out of range.
        """
        recipe = RECIPES.get(dataset.split(":", 1)[0], {})
        return cls(**{**recipe, **settings, "dataset": dataset})

    def __post_init__(self):
        super().__post_init__()
        if int(self.checkpoint_every) < 0:
            raise TrainingError(
                f"checkpoint_every must be at least 0 (0: none), got {self.checkpoint_every}"
            )
        self._refuse_mlp_options(self.checkpoint_every)
        if not self.subset_ratios:
            raise TrainingError("subset_ratios is empty: give at least one ratio in (0, 1]")
        for ratio in self.subset_ratios:
            if not 0.0 < ratio <= 1.0:
                raise TrainingError(f"subset ratios must lie in (0, 1], got {ratio}")
        for name in ("runs_per_ratio", "models_per_step", "eval_batch_size", "val_examples"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")

    def defining(self) -> dict:
        """The hyperparameters recorded in the experiment and checked when resuming.

        In their JSON form (tuples as lists), so a value read back from the record
        compares equal.
        """
        values = {name: getattr(self, name) for name in DEFINING_FIELDS}
        values["mlp_hidden_sizes"] = list(self.mlp_hidden_sizes)
        return values

    @property
    def model_arch(self) -> str:
        """The architecture name recorded in the experiment (`heldout.models.build_model`).

        `mlp` for the default hidden sizes, `mlp:<sizes>` (e.g. `mlp:512`) for others, so
        demo.py and evaluate_runs rebuild the runs' model from the record alone. Written
        here rather than imported from `heldout.models.naming` (`mlp_arch`), whose package
        imports TensorFlow; a test keeps the two in agreement.
        """
        if self.arch != "mlp" or self.mlp_hidden_sizes == DEFAULT_MLP_HIDDEN_SIZES:
            return self.arch
        return "mlp:" + ",".join(str(size) for size in self.mlp_hidden_sizes)


def default_config() -> TrainingConfig:
    """The embedded default experiment (`tools/run_default.py`): small enough for a CPU.

    Fashion-MNIST from Debian's IDX files; 3 subset ratios x 32 runs x 6 epochs (fewer
    than the paper's 20: a small loss of test accuracy for a third of the time). 0.7 is
    among the ratios because memorization and influence are scored there, as in the
    release.

    Args:
      (none: the default is one fixed experiment, so every machine caches the same one.)

    Returns:
      The config `run_default` trains.

    Raises:
      (nothing: the recipe's values are constants checked by the tests.)
    """
    return TrainingConfig(subset_ratios=(0.3, 0.5, 0.7), runs_per_ratio=32, epochs=6)
