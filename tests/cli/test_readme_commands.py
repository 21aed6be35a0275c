"""Every command line in README.md and docs/cli.md names a command that exists and only
flags that command takes (old names through the renamed-flag path included)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from heldout.cli.main import COMMANDS

REPO = Path(__file__).resolve().parents[2]
_SCRIPTS = {"demo.py": "demo"} | {
    f"tools/{command.module}.py": name for name, command in COMMANDS.items()
}
_CALL = re.compile(r"(?:python\s+(tools/\w+\.py|demo\.py)|\bheldout\s+([a-z][a-z-]+))")


def _commands_in(text: str) -> list[tuple[str, list[str]]]:
    """(command, flags) of every command line, continuation lines joined."""
    text = text.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for match in _CALL.finditer(line):
            script, name = match.groups()
            command = _SCRIPTS.get(script) if script else name
            if command is None or (name and name not in COMMANDS):
                continue  # prose such as "heldout training"
            rest = line[match.end() :]
            rest = re.split(r"\s(?:python|heldout)\s|`|#|;|&&", rest)[0]
            found.append((command, re.findall(r"(?<![\w-])--([a-z_]+)", rest)))
    return found


def _flags_of(command: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", "from heldout.cli.main import run; run()", command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    names = set(re.findall(r"^  --(?:\[no\])?([a-z_]+):", done.stdout, re.M))
    return names | {f"no{name}" for name in names} | {"help"}


def test_documented_command_lines_use_existing_commands_and_flags():
    lines = []
    for doc in (REPO / "README.md", REPO / "docs" / "cli.md"):
        lines += [(doc.name, *found) for found in _commands_in(doc.read_text())]
    assert len({command for _, command, _ in lines}) >= 10  # the parser finds them
    known: dict[str, set[str]] = {}
    for doc, command, flags in lines:
        if command not in known:
            known[command] = _flags_of(command)
        unknown = sorted(set(flags) - known[command])
        assert not unknown, (doc, command, unknown)
