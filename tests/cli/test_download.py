"""tools/download.py end to end, as a user runs it, against the test HTTP server."""

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest
from download_servers import Entry, Faults, ObjectServer, make_targz

TOOL = Path(__file__).resolve().parents[2] / "tools" / "download.py"
TREE = {f"exp/0.7/{i}/aux_arrays.npz": random.Random(i).randbytes(300_000) for i in range(3)}
TREE["exp/0.7/0/checkpoints/ckpt-80.index"] = b"index"
TARGZ = make_targz([Entry(name, data=data) for name, data in TREE.items()])
MD5 = hashlib.md5(TARGZ).hexdigest()


@pytest.fixture
def url():
    with ObjectServer() as server:
        server.faults = Faults(drop_after=100_000, drops=1)
        yield server.put("/heldout/release.tar.gz", TARGZ)


def run(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60
    )


def test_extract_only_end_to_end(url, tmp_path):
    done = run(
        f"--url={url}",
        f"--output_dir={tmp_path}",
        f"--md5={MD5}",
        "--extract",
        "--only=*/aux_arrays.npz",
        "--retries=2",
    )
    assert done.returncode == 0, done.stderr
    assert f"MD5:         {MD5} (verified)" in done.stdout
    assert "extracted:   3 files" in done.stdout and "1 not selected" in done.stdout
    assert "retry 1/2" in done.stderr  # the drop, told on the way
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npz")) == [
        f"exp/0.7/{i}/aux_arrays.npz" for i in range(3)
    ]
    assert not (tmp_path / "exp/0.7/0/checkpoints").exists()


def test_mismatch_exits_nonzero_and_keeps_data(url, tmp_path):
    done = run(f"--url={url}", f"--output_dir={tmp_path}", "--md5=" + "0" * 32)
    assert done.returncode == 1
    assert "server reports MD5" in done.stderr  # refused before downloading anything

    archive = tmp_path / "release.tar.gz"
    archive.write_bytes(TARGZ)
    done = run(f"--verify={archive}", f"--md5={MD5.upper()}")
    assert done.returncode == 0 and done.stdout.startswith(f"OK {MD5}")
    done = run(f"--verify={archive}", "--md5=" + "0" * 32)
    assert done.returncode == 1
    assert f"MISMATCH {archive}: expected {'0' * 32}, got {MD5}" in done.stdout
    assert archive.read_bytes() == TARGZ


def test_refused_members_make_a_nonzero_exit(tmp_path):
    with ObjectServer() as server:
        url = server.put(
            "/bad.tar.gz",
            make_targz([Entry("../escape.txt", data=b"x"), Entry("ok.txt", data=b"ok")]),
        )
        out = tmp_path / "out"
        done = run(f"--url={url}", f"--output_dir={out}", "--extract")
    assert done.returncode == 1
    assert "REFUSED:     '../escape.txt': path contains '..'" in done.stdout
    assert (out / "ok.txt").read_bytes() == b"ok" and not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "exactly one of --artifact and --url"),
        (["--artifact=cifar10-inception"], "--output_dir is required"),
        (["--url=http://x/a.tar.gz", "--output_dir=o", "--only=*"], "apply to --extract"),
        (["--url=http://x/a.tar.gz", "--output_dir=o", "--md5=xyz"], "not an MD5"),
        (["--verify=missing.tar.gz", "--md5=xyz"], "not an MD5"),
    ],
)
def test_usage_errors(args, message):
    done = run(*args)
    assert done.returncode == 2, done.stderr  # the documented status for usage errors
    assert done.stderr == f"download: error: {done.stderr.split('error: ', 1)[1]}"
    assert message in done.stderr and len(done.stderr.splitlines()) == 1


def test_failures_are_one_line_with_status_1(tmp_path):
    with ObjectServer() as server:
        missing = f"http://127.0.0.1:{server.port}/missing.tar.gz"
        done = run(f"--url={missing}", f"--output_dir={tmp_path}", f"--md5={MD5}")
    assert done.returncode == 1
    assert done.stderr == f"download: error: {missing}: HTTP 404 Not Found\n"
    done = run(f"--verify={tmp_path / 'absent.tar.gz'}", f"--md5={MD5}")
    assert done.returncode == 1 and done.stderr.startswith("download: error: [Errno 2]")
    assert len(done.stderr.splitlines()) == 1
