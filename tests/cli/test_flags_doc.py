"""docs/cli.md against the real flag definitions: its tables of commands and of flags are
generated from each command's flags (one subprocess per command, as `heldout` runs them).

`HELDOUT_UPDATE_DOCS=1 pytest tests/cli/test_flags_doc.py` rewrites the generated parts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from heldout.cli.main import COMMANDS, module_of

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "cli.md"
_SHIMS = {"demo": "demo.py"}

_PROBE = """
import importlib, json, sys
from absl import flags
from heldout.cli import flag_types
module = importlib.import_module(sys.argv[1])
getattr(module, "define_flags", lambda: None)()
rows = []
for flag in flags.FLAGS.get_key_flags_for_module(sys.argv[1]):
    rows.append({"name": flag.name, "meaning": flag_types.MEANINGS.get(flag.name, flag.help),
                 "renamed_to": flag_types.RENAMED_TO.get(flag.name)})
print(json.dumps(rows))
"""


def command_flags() -> dict[str, list[dict]]:
    """Per command, the flags its `--help` lists (the renamed old names marked)."""
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", _PROBE, module_of(name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in COMMANDS
    }
    result = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        result[name] = json.loads(out.strip().splitlines()[-1])
    return result


def _script(command: str) -> str:
    module = COMMANDS[command].module
    return _SHIMS.get(command, f"tools/{module}.py")


def generated_commands() -> str:
    lines = ["| command | also | what it does |", "|---|---|---|"]
    for name, command in COMMANDS.items():
        lines.append(f"| `heldout {name}` | `{_script(name)}` | {command.summary} |")
    return "\n".join(lines)


def generated_flags(by_command: dict[str, list[dict]]) -> str:
    """A row per flag and meaning (a flag two groups define differently has two rows)."""
    takers: dict[tuple[str, str], list[str]] = {}
    renamed: dict[tuple[str, str], list[str]] = {}
    for command, rows in by_command.items():
        for row in rows:
            if row["renamed_to"]:
                renamed.setdefault((row["name"], row["renamed_to"]), []).append(command)
            else:
                meaning = " ".join(row["meaning"].split()).replace("|", "\\|")
                takers.setdefault((row["name"], meaning), []).append(command)
    lines = ["| flag | commands | meaning |", "|---|---|---|"]
    for (name, meaning), commands in sorted(takers.items()):
        lines.append(f"| `--{name}` | {', '.join(sorted(commands))} | {meaning} |")
    lines += ["", "Renamed flags (the old name still works, with a warning on stderr):", ""]
    lines += ["| old flag | use now | commands |", "|---|---|---|"]
    for (name, use), commands in sorted(renamed.items()):
        lines.append(f"| `--{name}` | {use} | {', '.join(sorted(commands))} |")
    return "\n".join(lines)


def _replace(text: str, block: str, body: str) -> str:
    begin, end = f"<!-- {block}:begin (generated) -->", f"<!-- {block}:end -->"
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"


def test_the_tables_of_docs_cli_are_those_of_the_flag_definitions():
    text = DOC.read_text()
    expected = _replace(text, "commands", generated_commands())
    expected = _replace(expected, "flags", generated_flags(command_flags()))
    if expected != text and os.environ.get("HELDOUT_UPDATE_DOCS"):
        DOC.write_text(expected)
        text = expected
    assert text == expected, "docs/cli.md is stale: rerun with HELDOUT_UPDATE_DOCS=1"


def test_every_flag_of_every_command_is_in_the_table():
    listed = set()
    for line in DOC.read_text().splitlines():
        if line.startswith("| `--"):
            cells = [cell.strip() for cell in line.strip("| ").split(" | ")]
            for column in (1, 2):  # commands: 1 in the flag table, 2 in the renamed one
                listed |= {(cells[0].strip("`-"), c) for c in cells[column].split(", ")}
    for command, flags in command_flags().items():
        for row in flags:
            assert (row["name"], command) in listed, (command, row["name"])
