"""The one loader of `.npz`/`.npy` files: it never unpickles unless asked, and turns every
way such a file can be broken into one `NpzFileError` that names the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from heldout._core.atomic import PathLike
from heldout.errors import NpzFileError

_ZIP_MAGIC = b"PK"  # a local file header, or the end record of an empty .npz
_NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------------- reading


def load_npz(
    path: PathLike,
    *,
    keys: Iterable[str] | None = None,
    allow_pickle: bool = False,
    error: type[Exception] = NpzFileError,
    what: str = "a numpy .npz file",
) -> dict[str, np.ndarray]:
    """Every array of an `.npz` file (or the one array of an `.npy` under the key `""`).

    Args:
      path: the file.
      keys: arrays that must be present (others are returned too).
      allow_pickle: unpickle object arrays; only when the user asked for it by a flag, for
        a file they trust (pickles run code).
      error: the `HeldoutError` subclass to raise (e.g. `AuxArraysError`).
      what: how the file is described in the error ("a scores file").

    Returns:
      key -> array, fully read into memory (the file is closed).

    Raises:
      `error` (default NpzFileError): the message starts with `path` and says what is wrong.
    """
    source = str(path)
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{source}: is a folder, expected {what}")
        if path.stat().st_size == 0:
            raise error(f"{source}: the file is empty (an interrupted write?); expected {what}")
        with open(path, "rb") as f:
            magic = f.read(6)
        if not (magic.startswith(_ZIP_MAGIC) or magic == _NPY_MAGIC):
            # np.load would take any other bytes for a pickle and say so: misleading.
            raise error(f"{source}: not a numpy .npz or .npy file (it starts with {magic!r})")
        loaded = np.load(path, allow_pickle=allow_pickle)
        if isinstance(loaded, np.ndarray):
            arrays = {"": loaded}
        else:
            with loaded as npz:
                arrays = {key: npz[key] for key in npz.files}
    except error:
        raise  # ours, from the checks above: already says what is wrong
    except FileNotFoundError:
        raise error(f"{source}: file not found") from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise error(
                f"{source}: holds pickled object arrays, which are refused (unpickling a "
                "file from elsewhere can run code)"
            ) from None
        raise error(f"{source}: cannot read as {what} ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        # BadZipFile/EOFError: truncated; OSError: corrupt members, unreadable file.
        raise error(f"{source}: cannot read as {what} ({type(e).__name__}: {e})") from None
    if keys is not None:
        missing = [key for key in keys if key not in arrays]
        if missing:
            raise error(
                f"{source}: missing arrays {missing} (it has {sorted(arrays)}); expected {what}"
            )
    return arrays
