"""Runs written before runs recorded their sizes: checked once by reading them, then recorded.

Without a size record a truncated checkpoint cannot be told from a whole one by its
files alone. Reading every tensor can (TensorFlow checks each tensor's length and CRC),
so a run that reads back whole gets its record and counts as finished; one that does
not is set aside and trained again, as any run that only looks finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from heldout.errors import LockBusyError
from heldout.release import layout as release
from heldout.training import locks, resume
from heldout.training.config import TrainingConfig
from heldout.training.data import TrainingData
from heldout.training.events import RunKey
from heldout.training.run_record import write_run_record


def checkpoint_reads_whole(prefix: Path) -> bool:
    """Whether every tensor of the checkpoint at `prefix` reads back (length and CRC)."""
    import tensorflow as tf  # only when an old experiment is resumed

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception:  # noqa: BLE001 - truncated files raise OpError, IndexError, ...
        return False
    return True


def record_checked_runs(
    experiment_dir: Path, config: TrainingConfig, data: TrainingData, runs: Sequence[RunKey]
) -> list[RunKey]:
    """Records the sizes of those of `runs` (UNRECORDED) whose checkpoint reads back whole.

    Each run is checked holding its claim; a run claimed by another process is left as
    it is (it is trained or set aside later, as any run that only looks finished).

    Returns:
      The runs now recorded (finished).
    """
    recorded = []
    for ratio, run_id in runs:
        ratio_dir = experiment_dir / release.ratio_dir_name(ratio)
        try:
            claim = locks.claim_run(ratio_dir, run_id)
        except LockBusyError:
            continue
        try:
            run_dir = ratio_dir / str(run_id)
            state, _ = resume.run_state(
                run_dir, ratio, run_id, config, data.num_train, data.num_test
            )
            prefix = run_dir / release.CHECKPOINTS_DIR / f"ckpt-{config.epochs}"
            if state == resume.UNRECORDED and checkpoint_reads_whole(prefix):
                write_run_record(run_dir)
                recorded.append((ratio, run_id))
        finally:
            claim.release()
    return recorded
