"""The shared command entry point: exit statuses, and the objects frozen before exit."""

import subprocess
import sys

import pytest

_COMMAND = """
import atexit, gc, sys
from heldout.cli import app
from heldout.errors import UsageError
atexit.register(lambda: print("frozen objects:", gc.get_freeze_count()))
def main(argv):
    if {fail}:
        raise UsageError("bad input")
    return 3
sys.argv = ["command.py"]
app.run_command(main, "command")
"""


@pytest.mark.parametrize(("fail", "status"), [(False, 3), (True, 2)])
def test_a_command_exits_with_its_status_and_its_objects_frozen(fail, status):
    # Frozen: the collections at exit then skip them (0.2-0.3 s with numba loaded).
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND.format(fail=fail)], capture_output=True, text=True
    )
    assert done.returncode == status, done.stderr
    frozen = int(done.stdout.split("frozen objects:")[1])
    assert frozen > 1000
    assert ("command: error: bad input" in done.stderr) == fail
