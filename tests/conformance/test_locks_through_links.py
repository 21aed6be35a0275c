"""A link planted at a lock file's name on a shared disk (`ln -s ~/victim OUT/.x.lock`)
is refused by the commands that take locks, in one line, and its target keeps its bytes:
here `heldout download`, run as a user runs it against the test HTTP server (whichever of
the download's own check or `_core.locks.FileLock`'s refuses it first)."""

import hashlib
import subprocess
import sys
from pathlib import Path

from download_servers import ObjectServer

TOOL = Path(__file__).resolve().parents[2] / "tools" / "download.py"
DATA = b"release bytes " * 1000


def test_download_refuses_a_link_planted_at_its_lock(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".good.tar.gz.lock"
    lock.symlink_to(victim)
    with ObjectServer() as server:
        url = server.put("/heldout/good.tar.gz", DATA)
        done = subprocess.run(
            [
                sys.executable,
                str(TOOL),
                f"--url={url}",
                f"--output_dir={out}",
                f"--md5={hashlib.md5(DATA).hexdigest()}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0, done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"download: error: {lock}") and "symbolic link" in line, line
    assert "refusing" in line, line
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == [".good.tar.gz.lock"]
