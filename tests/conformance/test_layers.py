"""The shape of the package: the import-linter contracts, no import cycle, small modules.

These read the source tree only (no heldout module is imported), so they fail fast and
name the offending modules.
"""

import configparser
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "heldout"
CONFIG = ROOT / ".importlinter"
MAX_TOP_LEVEL_ENTRIES = 18
MAX_MODULE_LINES = 500
# Modules allowed past MAX_MODULE_LINES: each is one class hierarchy (the note names them).
ONE_CLASS_HIERARCHY: set[str] = set()


def _lint_imports() -> Path:
    return Path(sys.executable).with_name("lint-imports")


def test_the_import_contracts_hold():
    result = subprocess.run(
        [str(_lint_imports()), "--no-cache", str(CONFIG)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_no_contract_ignores_an_import():
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    contracts = [s for s in parser.sections() if s.startswith("importlinter:contract")]
    assert len(contracts) == 2
    for section in contracts:
        assert "ignore_imports" not in parser[section], section
        assert "unmatched_ignore_imports_alerting" not in parser[section], section


def test_every_tensorflow_free_scores_module_is_in_the_forbidden_contract():
    """The contract lists the scores backends one by one (tf_gpu is the one exception), so a
    new backend module must be added there, not silently left unchecked."""
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    sources = parser["importlinter:contract:no-tensorflow"]["source_modules"].split()
    backends = PACKAGE / "scores" / "backends"
    for path in backends.glob("*.py"):
        if path.stem in ("__init__", "tf_gpu"):
            continue
        assert f"heldout.scores.backends.{path.stem}" in sources, path


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1 (import cycles), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph.modules:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycle_including_function_level_and_type_checking_imports():
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph("heldout", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    # The root's lazy map (heldout/__init__.py) names every public module; nothing imports
    # the root back, which the layer contract and this check both need.
    importers_of_root = graph.find_modules_that_directly_import("heldout")
    assert not importers_of_root, f"modules importing the root package: {importers_of_root}"
    assert _strongly_connected(graph) == []


def test_at_most_18_top_level_entries():
    entries = sorted(
        p.name for p in PACKAGE.iterdir() if p.name != "__pycache__" and not p.name.startswith(".")
    )
    assert len(entries) <= MAX_TOP_LEVEL_ENTRIES, entries


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_module_over_500_lines(path):
    name = str(path.relative_to(ROOT))
    if name in ONE_CLASS_HIERARCHY:
        return
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines"
