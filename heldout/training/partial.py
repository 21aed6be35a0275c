"""Mid-training checkpoints: a long run continues where it was interrupted.

With `checkpoint_every = k` the trainer stores after every k-th epoch all the rest of the
run depends on (variables, momentum, counters, the states of its numpy generators) in
`<ratio>/.<run_id>.partial-e<epoch>/`, so a restarted run is bit for bit the run an
uninterrupted call writes. A checkpoint of another identity is removed, never resumed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np

from heldout._core.atomic import commit_dir, make_temp_dir, write_json_atomic
from heldout._core.write_safety import ensure_dir

STATE_FILE = "state.json"
CHECKPOINT_PREFIX = "state"
_FORMAT = 1


def _pattern(run_id: int) -> re.Pattern:
    return re.compile(rf"^\.{int(run_id)}\.partial-e([0-9]+)$", re.ASCII)


@dataclasses.dataclass(frozen=True)
class PartialState:
    """A mid-training checkpoint found for a run."""

    path: Path
    epoch: int  # epochs completed
    rng_states: dict  # stream name -> numpy bit_generator.state


def run_identity(config, record, subset_ratio: float, run_id: int) -> dict:
    """What decides a run's training (a checkpoint of another identity is not resumed).

    Args:
      config: the `TrainingConfig`.
      record: the data's `heldout.training.data.SourceRecord` (or None).
      subset_ratio, run_id: the run.
    """
    return {
        "format": _FORMAT,
        "config": config.defining(),
        "data_sha256": None if record is None else dict(record.sha256),
        "subset_ratio": float(subset_ratio),
        "run_id": int(run_id),
    }


def _candidates(ratio_dir: Path, run_id: int) -> list[tuple[int, Path]]:
    if not ratio_dir.is_dir():
        return []
    pattern = _pattern(run_id)
    found = []
    for child in ratio_dir.iterdir():
        match = pattern.match(child.name)
        if match and child.is_dir() and not child.is_symlink():
            found.append((int(match.group(1)), child))
    return sorted(found)


def find(ratio_dir: Path, run_id: int, identity: dict, epochs: int) -> PartialState | None:
    """The newest usable checkpoint of the run; removes those of another identity.

    A checkpoint is usable when its `state.json` reads, records `identity`, and its epoch
    lies in [1, epochs). Unreadable or foreign ones are removed (they are this trainer's
    own hidden files, and the caller holds the run's claim).
    """
    usable = None
    for epoch, path in reversed(_candidates(ratio_dir, run_id)):
        try:
            state = json.loads((path / STATE_FILE).read_text())
        except (OSError, ValueError):
            state = None
        ok = (
            isinstance(state, dict)
            and state.get("identity") == identity
            and state.get("epoch") == epoch
            and 0 < epoch < epochs
            and isinstance(state.get("rng_states"), dict)
        )
        if ok and usable is None:
            usable = PartialState(path, epoch, state["rng_states"])
        elif not ok:
            shutil.rmtree(path, ignore_errors=True)
    return usable


def save(
    ratio_dir: Path,
    run_id: int,
    epoch: int,
    checkpoint,
    identity: dict,
    rngs: dict[str, np.random.Generator],
) -> Path:
    """Writes the run's checkpoint after `epoch` epochs, then removes its older ones.

    Args:
      ratio_dir: the run's ratio folder (created if missing).
      run_id: the run.
      epoch: epochs completed.
      checkpoint: a `tf.train.Checkpoint` of the model, optimizer state and counters.
      identity: `run_identity(...)`.
      rngs: the run's generators whose states the rest of the run depends on.

    Returns:
      The checkpoint folder.
    """
    ensure_dir(ratio_dir)
    final = ratio_dir / f".{int(run_id)}.partial-e{int(epoch)}"
    older = [path for _, path in _candidates(ratio_dir, run_id) if path != final]
    if final.exists():  # left by an interrupted save of this epoch: replaced
        shutil.rmtree(final)
    tmp = make_temp_dir(ratio_dir, prefix=f"{final.name}.")
    try:
        checkpoint.write(str(tmp / CHECKPOINT_PREFIX))
        write_json_atomic(
            tmp / STATE_FILE,
            {
                "identity": identity,
                "epoch": int(epoch),
                "rng_states": {name: rng.bit_generator.state for name, rng in rngs.items()},
            },
        )
        commit_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for path in older:
        shutil.rmtree(path, ignore_errors=True)
    return final


def restore(state: PartialState, checkpoint, rngs: dict[str, np.random.Generator]) -> None:
    """Loads `state` into `checkpoint`'s objects (every value must match) and the generators."""
    checkpoint.read(str(state.path / CHECKPOINT_PREFIX)).assert_consumed()
    for name, rng in rngs.items():
        rng.bit_generator.state = state.rng_states[name]


def remove(ratio_dir: Path, run_id: int) -> None:
    """Deletes every mid-training checkpoint of the run (once its run folder is written)."""
    for _, path in _candidates(ratio_dir, run_id):
        shutil.rmtree(path, ignore_errors=True)
