"""The docs against the tree: a short README, a complete module map, links that resolve."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
ARCHITECTURE = DOCS / "architecture.md"
PACKAGE = REPO / "heldout"

README_MAX_BYTES = 12 * 1024

# `heldout/...py` or `heldout/.../` in backticks at the start of a list item.
_MAP_ENTRY = re.compile(r"^- `(heldout/[^`]*)`", re.MULTILINE)
# [text](target): inline Markdown links; the target ends at the first space or ')'.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s[^)]*)?\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_EXTERNAL = ("http://", "https://", "mailto:", "gs://")


def _map_name(module: Path) -> str:
    """How architecture.md names a module file: a package's `__init__.py` is `pkg/`."""
    relative = module.relative_to(REPO).as_posix()
    if module.name == "__init__.py":
        return relative[: -len("__init__.py")]
    return relative


def _module_files() -> list[Path]:
    return sorted(PACKAGE.glob("**/*.py"))


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _links(path: Path) -> list[tuple[str, str]]:
    """(file, fragment) of every relative link in `path`; file is "" for `#fragment`."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    links = []
    for target in _LINK.findall(text):
        if target.startswith(_EXTERNAL):
            continue
        file, _, fragment = target.partition("#")
        links.append((file, fragment))
    return links


def _relative_links(path: Path) -> list[str]:
    return [file for file, _ in _links(path) if file]


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_readme_is_at_most_12_kib():
    size = len(README.read_text(encoding="utf-8").encode())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, over {README_MAX_BYTES}: move detail into docs/"
    )


def test_every_module_has_a_line_in_the_architecture_map():
    listed = set(_MAP_ENTRY.findall(ARCHITECTURE.read_text(encoding="utf-8")))
    missing = [_map_name(module) for module in _module_files() if _map_name(module) not in listed]
    assert not missing, "docs/architecture.md has no line for: " + ", ".join(missing)


def test_the_architecture_map_names_only_modules_that_exist():
    existing = {_map_name(module) for module in _module_files()}
    listed = _MAP_ENTRY.findall(ARCHITECTURE.read_text(encoding="utf-8"))
    stale = [name for name in listed if name not in existing]
    assert not stale, "docs/architecture.md lists modules that do not exist: " + ", ".join(stale)


def test_the_map_convention_names_packages_by_their_folder():
    # The two checks above only mean something if the naming rule matches the tree.
    assert _map_name(PACKAGE / "__init__.py") == "heldout/"
    assert _map_name(PACKAGE / "scores" / "influence.py") == "heldout/scores/influence.py"
    assert len(_module_files()) > 50


def test_every_relative_link_points_at_an_existing_file():
    broken = []
    for path in _markdown_files():
        for target in _relative_links(path):
            if not target:
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(REPO)} -> {target}")
    assert not broken, "broken relative links: " + ", ".join(broken)


def test_every_link_to_a_heading_finds_it():
    broken = []
    for path in _markdown_files():
        for file, fragment in _links(path):
            target = path.parent / file if file else path
            if fragment and target.suffix == ".md" and target.exists():
                if fragment not in _anchors(target):
                    broken.append(f"{path.relative_to(REPO)} -> {file}#{fragment}")
    assert not broken, "links to missing headings: " + ", ".join(broken)


def test_the_link_check_sees_links():
    # A regex that matched nothing would pass the check above vacuously.
    assert "docs/architecture.md" in _relative_links(README)
    assert _relative_links(DOCS / "architecture.md")
    assert "figures-heldout-plot" in _anchors(DOCS / "scores.md")
    assert ("release.md", "dataset-orders-heldout-map-order-toolsmap_orderpy") in _links(
        DOCS / "methods.md"
    )
