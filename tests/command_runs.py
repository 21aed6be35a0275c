"""Running the repository's commands from tests, the way a user runs them.

`tools/<name>.py` and `demo.py` in a fresh interpreter from the repository root, demo.py's
N-out-of-N verdict, and a command's `main` in this process with fresh flags: one place, so
every test runs a command the same way and reads its outcome the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: float | None = None):
    """`python <repository>/<script> args...` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def run_tool(name: str, *args: str, timeout: float | None = None):
    """`tools/<name>.py args...` (see `run_script`)."""
    return run_script(f"tools/{name}.py", *args, timeout=timeout)


def assert_demo_matches_all(completed: subprocess.CompletedProcess, total: int) -> None:
    """demo.py exited 0 and reproduced all `total` predictions of what it checked."""
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{total} out of {total} predictions match" in completed.stdout, completed.stdout


def run_main(command: ModuleType, script: str, args: list[str], capsys) -> tuple[int, str, str]:
    """A command module's `main` in this process with fresh flags, through the CLI's one-line
    error wrapper; returns (exit status, stdout, stderr) as captured by `capsys`."""
    from heldout.cli import app

    command.FLAGS.unparse_flags()
    command.FLAGS([script, *args])
    try:
        code = app.guarded(command.main, command.NAME)([script])
    finally:
        command.FLAGS.unparse_flags()
    out, err = capsys.readouterr()
    return code, out, err
