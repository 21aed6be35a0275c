"""The data an experiment was trained on: its dataset with the recorded corrupted labels.

Anything that re-evaluates a run must measure correctness against the labels the run was
trained on (`heldout.release.label_corruption`), so sources are wrapped here, one layer above the
release layout.
"""

from __future__ import annotations

import os

import numpy as np

from heldout.datasets.base import ArraySource, ArraySplit, DataSource
from heldout.release.label_corruption import (
    LabelCorruption,
    experiment_label_corruption,
    trained_labels,
)


def experiment_labels(
    experiment, labels: np.ndarray | None = None, split: str = "train"
) -> np.ndarray:
    """The labels `experiment`'s models were trained (and scored) on, in index order.

    `labels`: the dataset's clean labels of `split` in the experiment's index order; when
    None they are loaded from the experiment's recorded dataset (`experiment_source`).
    Test labels are never corrupted and come back unchanged.
    """
    if labels is None:
        return experiment_source(experiment).load_arrays(split).labels
    return trained_labels(experiment, labels, split)


def experiment_source(
    experiment, dataset: str | None = None, data_dir: str | os.PathLike | None = None
) -> DataSource:
    """The data an experiment was trained on, with its trained-on (corrupted) labels.

    The source name and data_dir come from the experiment's meta (`dataset`,
    `index_order`, `extra["data_dir"]`) unless given.
    """
    from heldout.datasets import source_for_meta

    meta = experiment_meta(experiment)
    return relabeled_source(experiment, source_for_meta(meta, dataset, data_dir))


class RelabeledSource(ArraySource):
    """A source whose training labels are replaced, everything else as in `base`.

    Serves its splits from `base.load_arrays`, through `ArraySource.as_dataset`: the same
    float32 scaling to [0, 1] as the MNIST-like and CIFAR sources.
    """

    def __init__(self, base: DataSource, corruption: LabelCorruption):
        super().__init__(base.name, base.num_classes, base.image_shape, splits=base.splits)
        self.base = base
        self.corruption = corruption

    def _load(self, split: str) -> ArraySplit:
        arrays = self.base.load_arrays(split)
        if split != "train":
            return arrays
        return ArraySplit(
            images=arrays.images,
            labels=self.corruption.apply(arrays.labels),
            original_index=arrays.original_index,
        )


def relabeled_source(experiment, source: DataSource) -> DataSource:
    """`source` with `experiment`'s corrupted training labels (itself when there are none).

    `experiment`: a `heldout.release.layout.Experiment` or an experiment folder path.

    Use it to re-evaluate a run's checkpoint so that correctness is measured against the
    labels the run was trained on, as its aux arrays are.
    """
    corruption = experiment_label_corruption(experiment)
    return source if corruption is None else RelabeledSource(source, corruption)


def experiment_meta(experiment):
    """The meta of a `heldout.release.layout.Experiment`, or of an experiment folder path."""
    from heldout.release import layout

    if isinstance(experiment, (str, os.PathLike)):
        return layout.read_experiment_meta(experiment)
    return experiment.meta
