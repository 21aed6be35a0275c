"""What we know about each released experiment, declared in one place.

Like a TFDS builder registry: an experiment name maps to its architecture, class count,
dataset and index order, split sizes (every run is checked against them) and the tarball
that carries it (URL and MD5); a published score file's name maps to the dataset, order
and shape it holds. Every other module asks here instead of repeating these.
"""

from __future__ import annotations

import dataclasses

from heldout.errors import UsageError

GCS_BUCKET = "gresearch"
GCS_FOLDER = "heldout-training-checkpoints"
HTTP_BASE = f"http://storage.googleapis.com/{GCS_BUCKET}/{GCS_FOLDER}"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One released tarball."""

    filename: str
    md5: str
    size_bytes: int  # approximate, for progress bars and disk checks

    @property
    def http_url(self) -> str:
        return f"{HTTP_BASE}/{self.filename}"

    @property
    def gcs_url(self) -> str:
        return f"gs://{GCS_BUCKET}/{GCS_FOLDER}/{self.filename}"


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """Facts about an experiment: how to rebuild its models and which data it indexes.

    `index_order` names the order the `index_*` arrays refer to: `tfds` for CIFAR (TFDS
    `cifar10:3.0.2` order), `tfrecord_index` for ImageNet (the `index` feature), `idx` for
    MNIST-like data read from the original IDX files.
    """

    name: str
    arch: str  # `small_inception`, `resnet50` or `mlp`
    num_classes: int
    dataset: str  # TFDS name (with version when the release pinned one)
    index_order: str
    image_shape: tuple[int, int, int]
    num_train: int  # size of the full training split (`train` + `removed` of every run)
    num_test: int  # size of the test (ImageNet: validation) split
    artifact: Artifact | None = None


EXPERIMENTS: dict[str, ExperimentSpec] = {
    spec.name: spec
    for spec in (
        ExperimentSpec(
            name="cifar10-inception",
            arch="small_inception",
            num_classes=10,
            dataset="cifar10:3.0.2",
            index_order="tfds",
            image_shape=(32, 32, 3),
            num_train=50_000,
            num_test=10_000,
            artifact=Artifact(
                "cifar10-inception.tar.gz", "bc3b75203381709f8224810946be14b1", 239 * 10**9
            ),
        ),
        ExperimentSpec(
            name="cifar100-inception",
            arch="small_inception",
            num_classes=100,
            dataset="cifar100",
            index_order="tfds",
            image_shape=(32, 32, 3),
            num_train=50_000,
            num_test=10_000,
            artifact=Artifact(
                "cifar100-inception.tar.gz", "f87218368528afa6e2407c8410f1ffa1", 244 * 10**9
            ),
        ),
        ExperimentSpec(
            name="imagenet-resnet50",
            arch="resnet50",
            num_classes=1000,
            dataset="imagenet2012",
            index_order="tfrecord_index",
            image_shape=(224, 224, 3),
            num_train=1_281_167,
            num_test=50_000,
            artifact=Artifact(
                "imagenet-resnet50.tar.gz", "64c39ef7702462b83959af9de622b4b8", 367 * 10**9
            ),
        ),
    )
}

ARTIFACTS: dict[str, Artifact] = {
    name: spec.artifact for name, spec in EXPERIMENTS.items() if spec.artifact is not None
}


class UnknownExperimentError(UsageError, KeyError):
    """A name that is not a released experiment; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


def experiment_spec(name: str) -> ExperimentSpec:
    """Looks up a released experiment by name.

    Args:
      name: the experiment's folder name, e.g. `cifar10-inception`.

    Returns:
      Its facts: architecture, classes, dataset and index order, split sizes, tarball.

    Raises:
      UnknownExperimentError: not a released experiment; the message lists the known ones.
    """
    try:
        return EXPERIMENTS[name]
    except KeyError:
        known = ", ".join(sorted(EXPERIMENTS))
        raise UnknownExperimentError(
            f"unknown experiment {name!r}; known experiments: {known}"
        ) from None


@dataclasses.dataclass(frozen=True)
class PublishedFileSpec:
    """Facts about a published score file, recognized by its name and shape.

    `index_order` is the order its example indices follow (`original` for the CIFAR
    C-scores, `tfds` for MNIST's), None where the publication does not say.
    """

    filename: str
    kind: str  # `cscores` or `pairs`
    dataset: str
    index_order: str | None
    shape: tuple[int, ...]  # of `scores` (C-scores) or of each pair array


PUBLISHED_FILES: dict[str, PublishedFileSpec] = {
    spec.filename: spec
    for spec in (
        PublishedFileSpec(
            "cifar10-cscores-orig-order.npz", "cscores", "cifar10", "original", (50_000,)
        ),
        PublishedFileSpec(
            "cifar100-cscores-orig-order.npz", "cscores", "cifar100", "original", (50_000,)
        ),
        PublishedFileSpec("mnist-cscores.npy", "cscores", "mnist", "tfds", (60_000,)),
        PublishedFileSpec(
            "cifar100_high_infl_pairs_infl0.15_mem0.25.npz", "pairs", "cifar100", None, (1015,)
        ),
        PublishedFileSpec(
            "imagenet_high_infl_pairs_infl0.15_mem0.25.npz", "pairs", "imagenet2012", None, (1641,)
        ),
    )
}


def published_file_spec(filename: str, shape: tuple[int, ...]) -> PublishedFileSpec | None:
    """The published file called `filename` (a base name) holding arrays of `shape`.

    Args:
      filename: the file's base name, e.g. `mnist-cscores.npy`.
      shape: the shape of its scores (or of each pair array).

    Returns:
      Its facts, or None when the name is not a published file's or the shape differs (a
      file renamed to a published name is not taken for it).
    """
    spec = PUBLISHED_FILES.get(filename)
    return spec if spec is not None and spec.shape == tuple(shape) else None
