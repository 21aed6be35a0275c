"""One error hierarchy: every problem the toolkit reports to a user is a `HeldoutError`.

A command line catches `HeldoutError` (and `OSError`) and prints one line naming the file
and the problem; anything else is a bug and keeps its traceback. Errors about a bad value
also derive from `ValueError`. Messages speak of values; the command line adds flag names.
"""

from __future__ import annotations

import traceback


class HeldoutError(Exception):
    """Root of every error the toolkit raises on purpose; the message says what to do."""


class UsageError(HeldoutError, ValueError):
    """Options that do not fit together or are out of range (a command exits with 2)."""


class InputFileError(HeldoutError, ValueError):
    """A file given to the toolkit that cannot be used as it is; the message starts with it."""


class NpzFileError(InputFileError):
    """A `.npz`/`.npy` file that is missing, truncated, pickled or lacks the expected arrays."""


class ReleaseLayoutError(HeldoutError, ValueError):
    """A folder that is not laid out as an experiment, ratio or run; names the folder."""


class ExperimentMetaError(ReleaseLayoutError, InputFileError):
    """An `experiment.json` that is not the JSON object the toolkit writes."""


class AuxArraysError(InputFileError):
    """A malformed `aux_arrays.npz`; the message starts with the file it is about."""


class OutputsError(InputFileError):
    """An `outputs.npz` that is malformed, from another checkpoint, or disagrees with the run's
    aux arrays; the message starts with the file."""


class InconsistentRunError(AuxArraysError):
    """A run whose split sizes differ from the experiment's; names both files."""


class CheckpointError(HeldoutError, ValueError):
    """A checkpoint that cannot be found, read, or restored into the given model."""


class DatasetError(HeldoutError, ValueError):
    """A dataset that cannot be found, read, or does not have the expected contents."""


class ModelError(HeldoutError, ValueError):
    """An architecture or class count that cannot be built or inferred."""


class TrainingError(HeldoutError, ValueError):
    """A configuration or output folder that cannot be trained as asked."""


class LabelCorruptionError(HeldoutError, ValueError):
    """A label-corruption record that is malformed or does not fit the dataset."""


class ScoresError(HeldoutError, ValueError):
    """Scores that cannot be computed as asked (no runs, unknown score, missing ratio)."""


class ScoresFileError(InputFileError):
    """A scores `.npz` that lacks the arrays a figure or comparison needs."""


class CompareError(InputFileError):
    """Published and computed scores that cannot be compared (lengths, orders, indices)."""


class PublishedFileError(CompareError, DatasetError):
    """A published (or exported) score file that is unreadable or not of its format.

    Both a `CompareError` and a `DatasetError`: comparisons and order mappings read these
    files, and their callers catch those.
    """


class IdentityMismatchError(CompareError, DatasetError):
    """Two files whose values index different datasets, or one in different orders.

    Both a `CompareError` and a `DatasetError`: comparisons, exports and analyses check
    identities, and their callers catch those.
    """


class StaleResultError(HeldoutError):
    """A stored result that belongs to other inputs or options than the ones asked for."""


class LockBusyError(HeldoutError):
    """Another process holds the lock on a folder or file; the message names its PID.

    Attributes:
      holders: the PIDs known to hold the lock (empty when the system does not say).
    """

    def __init__(self, message: str, holders: tuple[int, ...] = ()):
        super().__init__(message)
        self.holders = tuple(holders)


class InsufficientSpaceError(HeldoutError):
    """Not enough free disk space for what is about to be written; says how much is missing."""


class DownloadError(HeldoutError, RuntimeError):
    """A download or extraction that could not finish; the message says why and what was kept."""


class UnsafeWriteError(HeldoutError, OSError):
    """A file the toolkit would write that is not safe to write: a symbolic link (which
    would be followed onto someone else's file), a non-regular lock file, or a file that
    could not be written (full disk, size limit); the message names the file and the cause.

    An `OSError` too, so that code guarding a write with `except OSError` still sees it.
    """


class OutputOverInputError(UsageError):
    """An output that is (or lies inside) one of the command's inputs; names both."""


__all__ = [
    "AuxArraysError",
    "CheckpointError",
    "CompareError",
    "DatasetError",
    "DownloadError",
    "ExperimentMetaError",
    "HeldoutError",
    "IdentityMismatchError",
    "InconsistentRunError",
    "InputFileError",
    "InsufficientSpaceError",
    "LabelCorruptionError",
    "LockBusyError",
    "ModelError",
    "NpzFileError",
    "OutputOverInputError",
    "PublishedFileError",
    "ReleaseLayoutError",
    "ScoresError",
    "ScoresFileError",
    "StaleResultError",
    "TrainingError",
    "UnsafeWriteError",
    "UsageError",
]


def describe_error(error: BaseException) -> tuple[str, str | None]:
    """How a failure is recorded: (message, traceback), the traceback only for bugs.

    Args:
      error: what was raised.

    Returns:
      The message (the class name when it has none; prefixed by the class name for errors
      that are neither a `HeldoutError` nor an `OSError`) and, for those, the traceback.
    """
    message = str(error) or type(error).__name__
    if isinstance(error, (HeldoutError, OSError)):
        return message, None
    return f"{type(error).__name__}: {message}", "".join(traceback.format_exception(error))
