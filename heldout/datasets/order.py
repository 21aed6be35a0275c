"""Mapping between two orders of the same dataset, and moving per-example values across.

Published scores come in one order (the original files for CIFAR), the released `index_*`
arrays in another (TFDS order). An `OrderMapping` records, for every position in order A,
the position of the same example in order B: from known positions or by matching images.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from heldout.datasets.base import DatasetError

_SHOW = 10  # positions listed in an error message


@dataclasses.dataclass(frozen=True)
class DuplicateGroup:
    """Byte-identical images with the same label: matched in stable order, arbitrarily."""

    label: int
    positions_a: np.ndarray  # int64, ascending
    positions_b: np.ndarray  # int64, ascending; positions_a[k] ↔ positions_b[k]


@dataclasses.dataclass(frozen=True)
class OrderMapping:
    """A bijection between two orders of one dataset's split.

    Attributes:
      a_to_b: int64 [N]; `a_to_b[i]` is where example i of order A sits in order B.
      order_a, order_b: names of the orders (for messages), e.g. "original", "tfds".
      ambiguous_groups: duplicate groups whose matching is arbitrary (see module doc).

    It is computed either from known positions (CIFAR's `id` feature gives, for each TFDS
    position, the original position) or by matching image bytes (`match_orders`: MNIST-like
    TFDS datasets keep no `id`). Byte-identical images do occur (Fashion-MNIST has some):
    within a group of identical images with the same label, the k-th occurrence in A is
    matched with the k-th occurrence in B (stable order), and the group is reported as
    ambiguous, since no data can tell those examples apart. Identical images with *different*
    labels are told apart by label. Labels must agree for every matched pair, otherwise the
    two arrays are not the same dataset and matching fails loudly.

    Conventions: `a_to_b[i]` = position in B of A's example i; values in order A become
    order B with `values_b = values_a[b_to_a]`.
    """

    a_to_b: np.ndarray
    order_a: str = "a"
    order_b: str = "b"
    ambiguous_groups: tuple[DuplicateGroup, ...] = ()

    def __post_init__(self):
        a_to_b = np.asarray(self.a_to_b)
        if a_to_b.ndim != 1 or not np.issubdtype(a_to_b.dtype, np.integer):
            raise DatasetError(
                f"a_to_b must be a 1-D integer array, got {a_to_b.dtype} {a_to_b.shape}."
            )
        if not np.array_equal(np.sort(a_to_b), np.arange(len(a_to_b))):
            raise DatasetError(
                f"a_to_b ({self.order_a} → {self.order_b}) is not a permutation of "
                f"0..{len(a_to_b) - 1}."
            )
        object.__setattr__(self, "a_to_b", a_to_b.astype(np.int64))

    def __len__(self) -> int:
        return len(self.a_to_b)

    @property
    def b_to_a(self) -> np.ndarray:
        """int64 [N]; `b_to_a[j]` is where example j of order B sits in order A."""
        inverse = np.empty_like(self.a_to_b)
        inverse[self.a_to_b] = np.arange(len(self.a_to_b))
        return inverse

    @property
    def num_ambiguous(self) -> int:
        """Examples whose match is arbitrary among byte-identical twins."""
        return sum(len(g.positions_a) for g in self.ambiguous_groups)

    def inverse(self) -> OrderMapping:
        groups = tuple(
            DuplicateGroup(g.label, g.positions_b, g.positions_a) for g in self.ambiguous_groups
        )
        return OrderMapping(self.b_to_a, self.order_b, self.order_a, groups)

    @classmethod
    def from_positions_in_a(
        cls, positions_in_a: np.ndarray, order_a: str = "original", order_b: str = "tfds"
    ) -> OrderMapping:
        """From, for each position j of order B, its position in order A.

        E.g. CIFAR: `TfdsSource.original_positions(split)` gives, for each TFDS position,
        the original position, so `from_positions_in_a(that)` maps original → TFDS.
        """
        b_to_a = _integer_vector(positions_in_a, f"positions in {order_a}")
        if not np.array_equal(np.sort(b_to_a), np.arange(len(b_to_a))):
            raise DatasetError(f"positions in {order_a} are not a permutation of 0..N-1.")
        a_to_b = np.empty_like(b_to_a)
        a_to_b[b_to_a] = np.arange(len(b_to_a))
        return cls(a_to_b, order_a, order_b)


def _integer_vector(values, what: str) -> np.ndarray:
    """`values` as int64 [N]; floats, bools and strings are refused, not truncated.

    `np.asarray(x, dtype=np.int64)` would turn 2.7 into 2 and raise a bare ValueError on
    strings; a position or a label that is not an integer means the wrong array was given.
    """
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(f"{what} must be a 1-D integer array, got {array.dtype} {array.shape}.")
    return array.astype(np.int64)


def image_digests(images: np.ndarray) -> np.ndarray:
    """128-bit BLAKE2b digest of each image's bytes, as uint64 [N, 2].

    Hashing keeps the matching at O(N log N) on 16-byte keys instead of sorting whole
    images; matches are then confirmed on the full bytes, so a collision cannot pass.
    """
    images = np.ascontiguousarray(images)
    digests = b"".join(
        hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images
    )
    return np.frombuffer(digests, dtype=">u8").reshape(len(images), 2).astype(np.uint64)


def _stable_sort(digests: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Positions sorted by (digest, label, position)."""
    positions = np.arange(len(labels))
    return np.lexsort((positions, labels, digests[:, 1], digests[:, 0]))


def _describe_unmatched(digests_a, digests_b, order_a, order_b) -> str:
    keys_a = {tuple(d) for d in digests_a.tolist()}
    keys_b = {tuple(d) for d in digests_b.tolist()}
    only_a = [i for i, d in enumerate(digests_a.tolist()) if tuple(d) not in keys_b]
    only_b = [j for j, d in enumerate(digests_b.tolist()) if tuple(d) not in keys_a]
    parts = []
    if only_a:
        parts.append(
            f"{len(only_a)} image(s) of {order_a} have no byte-identical image in "
            f"{order_b} (positions {only_a[:_SHOW]}{' ...' if len(only_a) > _SHOW else ''})"
        )
    if only_b:
        parts.append(
            f"{len(only_b)} image(s) of {order_b} have none in {order_a} (positions "
            f"{only_b[:_SHOW]}{' ...' if len(only_b) > _SHOW else ''})"
        )
    if not parts:
        parts.append("some images occur a different number of times in the two orders")
    return "; ".join(parts)


def match_orders(
    images_a: np.ndarray,
    images_b: np.ndarray,
    labels_a: np.ndarray | None = None,
    labels_b: np.ndarray | None = None,
    order_a: str = "a",
    order_b: str = "b",
) -> OrderMapping:
    """Maps order A to order B by matching image bytes (and labels, when given).

    Raises `DatasetError` when the two are not the same multiset of (image, label): an
    image with no twin in the other order, or labels that disagree for identical images.
    """
    images_a, images_b = np.asarray(images_a), np.asarray(images_b)
    if images_a.shape != images_b.shape or images_a.dtype != images_b.dtype:
        raise DatasetError(
            f"cannot match orders: {order_a} images are {images_a.dtype} {images_a.shape}, "
            f"{order_b} images are {images_b.dtype} {images_b.shape}."
        )
    if (labels_a is None) != (labels_b is None):
        raise DatasetError("give labels for both orders or for neither.")
    n = len(images_a)
    if labels_a is None:
        labels_a = labels_b = np.zeros(n, np.int64)
    labels_a = _integer_vector(labels_a, f"{order_a} labels")
    labels_b = _integer_vector(labels_b, f"{order_b} labels")
    if labels_a.shape != (n,) or labels_b.shape != (n,):
        raise DatasetError(
            f"labels must be [N] = [{n}], got {labels_a.shape} and {labels_b.shape}."
        )

    digests_a, digests_b = image_digests(images_a), image_digests(images_b)
    # Images alone first, so a failure says whether images or labels disagree.
    sorted_a = np.lexsort((digests_a[:, 1], digests_a[:, 0]))
    sorted_b = np.lexsort((digests_b[:, 1], digests_b[:, 0]))
    if not np.array_equal(digests_a[sorted_a], digests_b[sorted_b]):
        raise DatasetError(
            f"{order_a} and {order_b} do not hold the same images: "
            + _describe_unmatched(digests_a, digests_b, order_a, order_b)
            + "."
        )

    sorted_a = _stable_sort(digests_a, labels_a)
    sorted_b = _stable_sort(digests_b, labels_b)
    label_mismatch = labels_a[sorted_a] != labels_b[sorted_b]
    if label_mismatch.any():
        bad_a = np.sort(sorted_a[label_mismatch])
        raise DatasetError(
            f"labels disagree between {order_a} and {order_b} for byte-identical images: "
            f"{len(bad_a)} example(s), {order_a} positions {bad_a[:_SHOW].tolist()}"
            f"{' ...' if len(bad_a) > _SHOW else ''}; are both from the same dataset and "
            "split, with the same label convention?"
        )
    a_to_b = np.empty(n, np.int64)
    a_to_b[sorted_a] = sorted_b
    # Confirm on full bytes: a digest collision must not pass silently.
    if not np.array_equal(images_a, images_b[a_to_b]):
        raise DatasetError("image digest collision: matched images differ; please report.")

    # Groups of identical (image, label) keys, in sorted order, are contiguous runs.
    keys = np.column_stack([digests_a[sorted_a], labels_a[sorted_a].astype(np.uint64)])
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    sizes = np.diff(np.r_[starts, n])
    groups = tuple(
        DuplicateGroup(
            label=int(labels_a[sorted_a[start]]),
            positions_a=sorted_a[start : start + size].astype(np.int64),
            positions_b=sorted_b[start : start + size].astype(np.int64),
        )
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True)
    )
    return OrderMapping(a_to_b, order_a, order_b, groups)


def permute_scores(
    scores_in_order_a: np.ndarray,
    mapping: OrderMapping,
    labels_in_order_a: np.ndarray | None = None,
    labels_in_order_b: np.ndarray | None = None,
) -> np.ndarray:
    """Per-example values in order A → the same values in order B (`values_a[b_to_a]`).

    The leading axis is the example axis. Given the labels that came with the scores
    (e.g. the `labels` of a published C-score file) and the labels in order B, checks
    that they agree after the move: a cheap guard against using the wrong mapping.
    """
    scores = np.asarray(scores_in_order_a)
    if scores.shape[:1] != (len(mapping),):
        raise DatasetError(
            f"scores have {scores.shape[0] if scores.ndim else 0} entries along the first "
            f"axis, the {mapping.order_a} → {mapping.order_b} mapping has {len(mapping)}."
        )
    b_to_a = mapping.b_to_a
    if (labels_in_order_a is None) != (labels_in_order_b is None):
        raise DatasetError("give labels for both orders or for neither.")
    if labels_in_order_a is not None:
        labels_a = _integer_vector(labels_in_order_a, f"labels in {mapping.order_a} order")
        labels_b = _integer_vector(labels_in_order_b, f"labels in {mapping.order_b} order")
        if len(labels_a) != len(mapping) or len(labels_b) != len(mapping):
            raise DatasetError(
                f"labels have {len(labels_a)} ({mapping.order_a}) and {len(labels_b)} "
                f"({mapping.order_b}) entries, the mapping has {len(mapping)}; are they of "
                "the same split?"
            )
        moved = labels_a[b_to_a]
        wrong = np.flatnonzero(moved != labels_b)
        if len(wrong):
            raise DatasetError(
                f"after mapping {mapping.order_a} → {mapping.order_b}, {len(wrong)} label(s) "
                f"disagree ({mapping.order_b} positions {wrong[:_SHOW].tolist()}"
                f"{' ...' if len(wrong) > _SHOW else ''}); the mapping does not fit these "
                "scores."
            )
    return scores[b_to_a]
