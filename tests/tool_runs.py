"""Running the command-line tools as a user does, and the small synthetic experiment that
the score tools' tests share (its fixtures, `scores_experiment` and
`scores_experiment_copy`, are in tests/conftest.py)."""

import subprocess
import sys
from pathlib import Path

from heldout.testing.synthetic import SyntheticSpec

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SCORES_SPEC = SyntheticSpec(
    num_train=120, num_test=30, subset_ratios=(0.3, 0.7, 0.9), runs_per_ratio=8
)


def run_tool(
    name: str, *args: str, timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    """tools/<name>.py run with `--noprogress` and `args` in a fresh Python.

    Returns:
      The finished process, its stdout and stderr captured as text.
    """
    return subprocess.run(
        [sys.executable, str(TOOLS / f"{name}.py"), "--noprogress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
