"""In-memory data from a numpy `.npz` file (loaded with `allow_pickle=False`).

Three key layouts are accepted (per split, single split, Keras style; see `NpzSource`);
row `i` of a split has index `i`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from heldout._core.atomic import write_npz_atomic
from heldout._core.npz import load_npz
from heldout.datasets.base import ArraySource, ArraySplit, DatasetError

_SUFFIXES = ("_images", "_labels")
_PREFIXES = ("x_", "y_")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    arrays = load_npz(path, error=DatasetError, what="a dataset .npz file (images and labels)")
    if "" in arrays:
        raise DatasetError(f"{path}: is a single .npy array, expected a .npz archive.")
    return arrays


def _splits_in(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, str]]:
    """Maps split name → (images key, labels key)."""
    splits = {}
    if "images" in arrays or "labels" in arrays:
        splits["train"] = ("images", "labels")
    for key in arrays:
        for suffix in _SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix):
                split = key[: -len(suffix)]
                if split == "train" and ("images" in arrays or "labels" in arrays):
                    raise DatasetError(
                        f"{path}: has both `images`/`labels` and `{key}`; use either the "
                        "unprefixed keys (one split, `train`) or `<split>_images`/"
                        "`<split>_labels`."
                    )
                splits[split] = (f"{split}_images", f"{split}_labels")
    for key in arrays:
        for prefix in _PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                split = key[len(prefix) :]
                keys = (f"x_{split}", f"y_{split}")
                if splits.get(split, keys) != keys:
                    raise DatasetError(
                        f"{path}: has both `{key}` and `{splits[split][0]}`/"
                        f"`{splits[split][1]}` for split {split!r}; use one key layout."
                    )
                splits[split] = keys
    if not splits:
        raise DatasetError(
            f"{path}: no images found; expected keys `x_train`, `y_train`, `x_test`, "
            "`y_test`, or `<split>_images` and `<split>_labels`, or `images` and `labels`. "
            f"Keys present: {sorted(arrays)}."
        )
    for split, (image_key, label_key) in splits.items():
        for key in (image_key, label_key):
            if key not in arrays:
                raise DatasetError(f"{path}: split {split!r} lacks the key `{key}`.")
    return splits


def _to_split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> ArraySplit:
    if images.dtype != np.uint8:
        raise DatasetError(
            f"{path}: {split} images must be uint8 pixels (0-255), got {images.dtype}; "
            "the source scales them to [0, 1] itself."
        )
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise DatasetError(
            f"{path}: {split} images must be [N, H, W, C] or [N, H, W], got shape {images.shape}."
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: {split} labels must be integers [N], got {labels.dtype} {labels.shape}."
        )
    if len(labels) != len(images):
        raise DatasetError(f"{path}: {split} has {len(images)} images but {len(labels)} labels.")
    return ArraySplit(images=images, labels=labels.astype(np.int64))


def _num_classes(path: Path, value: np.ndarray) -> int:
    """The file's `num_classes`: a positive integer scalar (a float or an array is refused)."""
    if value.shape != () or not np.issubdtype(value.dtype, np.integer) or int(value) < 1:
        raise DatasetError(
            f"{path}: `num_classes` must be a positive integer scalar, got {value.dtype} "
            f"{value.shape} {value.tolist() if value.size <= 5 else '...'}."
        )
    return int(value)


class NpzSource(ArraySource):
    """A `.npz` file's splits; the whole file is read at construction (it is small data).

    Key layout (choose one):
      * per split: `<split>_images` and `<split>_labels` (e.g. `train_images`, `test_images`,
        `train_labels`, `test_labels`); every such pair is a split;
      * single split: `images` and `labels`, served as split `train`;
      * Keras style: `x_<split>` and `y_<split>` (`x_train`, `y_train`, `x_test`, `y_test`, as
        `keras.datasets.*.load_data()` returns them), the layout training's `npz` dataset
        documents.
    Mixing two layouts for one split (`images` with `train_images`, `x_train` with
    `train_images`) is ambiguous and rejected.

    Images are uint8 `[N, H, W, C]` (or `[N, H, W]`, given a channel axis); labels are integer
    class ids `[N]`. An optional scalar `num_classes` key sets the class count; otherwise it is
    `max(label) + 1` over all splits.
    """

    def __init__(self, path: str | os.PathLike, name: str = "npz"):
        path = Path(path)
        arrays = _read_npz(path)
        splits = _splits_in(path, arrays)
        self.path = path
        self._arrays = {
            split: _to_split(path, split, arrays[ik], arrays[lk])
            for split, (ik, lk) in splits.items()
        }
        shapes = {a.images.shape[1:] for a in self._arrays.values()}
        if len(shapes) != 1:
            raise DatasetError(f"{path}: splits have different image shapes {sorted(shapes)}.")
        if "num_classes" in arrays:
            num_classes = _num_classes(path, arrays["num_classes"])
        else:
            num_classes = 1 + max(
                (int(a.labels.max()) for a in self._arrays.values() if len(a)), default=0
            )
        super().__init__(name, num_classes, shapes.pop(), splits=tuple(sorted(splits)))

    def _load(self, split: str) -> ArraySplit:
        return self._arrays[split]


def save_npz(
    path: str | os.PathLike, splits: dict[str, ArraySplit], num_classes: int | None = None
) -> None:
    """Writes splits in the per-split layout that `NpzSource` reads (at exactly `path`,
    through a temporary name, so a reader never sees half a file)."""
    arrays = {}
    for split, data in splits.items():
        arrays[f"{split}_images"] = data.images
        arrays[f"{split}_labels"] = data.labels
    if num_classes is not None:
        arrays["num_classes"] = np.int64(num_classes)
    write_npz_atomic(path, arrays)
