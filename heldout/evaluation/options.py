"""`EvalOptions`: how each run of a re-evaluation is evaluated (data, splits, batch, model).

Small and picklable: shipped with every Dask task of `heldout.evaluation.fanout`, and
part of each run record's identity (`heldout.evaluation.records`).
"""

from __future__ import annotations

import dataclasses
import os

from heldout.errors import UsageError
from heldout.release import layout as release

SPLITS = ("train", "test")
# What `--outputs` may ask for: `outputs.npz` with margins (and logits: margins too), and
# `heldout_probs.npz` (the softmax on the examples each run held out).
OUTPUT_KINDS = ("margins", "logits", "heldout_probs")
MARGIN_KINDS = ("margins", "logits")  # the kinds that `outputs.npz` holds


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How each run is evaluated; small and picklable, shipped with every task.

    Attributes:
      dataset: data source name (`heldout.datasets.SOURCE_NAMES`); None: the experiment's.
      data_dir: its folder or file; None: the experiment's. Made absolute by `resolved`
        (workers may run elsewhere, and the record names it).
      splits: "train" and/or "test".
      batch_size: images per evaluation step.
      arch, num_classes: override the experiment's model.
      outputs: also write each matching run's `outputs.npz` ("margins", and "logits")
        and/or its `heldout_probs.npz` ("heldout_probs").
      outputs_dir: where they go, in the release's layout; never inside the experiment.
    """

    dataset: str | None = None
    data_dir: str | None = None
    splits: tuple[str, ...] = SPLITS
    batch_size: int = 500
    arch: str | None = None
    num_classes: int | None = None
    outputs: tuple[str, ...] = ()
    outputs_dir: str | None = None

    def resolved(self) -> EvalOptions:
        """These options checked, with an absolute `data_dir`.

        Raises:
          UsageError: unknown or no splits, a batch size below 1, a class count below 2;
            outputs of an unknown kind, without an outputs folder, or without the splits
            they cover (margins: both; heldout_probs: train).
        """
        splits = tuple(self.splits)
        if not splits or any(split not in SPLITS for split in splits):
            raise UsageError(f"splits must be some of {list(SPLITS)}, got {list(splits)}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise UsageError(f"batch size must be a positive integer, got {self.batch_size}")
        if self.num_classes is not None and self.num_classes < 2:
            raise UsageError(f"number of classes must be at least 2, got {self.num_classes}")
        outputs = tuple(kind for kind in OUTPUT_KINDS if kind in self.outputs)
        if len(outputs) != len(set(self.outputs)):
            raise UsageError(f"outputs must be some of {list(OUTPUT_KINDS)}, got {self.outputs}")
        if outputs and not self.outputs_dir:
            raise UsageError("outputs need an outputs folder (never the downloaded experiment)")
        if set(outputs) & set(MARGIN_KINDS) and set(splits) != set(SPLITS):
            raise UsageError(f"outputs cover every split: evaluate both, not {list(splits)}")
        if outputs and "train" not in splits:
            raise UsageError(
                f"heldout_probs cover the train split: evaluate it, not {list(splits)}"
            )
        return dataclasses.replace(
            self,
            splits=splits,
            batch_size=int(self.batch_size),
            data_dir=absolute_path(self.data_dir),
            outputs=outputs,
            outputs_dir=absolute_path(self.outputs_dir) if outputs else None,
        )

    def check_run(self, run: release.Run, source, meta, cache=None):
        """`heldout.evaluation.evaluate.check_run` of `run` with these options.

        Args:
          run: the run.
          source: its data source (`heldout.datasets.relabeled.experiment_source`).
          meta: its experiment's `ExperimentMeta`.
          cache: an `evaluation.ModelCache` (None: a fresh model for this run).

        Returns:
          The `evaluation.RunCheck`.
        """
        from heldout.evaluation import evaluate as evaluation

        return evaluation.check_run(
            run,
            source,
            splits=self.splits,
            arch=self.arch,
            num_classes=self.num_classes,
            meta=meta,
            batch_size=self.batch_size,
            cache=cache,
            keep_logits=bool(self.outputs),
        )


def absolute_path(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))
