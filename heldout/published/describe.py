"""Which published format a file is in, told by the arrays it holds, and the file loaded.

Lets one command inspect any of the three formats (C-scores, pairs, class-wise) even
when the file was renamed.
"""

from __future__ import annotations

import os
from typing import Any

from heldout.errors import PublishedFileError
from heldout.published.classwise import load_classwise_influence
from heldout.published.cscores import load_cscores
from heldout.published.format import CLASSWISE_KEYS, PAIR_KEYS, member_names
from heldout.published.pairs import load_influence_pairs


def describe(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[str, Any]:
    """Which published format a file is in, loaded: ("cscores" | "pairs" | "classwise", obj).

    Decided by the arrays present, so a renamed file is still read correctly.

    Args:
      path: a C-score (`.npz`/`.npy`), high-influence pairs or class-wise influence file.
      allow_pickle: as `load_cscores` (ImageNet's C-score file needs it).

    Returns:
      (kind, record): "cscores" and a `CScoreFile`, "pairs" and `PublishedPairs`, or
      "classwise" and a `ClasswiseInfluence`.

    Raises:
      PublishedFileError: the file is none of the formats, lacks a key of the format its
        other keys show, or is broken.
    """
    source = os.fspath(path)
    if source.endswith(".npy"):
        return "cscores", load_cscores(source)
    names = member_names(source)
    if all(key in names for key in PAIR_KEYS):
        return "pairs", load_influence_pairs(source)
    if all(key in names for key in CLASSWISE_KEYS):
        return "classwise", load_classwise_influence(source)
    if "scores" not in names:
        _refuse_partial_format(source, names)
    # Not recognizable from its members (or unreadable): the C-score loader says why.
    return "cscores", load_cscores(source, allow_pickle=allow_pickle)


def _refuse_partial_format(source: str, names: set[str]) -> None:
    """A file holding some keys of the pairs or class-wise format, and not all: the error
    names the format it was taken for and the keys it lacks (not "no `scores`")."""
    formats = (("high-influence pairs", PAIR_KEYS), ("class-wise influence", CLASSWISE_KEYS))
    kind, keys = max(formats, key=lambda item: sum(key in names for key in item[1]))
    present = [key for key in keys if key in names]
    if present:
        missing = [key for key in keys if key not in names]
        raise PublishedFileError(
            f"{source}: taken for a {kind} file (it has {', '.join(present)}), but it lacks "
            f"{', '.join(missing)}"
        )
