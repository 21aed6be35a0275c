"""A hostile or careless shared disk, against the real command in a fresh process: links
planted where a download writes, special files given to read, colliding and sparse tar
members, a full disk. Each must end in one line naming the file, with nothing else touched.
"""

import hashlib
import os
import random
import subprocess

import pytest
from download_servers import Entry, ObjectServer, make_targz
from tool_runs import run_script

PAYLOAD = {f"rel/0.1/{i}/aux_arrays.npz": random.Random(i).randbytes(200_000) for i in range(3)}
TARGZ = make_targz([Entry(name, data=data) for name, data in PAYLOAD.items()])
MD5 = hashlib.md5(TARGZ).hexdigest()
VICTIM_BYTES = b"someone else's data\n"


@pytest.fixture
def server():
    with ObjectServer() as s:
        yield s


def _download(*args, timeout=120, env=None) -> subprocess.CompletedProcess:
    return run_script("tools/download.py", *args, timeout=timeout, env=env)


def _one_line(completed: subprocess.CompletedProcess) -> str:
    err = completed.stderr.strip()
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("download: error: "), err
    return err


# ------------------------------------------------------------- links where we write


def _plant_link(tmp_path, out, name, dangling):
    """`out/name` -> a victim file outside `out` (or where one would be made)."""
    out.mkdir()
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_bytes(VICTIM_BYTES)
    link = out / name
    link.symlink_to(victim)
    return link, victim


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
@pytest.mark.parametrize("extract", [False, True], ids=["download", "extract"])
@pytest.mark.parametrize("name", ["release.tar.gz.part", ".release.tar.gz.lock"])
def test_a_link_planted_where_the_download_writes_is_refused_not_followed(
    server, tmp_path, name, extract, dangling
):
    url = server.put("/r/release.tar.gz", TARGZ)
    out = tmp_path / "out"
    link, victim = _plant_link(tmp_path, out, name, dangling)
    args = [f"--url={url}", f"--output_dir={out}", f"--md5={MD5}", "--retries=0"]
    err = _one_line(_download(*args, *(["--extract", "--keep_archive"] if extract else [])))
    assert str(link) in err and "symbolic link" in err, err
    # The victim is as it was (or still absent), the link still a link to it, nothing renamed.
    if dangling:
        assert not os.path.lexists(victim)
    else:
        assert victim.read_bytes() == VICTIM_BYTES
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_a_link_at_the_archive_name_is_read_but_never_replaced(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    out = tmp_path / "out"
    link, victim = _plant_link(tmp_path, out, "release.tar.gz", dangling=False)
    args = [f"--url={url}", f"--output_dir={out}", f"--md5={MD5}", "--retries=0"]
    err = _one_line(_download(*args, "--overwrite"))
    assert str(link) in err and "symbolic link" in err, err
    assert victim.read_bytes() == VICTIM_BYTES and link.is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["release.tar.gz"]


# ------------------------------------------------------------- special files to read


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder"])
def test_verify_refuses_what_is_not_a_regular_file_at_once(tmp_path, kind):
    path = kind
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif kind == "folder":
        path = tmp_path
    completed = _download(f"--verify={path}", f"--md5={MD5}", timeout=60)  # hung before
    err = _one_line(completed)
    assert f"{path}: is a" in err and "not a regular file" in err, err
