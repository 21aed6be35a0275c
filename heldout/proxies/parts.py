"""Each finished seed's recorded tables, kept beside the output so a killed run resumes.

`heldout proxies` trains its seeds one at a time and stores each one's per-epoch tables
(and hidden densities) as `<output>.parts/seed-<k>.npz`, with a provenance record of
everything that determines them; a rerun loads a matching part instead of retraining it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from heldout._core import atomic
from heldout._core.locks import FileLock
from heldout._core.npz import load_npz
from heldout._core.provenance import parse_provenance, provenance_for
from heldout._core.write_safety import ensure_dir, symlink_refused
from heldout.errors import UsageError
from heldout.proxies.kde import KDE_VARIANTS
from heldout.proxies.recording import STATISTICS

PARTS_SUFFIX = ".parts"
LOCK_NAME = "parts.lock"


def parts_dir_of(output: str | os.PathLike) -> Path:
    """The work folder of `output`'s seed parts: `<output>.parts`."""
    return Path(str(output) + PARTS_SUFFIX)


@dataclasses.dataclass(frozen=True)
class SeedPart:
    """One seed's recorded statistics (see `heldout.proxies.recording.EpochRecorder`).

    Attributes:
      tables: statistic -> [E, N].
      seen: bool [E, N].
      kde_hidden: variant -> [E', N] (empty without hidden densities).
      kde_hidden_bandwidth: float64 [E'].
      kde_hidden_epochs: int64 [E'], the 1-based epochs of those rows.
    """

    tables: dict[str, np.ndarray]
    seen: np.ndarray
    kde_hidden: dict[str, np.ndarray]
    kde_hidden_bandwidth: np.ndarray
    kde_hidden_epochs: np.ndarray

    @classmethod
    def of_recorder(cls, recorder) -> SeedPart:
        """The part of a finished one-model recorder."""
        return cls(
            tables={name: table[0] for name, table in recorder.tables.items()},
            seen=recorder.seen[0],
            kde_hidden={name: table[0] for name, table in recorder.kde_hidden.items()},
            kde_hidden_bandwidth=np.asarray(
                recorder.kde_hidden_bandwidth[0] if recorder.kde_hidden else [], np.float64
            ),
            kde_hidden_epochs=np.asarray(recorder.kde_hidden_epochs, np.int64),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"table_{name}": value for name, value in self.tables.items()}
        out.update({f"kde_hidden_{name}": value for name, value in self.kde_hidden.items()})
        out["seen"] = self.seen
        out["kde_hidden_bandwidth"] = self.kde_hidden_bandwidth
        out["kde_hidden_epochs"] = self.kde_hidden_epochs
        return out


def part_record(options_json: dict, source_record: dict, seed: int) -> dict:
    """What determines a seed's part: the options, the data's identity, the seed, version."""
    record = provenance_for(options=options_json, data=source_record, seed=seed)
    return json.loads(json.dumps(record, sort_keys=True))  # tuples as lists, as stored


class SeedParts:
    """The locked work folder of one output's seed parts.

    Args:
      folder: the folder (`parts_dir_of(output)`), created if missing.
      say: receives one progress line (which seeds were resumed).

    Raises:
      UnsafeWriteError: `folder` is a symbolic link, or a file is in its way.
      LockBusyError: another process is writing these parts.
    """

    def __init__(self, folder: str | os.PathLike, say: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.say = say
        if self.folder.is_symlink():
            raise symlink_refused(self.folder)
        self._created = not self.folder.exists()
        ensure_dir(self.folder)
        self._lock = FileLock(self.folder / LOCK_NAME, f"proxies' seed parts in {self.folder}")
        self._lock.acquire()
        self._written: set[Path] = set()
        self._remove_temporaries()

    def path(self, seed: int) -> Path:
        return self.folder / f"seed-{seed}.npz"

    def _remove_temporaries(self) -> None:
        """Removes the hidden temporaries of a write that was killed (the names we use)."""
        for entry in self.folder.glob(".seed-*.npz.*.tmp"):
            if entry.is_file() and not entry.is_symlink():
                entry.unlink(missing_ok=True)

    def load_matching(self, records: list[dict]) -> dict[int, SeedPart]:
        """The stored parts of seeds whose record equals `records[seed]`.

        Raises:
          UsageError: a stored part was made by another run (other options or data), or
            cannot be read: one line naming it; it is never mixed in.
        """
        found = {}
        for seed, record in enumerate(records):
            path = self.path(seed)
            if not os.path.lexists(path):
                continue
            arrays = load_npz(path, error=UsageError, what="a proxies seed part")
            if "provenance" not in arrays:
                raise UsageError(f"{path}: not a proxies seed part (no provenance); move it away")
            stored = parse_provenance(arrays["provenance"], str(path), UsageError)
            if stored != record:
                differ = sorted(
                    key for key in set(stored) | set(record) if stored.get(key) != record.get(key)
                )
                raise UsageError(
                    f"{path}: a seed part of another run (differs in {', '.join(differ)}); "
                    "remove it or choose another --output"
                )
            found[seed] = _part_of(arrays, path)
        if found and self.say is not None:
            self.say(
                f"resuming seeds {sorted(found)} of {len(records)} from {self.folder} "
                "(their recorded tables match this run)"
            )
        return found

    def save(self, seed: int, part: SeedPart, record: dict) -> None:
        arrays = part.arrays()
        arrays["provenance"] = np.asarray(json.dumps(record, sort_keys=True))
        path = self.path(seed)
        atomic.write_npz_atomic(path, arrays)
        self._written.add(path)

    def remove(self, num_seeds: int) -> None:
        """Removes the parts of seeds 0..num_seeds-1, the lock, and the folder if emptied.

        Only files of the toolkit's own names go; anything else keeps the folder.
        """
        for seed in range(num_seeds):
            path = self.path(seed)
            if path.is_file() and not path.is_symlink():
                path.unlink()
        self.close()

    def close(self) -> None:
        """Releases the lock; removes the folder when only the lock is left in it."""
        if not self._lock.held:
            return
        try:
            if [entry.name for entry in self.folder.iterdir()] == [LOCK_NAME]:
                (self.folder / LOCK_NAME).unlink()
                self.folder.rmdir()
        except OSError:
            pass  # left in place: a later run reuses it
        finally:
            self._lock.release()

    def __enter__(self) -> SeedParts:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _part_of(arrays: dict[str, np.ndarray], path: Path) -> SeedPart:
    missing = [
        key
        for key in (*(f"table_{n}" for n in STATISTICS), "seen", "kde_hidden_epochs")
        if key not in arrays
    ]
    if missing:
        raise UsageError(f"{path}: a proxies seed part without {', '.join(missing)}")
    return SeedPart(
        tables={name: arrays[f"table_{name}"] for name in STATISTICS},
        seen=arrays["seen"],
        kde_hidden={
            name: arrays[f"kde_hidden_{name}"]
            for name in KDE_VARIANTS
            if f"kde_hidden_{name}" in arrays
        },
        kde_hidden_bandwidth=arrays["kde_hidden_bandwidth"],
        kde_hidden_epochs=arrays["kde_hidden_epochs"],
    )


@dataclasses.dataclass(frozen=True)
class StackedParts:
    """The seeds' parts as one recorder's tables ([M, E, N], [M, E', N], [M, E'])."""

    tables: dict[str, np.ndarray]
    seen: np.ndarray
    kde_hidden: dict[str, np.ndarray]
    kde_hidden_bandwidth: np.ndarray
    kde_hidden_epochs: list[int]


def stack_parts(parts: list[SeedPart], folder: Path) -> StackedParts:
    """Stacks the seeds' parts in seed order.

    Raises:
      UsageError: the parts disagree in shape (a part altered after it was written).
    """
    first = parts[0]
    for seed, part in enumerate(parts):
        shapes_agree = part.seen.shape == first.seen.shape and all(
            part.tables[name].shape == first.seen.shape for name in STATISTICS
        )
        epochs_agree = np.array_equal(part.kde_hidden_epochs, first.kde_hidden_epochs) and set(
            part.kde_hidden
        ) == set(first.kde_hidden)
        if not (shapes_agree and epochs_agree):
            raise UsageError(
                f"{folder / f'seed-{seed}.npz'}: its tables do not agree in shape with seed 0's"
            )
    return StackedParts(
        tables={name: np.stack([p.tables[name] for p in parts]) for name in STATISTICS},
        seen=np.stack([p.seen for p in parts]),
        kde_hidden={
            name: np.stack([p.kde_hidden[name] for p in parts]) for name in first.kde_hidden
        },
        kde_hidden_bandwidth=np.stack([p.kde_hidden_bandwidth for p in parts]),
        kde_hidden_epochs=[int(e) for e in first.kde_hidden_epochs],
    )
