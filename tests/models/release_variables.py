"""The release's checkpoint variable lists (tests/data/checkpoint_variables), read as specs.

The model and checkpoint tests check our key layout against these lists, never against
our own models, so one reader serves both.
"""

from __future__ import annotations

from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parents[1] / "data" / "checkpoint_variables"


def read_spec(filename: str) -> dict[str, list[int]]:
    """`name<TAB>[d0, d1, ...]` lines -> {name: shape}."""
    spec = {}
    for line in (SPEC_DIR / filename).read_text().splitlines():
        name, shape = line.split("\t")
        spec[name] = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
    return spec
