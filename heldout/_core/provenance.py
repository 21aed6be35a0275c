"""What a stored result records about what it is a result of."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


def file_identity(path: PathLike) -> dict:
    """What a stored result records about an input file: absolute path, size, mtime (ns).

    Equal identities mean, in practice, the same bytes; a resume compares them so that a
    result computed from another file is never taken for this one's.
    """
    path = Path(path).absolute()
    stat = path.stat()
    return {"path": str(path), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


TOOLKIT_VERSION = "0.1.0"  # `heldout.__version__`; kept here so _core needs no upward import


def provenance_for(**fields: Any) -> dict:
    """The one provenance record (JSON-able) of a written result: the toolkit's version
    plus what the result is a result of (`fields`: input identities, options, run ids).

    Every writer calls this, so a reader finds the same `heldout_version` key everywhere
    and a resume can compare records field by field.
    """
    return {"heldout_version": TOOLKIT_VERSION, **fields}


def parse_provenance(raw, source: str, error: type[Exception]) -> dict:
    """A stored `provenance` array (a JSON object as a 0-d or 1-d string) as a dict.

    Any file may be hostile: invalid JSON, thousands of nested brackets (Python's JSON
    parser recurses) or another JSON type are `error`s naming `source`, never a traceback.
    """
    try:
        value = json.loads(str(raw.item() if raw.ndim == 0 else raw))
    except (ValueError, TypeError) as problem:
        raise error(f"{source}: `provenance` is not JSON ({problem})") from None
    except RecursionError:  # thousands of nested brackets: no record we write
        raise error(f"{source}: `provenance` is nested too deeply") from None
    if not isinstance(value, dict):
        raise error(f"{source}: `provenance` must be a JSON object")
    return value
