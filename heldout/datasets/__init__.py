"""Data providers with an `index` feature, the one resolver of dataset names, and order
mapping between dataset orders.

Re-exports only: `get_source(name, data_dir)` / `open_source` (`resolve`) return a
`DataSource` whose `as_dataset(split, batch_size)` yields batches of `image`, `label` and
`index`; the names they accept are listed in `heldout.datasets.resolve.open_source`.
"""

from heldout.datasets.base import ArraySource, ArraySplit, DatasetError, DataSource
from heldout.datasets.idx import DEBIAN_FASHION_MNIST_DIR, IdxSource, load_idx_split
from heldout.datasets.resolve import (
    SOURCE_NAMES,
    TFDS_NAMES,
    OpenedSource,
    get_source,
    open_source,
    source_for_meta,
    source_name_for,
)

__all__ = [
    "ArraySource",
    "ArraySplit",
    "DataSource",
    "DatasetError",
    "DEBIAN_FASHION_MNIST_DIR",
    "IdxSource",
    "OpenedSource",
    "SOURCE_NAMES",
    "TFDS_NAMES",
    "get_source",
    "load_idx_split",
    "open_source",
    "source_for_meta",
    "source_name_for",
]
