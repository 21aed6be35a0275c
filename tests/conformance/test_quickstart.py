"""The README's quickstart, run as written on a small synthetic release.

The one change: `heldout download` fetches a tarball of the synthetic release from a real
HTTP server on 127.0.0.1 (`--url` in place of `--artifact`, whose 239 GB archive this
test cannot fetch); every other flag of every quickstart line is used as written, in the
order written, from a fresh working folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from download_servers import ObjectServer

from heldout.testing import SyntheticSpec, write_synthetic_experiment

REPO = Path(__file__).resolve().parents[2]
HELDOUT = Path(sys.executable).with_name("heldout")  # the console script users run
# The registry knows cifar10-inception: its runs must have its split sizes.
SPEC = SyntheticSpec(num_train=50000, num_test=10000, subset_ratios=(0.3, 0.7), runs_per_ratio=4)


def _quickstart_lines() -> list[list[str]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # the first block
    return [shlex.split(line) for line in block.splitlines() if line.startswith("heldout ")]


def _release_tarball(tmp_path: Path) -> Path:
    experiment = tmp_path / "made" / "cifar10-inception"
    write_synthetic_experiment(experiment, SPEC)
    tarball = tmp_path / "cifar10-inception.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(experiment, arcname="cifar10-inception")
    return tarball


def test_the_quickstart_runs_as_written(tmp_path):
    lines = _quickstart_lines()
    assert [line[1] for line in lines] == ["download", "scores", "plan-runs", "scores"]
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ, "HELDOUT_HOME": str(tmp_path / "home")}
    with ObjectServer() as server:
        url = server.put("/cifar10-inception.tar.gz", _release_tarball(tmp_path))
        for argv in lines:
            if argv[1] == "download":
                argv = [f"--url={url}" if a.startswith("--artifact=") else a for a in argv]
            done = subprocess.run(
                [str(HELDOUT), *argv[1:]],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-3000:])
    runs = sorted((workdir / "data" / "cifar10-inception").glob("*/*/aux_arrays.npz"))
    assert len(runs) == len(SPEC.subset_ratios) * SPEC.runs_per_ratio
    for written in ("scores.npz", "reliability.png", "influence.npz"):
        assert (workdir / written).is_file(), written


@pytest.mark.parametrize("command", ["--help"])
def test_the_single_command_answers(command):
    done = subprocess.run([str(HELDOUT), command], capture_output=True, text=True)
    assert done.returncode == 0
    for name in ("download", "scores", "plan-runs", "plot", "published", "demo"):
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M), name
