"""`Recipe`: how models are trained, shared by an experiment and the proxies' one run.

An experiment (`heldout.training.config.TrainingConfig`) is a recipe plus its layout
(subset ratios, runs per ratio) and speed/recording knobs; the proxies
(`heldout.proxies.compute.ProxyOptions`) train their models with a recipe too. Declared
once here, so neither copies the other's field list. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import math

from heldout.errors import TrainingError

ARCHS = ("mlp", "small_inception", "resnet50")
LR_SCHEDULES = ("linear", "step")
DEFAULT_MLP_HIDDEN_SIZES = (512, 256)  # the published MNIST MLP (heldout.models.MLP)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the trained models learn and how: data, model, optimisation, seed.

    Defaults are the paper's MNIST recipe (Table 2: 20 epochs, batch 256, lr 0.1,
    momentum 0.9), so `Recipe()` trains what `train_heldout` trains by default.

    Attributes:
      dataset: `fashion_mnist` (default) or `mnist` (IDX files or TFDS), `npz` (a .npz
        file), or the name of any TFDS image-classification dataset (`cifar10`, ...);
        see `heldout.training.data`. `TrainingConfig.for_dataset` applies the papers'
        recipe of a CIFAR dataset.
      data_dir: a folder of IDX files, a prepared TFDS data_dir, or the .npz file. None:
        Debian's Fashion-MNIST IDX folder (others have no default). Recorded as an
        absolute path.
      arch: `mlp` (stacked training), `small_inception` or `resnet50` (one model at a
        time, on the GPU when TensorFlow sees one).
      mlp_hidden_sizes: the MLP's hidden layer sizes (`--mlp_spec`); default (512, 256),
        the published MNIST MLP; (512,) is one hidden layer of 512 units. MLP only.
      epochs, batch_size, learning_rate, momentum: SGD with momentum; defaults are the
        paper's MNIST settings.
      warmup_fraction: linear warm-up over this fraction of the steps, then the
        `lr_schedule`.
      lr_schedule: after the warm-up, `linear` decay to 0 (the paper's MNIST and CIFAR
        schedule, default) or `step`: the base rate, times 0.1 at 30%, 60% and 90% of
        the steps (the paper's ImageNet schedule).
      weight_decay: L2 penalty `weight_decay / 2 * sum ||W||^2` over the weight matrices
        (not the biases), i.e. `weight_decay * W` added to each weight gradient. Default
        0: the paper's MNIST runs use none. The reported losses are the cross-entropy only.
      augment: the CIFAR training augmentation: zero-pad 4 pixels, random crop back to
        the image size, random left-right flip; drawn per run from its seed (stream
        `augment` of `heldout.training.plan.run_rngs`), never applied at evaluation.
        Convolutional architectures only (the MLP is trained stacked, unaugmented).
      compute_dtype: `float32`, or `bfloat16` for the matrix products and convolutions
        (mixed precision: weights, batch normalisation, loss and checkpoints stay
        float32; `heldout.training.precision`). Resolve `auto` with
        `precision.resolve_compute_dtype` first: the experiment records the dtype used.
      label_corrupt_prob: fraction of training labels corrupted once for the whole
        experiment. Below 1: that fraction gets a random *other* class (unchanged since
        the first experiments, so they stay reproducible). Exactly 1: "random labels"
        (Zhang et al., 2017): every label is redrawn uniformly over all classes,
        independently of the image, so about 1/C of them equal the original
        (`heldout.release.label_corruption.corrupt_labels`).
      seed: root of every random choice (and of the label corruption).

    Raises:
      TrainingError: a value out of range (the message names the field).
    """

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    arch: str = "mlp"
    mlp_hidden_sizes: tuple[int, ...] = DEFAULT_MLP_HIDDEN_SIZES
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.1
    momentum: float = 0.9
    warmup_fraction: float = 0.15
    lr_schedule: str = "linear"
    weight_decay: float = 0.0
    augment: bool = False
    compute_dtype: str = "float32"
    label_corrupt_prob: float = 0.0
    seed: int = 0

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
        self._refuse_mlp_options(self.augment)
        if self.arch not in ARCHS:
            raise TrainingError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        # Written so that NaN fails each test: a NaN or infinite rate trains NaN models.
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise TrainingError(
                f"learning_rate must be positive and finite, got {self.learning_rate}"
            )
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise TrainingError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise TrainingError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0.0 <= self.label_corrupt_prob <= 1.0:
            raise TrainingError(
                f"label_corrupt_prob must be in [0, 1], got {self.label_corrupt_prob}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0.0):
            raise TrainingError(
                f"weight_decay must be at least 0 and finite, got {self.weight_decay}"
            )
        if not self.mlp_hidden_sizes or min(self.mlp_hidden_sizes) < 1:
            raise TrainingError(
                "mlp_hidden_sizes must be one or more positive layer sizes, got "
                f"{self.mlp_hidden_sizes}"
            )
        if self.arch != "mlp" and self.mlp_hidden_sizes != DEFAULT_MLP_HIDDEN_SIZES:
            raise TrainingError(f"mlp_hidden_sizes applies to arch mlp only, not {self.arch}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise TrainingError(
                f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}"
            )

    def _refuse_mlp_options(self, convolutional_only: object) -> None:
        """Refuses `augment` (or `TrainingConfig.checkpoint_every`) for the MLP."""
        if self.arch == "mlp" and convolutional_only:
            raise TrainingError(
                "augment and checkpoint_every apply to the convolutional architectures "
                "(small_inception, resnet50), not to the MLP, trained stacked in minutes"
            )

    @property
    def recipe(self) -> Recipe:
        """This recipe alone (for a `TrainingConfig`: without its layout and knobs)."""
        return recipe_of(self)


def recipe_fields() -> tuple[str, ...]:
    """The names of `Recipe`'s fields, in declaration order."""
    return tuple(field.name for field in dataclasses.fields(Recipe))


def recipe_of(value: Recipe) -> Recipe:
    """The `Recipe` part of `value` (a `Recipe` or any subclass, e.g. `TrainingConfig`)."""
    if type(value) is Recipe:
        return value
    return Recipe(**{name: getattr(value, name) for name in recipe_fields()})
