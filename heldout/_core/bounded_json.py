"""Parse a JSON file that may be hostile: bounded in size and nesting depth.

`json.loads` raises `ValueError` for an integer of more than 4300 digits and
`RecursionError` for deep nesting, and reads a file of any size: each becomes one error
naming the file, raised before the parse where it can be.
"""

from __future__ import annotations

import json
import os
import re
import stat

from heldout._core.atomic import PathLike

MAX_BYTES = 16 << 20  # far more than any record the toolkit writes
MAX_DEPTH = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings ignored)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def load_json_file(
    path: PathLike,
    error: type[Exception],
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> object:
    """The decoded content of a JSON file, refused when too large, too deep or invalid.

    Args:
      path: the file.
      error: the `HeldoutError` subclass to raise.
      max_bytes, max_depth: the bounds (a record the toolkit writes is far within them).

    Returns:
      What `json.loads` gives.

    Raises:
      `error`: one line starting with the file; OSError where it cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO: no wait
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path}: not a regular file (a FIFO, device or socket)")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{path}: larger than {max_bytes} bytes; not a record the toolkit reads")
    try:
        text = data.decode("utf-8")
        depth = nesting_depth(text)
        if depth > max_depth:
            raise error(
                f"{path}: nested {depth} levels deep, more than the {max_depth} a record may be"
            )
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError too
        if isinstance(e, error):
            raise
        raise error(f"{path}: not valid JSON ({e})") from None
