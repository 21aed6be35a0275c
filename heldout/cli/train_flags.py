"""The data and label-noise flags that `train_heldout` and `kernel_interpolation` share.

Both commands learn from the same MNIST-like training sets, so `--dataset`, `--data_dir`,
`--label_corrupt_prob` and `--seed` mean the same in both: the same folder is read, and
the same seed and probability give the same corrupted labels
(`heldout.release.label_corruption`, drawn from `heldout.training.plan.corruption_rng`), so a
kernel fit and a trained experiment can be compared on identical random labels.

    train_flags.define_flags()                     # at import of the command module
    options = train_flags.data_options()           # after flag parsing
"""

from __future__ import annotations

import dataclasses

from absl import flags

from heldout.errors import UsageError
from heldout.training.config import ARCHS, DATASETS  # no TensorFlow behind this import

FLAGS = flags.FLAGS

_defined: set[int] = set()  # id() of the FlagValues the group was defined in


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines --dataset, --data_dir, --label_corrupt_prob, --seed (once per FlagValues)."""
    if id(flag_values) in _defined:
        return
    _defined.add(id(flag_values))
    fv = {"flag_values": flag_values}
    flags.DEFINE_string(
        "dataset",
        "fashion_mnist",
        f"Dataset to learn: {' or '.join(DATASETS)} (IDX files or TFDS), npz (--data_dir is "
        "a .npz file with x_train, y_train, x_test, y_test), or the name of any TFDS "
        "image-classification dataset prepared in --data_dir (cifar10, cifar100, ...).",
        **fv,
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "Folder of IDX files, a prepared TFDS data_dir, or the .npz file. Default: Debian's "
        "Fashion-MNIST IDX folder (/usr/share/datasets/fashion-mnist). Recorded as an "
        "absolute path.",
        **fv,
    )
    flags.DEFINE_float(
        "label_corrupt_prob",
        0.0,
        "Fraction of training labels corrupted, once (fixed by --seed). Below 1: that "
        "fraction gets a random other label; 1: every label is redrawn uniformly over all "
        "classes (random labels, independent of the images).",
        **fv,
    )
    flags.DEFINE_integer(
        "seed",
        0,
        "Root of every random choice: label corruption, and for training also subsets, "
        "initialisations and shuffling.",
        **fv,
    )


_recording_defined: set[int] = set()


def define_recording_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines --record_heldout_probs (once per FlagValues): files a run writes besides aux."""
    if id(flag_values) in _recording_defined:
        return
    _recording_defined.add(id(flag_values))
    flags.DEFINE_bool(
        "record_heldout_probs",
        False,
        "Each run also writes heldout_probs.npz: the softmax of its held-out training "
        "examples (float16, with their index), for compute_scores --scores=soft_cscore and "
        "cleanlab. aux_arrays.npz stays exactly as without it.",
        flag_values=flag_values,
    )


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """What the shared flags ask for."""

    dataset: str
    data_dir: str | None
    label_corrupt_prob: float
    seed: int


def data_options(flag_values: flags.FlagValues = FLAGS) -> DataOptions:
    """The shared flags' values, checked.

    Raises:
      UsageError: --label_corrupt_prob outside [0, 1] (exit status 2).
    """
    fv = flag_values
    if not fv.dataset:
        raise UsageError("--dataset is empty: name the data to learn")
    if not 0.0 <= fv.label_corrupt_prob <= 1.0:
        raise UsageError(f"--label_corrupt_prob must be in [0, 1], got {fv.label_corrupt_prob:g}")
    return DataOptions(fv.dataset, fv.data_dir, fv.label_corrupt_prob, fv.seed)


_recipe_defined: set[int] = set()


def define_recipe_flags(
    flag_values: flags.FlagValues = FLAGS, dataset_recipes: bool = False
) -> None:
    """Defines --arch, --epochs, --batch_size, --learning_rate, --mlp_spec (once per FlagValues).

    The training recipe; defaults are the paper's MNIST recipe (Table 2).

    Args:
      flag_values: where to define them.
      dataset_recipes: True for `train_heldout`, where the flags left unset take the
        dataset's recipe (`heldout.training.config.RECIPES`: CIFAR's SmallInception, batch
        512, ...); the help marks them "[recipe]" and gives the papers' values. False for
        the commands that train MLPs like an experiment's without writing one
        (`compute_proxies`, the benchmarks).
    """
    if id(flag_values) in _recipe_defined:
        return
    _recipe_defined.add(id(flag_values))
    fv = {"flag_values": flag_values}
    tag = "[recipe] " if dataset_recipes else ""
    cifar = dataset_recipes
    flags.DEFINE_enum(
        "arch",
        "mlp",
        list(ARCHS),
        f"{tag}Model: mlp (trained stacked), small_inception or resnet50 (one at a time, on "
        "the GPU when TensorFlow sees one)" + (". CIFAR: small_inception." if cifar else "."),
        **fv,
    )
    flags.DEFINE_integer(
        "epochs",
        20,
        f"{tag}Training epochs (paper: MNIST 20"
        + (", CIFAR-10 80, CIFAR-100 160)." if cifar else ")."),
        **fv,
    )
    flags.DEFINE_integer(
        "batch_size",
        256,
        f"{tag}Batch size (paper: MNIST 256" + (", CIFAR 512)." if cifar else ")."),
        **fv,
    )
    flags.DEFINE_float(
        "learning_rate",
        0.1,
        f"{tag}Base learning rate (paper: MNIST 0.1" + (", CIFAR 0.4)." if cifar else ")."),
        **fv,
    )
    flags.DEFINE_string(
        "mlp_spec",
        "512,256",
        "Hidden layer sizes of the MLP, comma-separated: 512,256 (default) is the published "
        "MNIST MLP, 512 one hidden layer of 512 units.",
        **fv,
    )


def mlp_hidden_sizes(spec: str) -> tuple[int, ...]:
    """`--mlp_spec` as layer sizes.

    Raises:
      UsageError: not comma-separated positive integers.
    """
    try:
        sizes = tuple(int(part) for part in spec.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise UsageError(
            f"--mlp_spec must be comma-separated positive layer sizes (e.g. 512,256 or 512), "
            f"got {spec!r}"
        )
    return sizes


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
    """What the recipe flags ask for."""

    arch: str
    epochs: int
    batch_size: int
    learning_rate: float
    mlp_hidden_sizes: tuple[int, ...]


def recipe_options(flag_values: flags.FlagValues = FLAGS) -> RecipeOptions:
    """The recipe flags' values, checked.

    Raises:
      UsageError: a malformed --mlp_spec, or epochs / batch size / learning rate below range.
    """
    fv = flag_values
    sizes = mlp_hidden_sizes(fv.mlp_spec)
    if fv.epochs < 1 or fv.batch_size < 1 or not fv.learning_rate > 0:
        raise UsageError(
            f"--epochs and --batch_size must be at least 1 and --learning_rate positive, got "
            f"{fv.epochs}, {fv.batch_size}, {fv.learning_rate:g}"
        )
    return RecipeOptions(fv.arch, fv.epochs, fv.batch_size, fv.learning_rate, sizes)


def training_recipe(flag_values: flags.FlagValues = FLAGS):
    """The `heldout.training.recipe.Recipe` the data and recipe flags describe (others default).

    Raises:
      UsageError: a flag value out of range (exit status 2).
    """
    from heldout.training.recipe import Recipe

    data = data_options(flag_values)
    recipe = recipe_options(flag_values)
    return Recipe(**dataclasses.asdict(data), **dataclasses.asdict(recipe))
