"""Which dataset, in which order, a file's per-example values index: checked before comparing.

Two vectors of 60 000 scores line up whatever they score, so shapes alone let Fashion-MNIST
be compared with MNIST. A scores file says what it scores in its provenance, our exported
files in theirs, and the published files are known by name and shape (`release.registry`).
"""

from __future__ import annotations

import dataclasses
import os

from heldout.errors import IdentityMismatchError
from heldout.release.registry import published_file_spec
from heldout.scores.file import load_provenance


@dataclasses.dataclass(frozen=True)
class DataIdentity:
    """What a file's values are values of; None where the file does not say.

    Attributes:
      source: the file (or the flag) it was read from, as messages name it.
      dataset: the dataset's base name (`cifar10:3.0.2` -> `cifar10`, `fashion_mnist_idx`
        -> `fashion_mnist`: the order is recorded apart).
      index_order: `tfds`, `idx`, `original`, `tfrecord_index`, `npz`, or None.
      num_examples: the examples its values are for (training split), or None.
    """

    source: str
    dataset: str | None
    index_order: str | None = None
    num_examples: int | None = None

    def describe(self) -> str:
        """`path (dataset, order order, N examples)`, with what is known."""
        known = [self.dataset or "dataset not recorded"]
        if self.index_order:
            known.append(f"{self.index_order} order")
        if self.num_examples is not None:
            known.append(f"{self.num_examples} examples")
        return f"{self.source} ({', '.join(known)})"


def dataset_base(name: str | None) -> str | None:
    """A dataset name without version or order suffix, lower case (None stays None)."""
    if not name:
        return None
    base = str(name).split(":", 1)[0].strip().lower()
    return None if base == "npz" else base.removesuffix("_idx")  # `npz`: any data at all


def identity_from_provenance(provenance: dict | None, source: str) -> DataIdentity | None:
    """The identity a provenance record gives, or None when it names no dataset.

    Args:
      provenance: a scores file's (its `experiment` entry: dataset, index_order, n_train)
        or an exported / order-mapped C-score file's (`dataset`, `order`, or the
        `experiment` copied from the scores file).
      source: the file, for messages.

    Returns:
      The dataset (base name), order and example count it records, or None.
    """
    if not provenance:
        return None
    experiment = provenance.get("experiment")
    order = provenance.get("order")
    if isinstance(experiment, dict) and experiment.get("dataset"):
        index_order = experiment.get("index_order")
        if order == "original":  # exported after moving into the original CIFAR order
            index_order = "original"
        return DataIdentity(
            source, dataset_base(experiment["dataset"]), index_order, experiment.get("n_train")
        )
    if provenance.get("dataset"):
        # `heldout map-order` (it records the `split`) writes truly TFDS order; an export's
        # `tfds` means "the runs' order", unknown without the experiment.
        known = order == "original" or "split" in provenance
        return DataIdentity(source, dataset_base(provenance["dataset"]), order if known else None)
    return None


def identity_of_scores(arrays: dict, source: str) -> DataIdentity | None:
    """A scores file's identity from its provenance (None when it has no readable one)."""
    try:
        provenance = load_provenance(arrays, source)
    except (ValueError, TypeError):  # not our JSON record: the file says nothing
        return None
    return identity_from_provenance(provenance, source)


def identity_of_dataset_flag(name: str | None) -> DataIdentity | None:
    """What `--dataset=name` says before the data is opened: the dataset, and the order
    only where the name gives it (`*_idx`); None without the flag."""
    if not name:
        return None
    order = "idx" if name.split(":", 1)[0].endswith("_idx") else None
    return DataIdentity(f"--dataset={name}", dataset_base(name), order)


def identity_of_experiment(meta, source: str) -> DataIdentity:
    """An experiment's identity from its meta (`release.layout.ExperimentMeta`)."""
    return DataIdentity(
        source,
        dataset_base(getattr(meta, "dataset", None)),
        getattr(meta, "index_order", None),
        getattr(meta, "num_train", None),
    )


def identity_of_published(path: str | os.PathLike, shape: tuple[int, ...]) -> DataIdentity | None:
    """A published file's identity from the registry, by base name and shape.

    Args:
      path: the file; only its base name is looked up.
      shape: its scores' shape (or each pair array's).

    Returns:
      Its dataset and order (None for the pair files, whose order is not published), or
      None when the name and shape are not a published file's.
    """
    spec = published_file_spec(os.path.basename(os.fspath(path)), shape)
    if spec is None:
        return None
    num_examples = spec.shape[0] if spec.kind == "cscores" else None
    return DataIdentity(os.fspath(path), dataset_base(spec.dataset), spec.index_order, num_examples)


def check_same_data(
    ours: DataIdentity | None, reference: DataIdentity | None, allow_mismatch: bool = False
) -> str | None:
    """Refuses values of another dataset, or of the same in another order.

    Only what both sides record is compared: an unknown dataset or order passes.

    Args:
      ours, reference: the two sides' identities (None: not recorded).
      allow_mismatch: the user's `--allow_mismatch`: a mismatch is returned, not raised.

    Returns:
      None when nothing recorded differs; otherwise (with `allow_mismatch`) the one-line
      description of the mismatch, for the output to record.

    Raises:
      IdentityMismatchError: the datasets or the orders differ, naming both sides.
    """
    if ours is None or reference is None:
        return None
    what = []
    if ours.dataset and reference.dataset and ours.dataset != reference.dataset:
        what.append("dataset")
    if ours.index_order and reference.index_order and ours.index_order != reference.index_order:
        what.append("order")
    if not what:
        return None
    message = f"{' and '.join(what)} mismatch: {ours.describe()} against {reference.describe()}"
    if allow_mismatch:
        return message
    remedy = (
        "compare scores of the same dataset"
        if "dataset" in what
        else "map one into the other's order (heldout map-order)"
    )
    raise IdentityMismatchError(f"{message}; {remedy}, or pass --allow_mismatch to go on")
