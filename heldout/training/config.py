"""What decides a heldout experiment: `TrainingConfig`, and the embedded default.

No TensorFlow here: a config is built, checked and compared with an experiment's record
(resume) before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses

from heldout.errors import TrainingError

# Names read from a folder of IDX files when --data_dir is one (else from a TFDS data_dir).
DATASETS = ("fashion_mnist", "mnist")
NPZ_DATASET = "npz"  # --data_dir is a .npz file (x_train, y_train, x_test, y_test)
ARCHS = ("mlp", "small_inception", "resnet50")
LR_SCHEDULES = ("linear", "step")
# The step schedule's boundaries (fractions of all steps) and factor: ImageNet's ResNet-50
# recipe (Table 2 of the paper: ramp-up 15%, then x0.1 at 30%, 60% and 90%).
STEP_BOUNDARIES = (0.3, 0.6, 0.9)
STEP_FACTOR = 0.1
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
DEFAULT_MLP_HIDDEN_SIZES = (512, 256)  # the published MNIST MLP (heldout.models.MLP)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what is trained.

    Attributes:
      dataset: `fashion_mnist` (default) or `mnist` (IDX files or TFDS), `npz` (a .npz
        file), or the name of any TFDS image-classification dataset (`cifar10`, ...);
        see `heldout.training.data`. `TrainingConfig.for_dataset` applies the papers'
        recipe of a CIFAR dataset.
      data_dir: a folder of IDX files, a prepared TFDS data_dir, or the .npz file. None:
        Debian's Fashion-MNIST IDX folder (others have no default). Recorded as an
        absolute path.
      subset_ratios: fractions of the training set each run trains on.
      runs_per_ratio: runs (models) per subset ratio; run ids 0..runs_per_ratio-1.
      epochs, batch_size, learning_rate, momentum: SGD with momentum; defaults are the
        paper's MNIST settings (Table 2: 20 epochs, batch 256, lr 0.1, momentum 0.9).
      warmup_fraction: linear warm-up over this fraction of the steps, then the
        `lr_schedule`.
      lr_schedule: after the warm-up, `linear` decay to 0 (the paper's MNIST and CIFAR
        schedule, default) or `step`: the base rate, times 0.1 at 30%, 60% and 90% of
        the steps (the paper's ImageNet schedule).
      augment: the CIFAR training augmentation: zero-pad 4 pixels, random crop back to
        the image size, random left-right flip; drawn per run from its seed (stream
        `augment` of `heldout.training.plan.run_rngs`), never applied at evaluation.
        Convolutional architectures only (the MLP is trained stacked, unaugmented).
      checkpoint_every: every this many epochs, a mid-training checkpoint of the run
        (`heldout.training.partial`), from which an interrupted run continues to the
        very model an uninterrupted run gives; 0 (default): none. Not a defining field:
        it changes no result. Convolutional architectures only.
      models_per_step: MLPs trained simultaneously (speed only: results do not depend on it).
      label_corrupt_prob: fraction of training labels corrupted once for the whole
        experiment. Below 1: that fraction gets a random *other* class (unchanged since
        the first experiments, so they stay reproducible). Exactly 1: "random labels"
        (Zhang et al., 2017): every label is redrawn uniformly over all classes,
        independently of the image, so about 1/C of them equal the original
        (`heldout.release.label_corruption.corrupt_labels`).
      seed: root of every random choice.
      arch: `mlp` (stacked training), `small_inception` or `resnet50` (one model at a
        time, on the GPU when TensorFlow sees one).
      val_examples: test examples behind the per-epoch held-out accuracy (`Acc-val`); the
        first ones of the test split. Kept small: it is only a progress signal.
      eval_batch_size: batch size of the final evaluation that fills the aux arrays.
      compute_dtype: `float32`, or `bfloat16` for the matrix products and convolutions
        (mixed precision: weights, batch normalisation, loss and checkpoints stay
        float32; `heldout.training.precision`). Resolve `auto` with
        `precision.resolve_compute_dtype` first: the experiment records the dtype used.
      weight_decay: L2 penalty `weight_decay / 2 * sum ||W||^2` over the weight matrices
        (not the biases), i.e. `weight_decay * W` added to each weight gradient. Default
        0: the paper's MNIST runs use none. The reported losses are the cross-entropy only.
      mlp_hidden_sizes: the MLP's hidden layer sizes (`--mlp_spec`); default (512, 256),
        the published MNIST MLP; (512,) is one hidden layer of 512 units. MLP only.
      record_heldout_probs: each run also writes `heldout_probs.npz`, the softmax of its
        held-out training examples (float16, with their index): out-of-sample
        probabilities for the soft C-score and for cleanlab. Not a defining field:
        it changes no model, and `aux_arrays.npz` stays byte-identical.

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
    eval_batch_size: int = 500  # demo.py's default (heldout.evaluation.evaluate.DEFAULT_BATCH_SIZE)
    compute_dtype: str = "float32"
    weight_decay: float = 0.0
    mlp_hidden_sizes: tuple[int, ...] = DEFAULT_MLP_HIDDEN_SIZES
    record_heldout_probs: bool = False
    augment: bool = False
    lr_schedule: str = "linear"
    checkpoint_every: int = 0

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
        # Frozen: normalise through object.__setattr__ (a list from a caller, numpy ints).
        object.__setattr__(
            self, "mlp_hidden_sizes", tuple(int(size) for size in self.mlp_hidden_sizes)
        )
        if not isinstance(self.dataset, str) or not self.dataset:
            raise TrainingError(
                f"dataset must name the data (fashion_mnist, mnist, npz or a TFDS dataset), "
                f"got {self.dataset!r}"
            )
        object.__setattr__(self, "augment", bool(self.augment))
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(
                f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if int(self.checkpoint_every) < 0:
            raise TrainingError(
                f"checkpoint_every must be at least 0 (0: none), got {self.checkpoint_every}"
            )
        if self.arch == "mlp" and (self.augment or self.checkpoint_every):
            raise TrainingError(
                "augment and checkpoint_every apply to the convolutional architectures "
                "(small_inception, resnet50), not to the MLP, trained stacked in minutes"
            )
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
        if not 0.0 <= self.label_corrupt_prob <= 1.0:
            raise TrainingError(
                f"label_corrupt_prob must be in [0, 1], got {self.label_corrupt_prob}"
            )
        if not self.weight_decay >= 0.0:  # also refuses NaN
            raise TrainingError(f"weight_decay must be at least 0, got {self.weight_decay}")
        if not self.mlp_hidden_sizes or min(self.mlp_hidden_sizes) < 1:
            raise TrainingError(
                "mlp_hidden_sizes must be one or more positive layer sizes, got "
                f"{self.mlp_hidden_sizes}"
            )
        if self.arch != "mlp" and self.mlp_hidden_sizes != DEFAULT_MLP_HIDDEN_SIZES:
            raise TrainingError(
                f"mlp_hidden_sizes (--mlp_spec) applies to arch mlp only, not {self.arch}"
            )
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise TrainingError(
                f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}"
            )

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

    Fashion-MNIST from Debian's IDX files; 3 subset ratios x 32 runs x 6 epochs (the
    paper's 20 epochs gain about 1 point of test accuracy, 88% vs 87%, for 3x the time).
    0.7 is among the ratios because memorization and influence are scored there, as in
    the release. About 5 minutes on 2 CPU cores.

    Returns:
      The config `run_default` trains.
    """
    return TrainingConfig(subset_ratios=(0.3, 0.5, 0.7), runs_per_ratio=32, epochs=6)
