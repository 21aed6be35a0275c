"""Running the repository's commands as a user does, and the small synthetic experiment that
the score tools' tests share (its fixtures, `scores_experiment` and
`scores_experiment_copy`, are in tests/conftest.py).

One place runs `tools/*.py` and `demo.py` in a fresh Python, reads demo.py's N-out-of-N
verdict, and runs a command's `main` in this process, so every test does it the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

from heldout.testing.synthetic import SyntheticSpec

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
SCORES_SPEC = SyntheticSpec(
    num_train=120, num_test=30, subset_ratios=(0.3, 0.7, 0.9), runs_per_ratio=8
)


def run_script(
    script: str,
    *args: str,
    timeout: float | None = None,
    env: dict | None = None,
    cwd: Path | None = REPO,
) -> subprocess.CompletedProcess:
    """`<repository>/<script> args...` in a fresh Python, from the repository root.

    Returns:
      The finished process, its stdout and stderr captured as text.
    """
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def run_tool(
    name: str, *args: str, timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    """tools/<name>.py of a score command (one with `--progress`), run with `--noprogress`
    and `args` in a fresh Python, from the current folder.

    Returns:
      The finished process, its stdout and stderr captured as text.
    """
    return run_script(f"tools/{name}.py", "--noprogress", *args, timeout=timeout, env=env, cwd=None)


def assert_demo_matches_all(completed: subprocess.CompletedProcess, total: int) -> None:
    """demo.py exited 0 and reproduced all `total` predictions of what it checked."""
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{total} out of {total} predictions match" in completed.stdout, completed.stdout


def run_main(command: ModuleType, script: str, args: list[str], capsys) -> tuple[int, str, str]:
    """A command module's `main` in this process with fresh flags, through the CLI's one-line
    error wrapper.

    Returns:
      (exit status, stdout, stderr), the output as `capsys` captured it.
    """
    from heldout.cli import app

    command.FLAGS.unparse_flags()
    command.FLAGS([script, *args])
    try:
        code = app.guarded(command.main, command.NAME)([script])
    finally:
        command.FLAGS.unparse_flags()
    out, err = capsys.readouterr()
    return code, out, err
