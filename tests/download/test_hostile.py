"""A hostile or careless shared disk, against the real command in a fresh process: links
planted where a download writes, special files given to read, colliding and sparse tar
members, a full disk. Each must end in one line naming the file, with nothing else touched.
"""

import gzip
import hashlib
import io
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tarfile

import pytest
from download_servers import Entry, Faults, ObjectServer, make_targz
from tool_runs import REPO, run_script

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
    """The one error line of a failed run (besides the progress bar's, if bytes moved)."""
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if not _is_progress(line)]
    assert len(lines) == 1 and lines[0].startswith("download: error: "), completed.stderr
    return lines[0]


def _is_progress(line: str) -> bool:
    """A line of the progress bar (tqdm redraws with carriage returns: blank lines too)."""
    return not line.strip() or "B/s" in line


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


def test_a_fifo_at_the_part_name_is_refused_not_opened(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "release.tar.gz.part")
    args = [f"--url={url}", f"--output_dir={out}", f"--md5={MD5}", "--retries=0"]
    err = _one_line(_download(*args, timeout=30))  # opening it for writing blocked before
    assert f"{out}/release.tar.gz.part: is a FIFO, not a regular file" in err, err


def test_a_dangling_link_where_bad_bytes_are_kept_aside_is_not_replaced(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    server.faults = Faults(corrupt_offsets=(len(TARGZ) // 2,))
    out = tmp_path / "out"
    link, victim = _plant_link(tmp_path, out, "release.tar.gz.md5-mismatch", dangling=True)
    completed = _download(f"--url={url}", f"--output_dir={out}", f"--md5={MD5}", "--retries=0")
    err = _one_line(completed)
    assert f"The data is kept as {out}/release.tar.gz.md5-mismatch.1." in err, err
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert not os.path.lexists(victim)


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


# ------------------------------------------------------------- extraction temporaries


def _extract(url, out, md5, *extra, **kwargs):
    return _download(
        f"--url={url}",
        f"--output_dir={out}",
        f"--md5={md5}",
        "--retries=0",
        "--extract",
        *extra,
        **kwargs,
    )


def test_a_member_named_like_a_temporary_never_takes_another_members_place(server, tmp_path):
    # Today's temporaries were `.<name>.heldout-tmp` beside the target: this member's own
    # rename raced with the next member's temporary, and `t/a` ended with the wrong bytes.
    first, second = random.Random(1).randbytes(300_000), random.Random(2).randbytes(300_000)
    targz = make_targz([Entry("t/.a.heldout-tmp", data=first), Entry("t/a", data=second)])
    md5 = hashlib.md5(targz).hexdigest()
    url = server.put("/r/race.tar.gz", targz)
    wrong = []
    for attempt in range(16):  # about half went wrong before, with exit status 0
        out = tmp_path / f"out{attempt}"
        completed = _extract(url, out, md5)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        got = {name: data for name, data in got.items() if not name.endswith(".lock")}
        if got != {"t/.a.heldout-tmp": first, "t/a": second}:
            wrong.append(attempt)
    assert wrong == []


def test_a_file_of_the_user_named_like_a_temporary_is_left_alone(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    out = tmp_path / "out"
    theirs = out / "rel/0.1/0/.aux_arrays.npz.heldout-tmp"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(VICTIM_BYTES)
    completed = _extract(url, out, MD5)
    assert completed.returncode == 0, completed.stderr
    assert theirs.read_bytes() == VICTIM_BYTES  # deleted as "ours, incomplete" before
    for name, data in PAYLOAD.items():
        assert (out / name).read_bytes() == data
    assert not [p for p in out.rglob(".heldout-*")]


def test_two_processes_extracting_overlapping_archives_into_one_folder(server, tmp_path):
    # Two archives (two locks) with the same members: each process has its own temporaries.
    members = {f"t/{i}.bin": random.Random(i).randbytes(20_000) for i in range(400)}
    targz = make_targz([Entry(name, data=data) for name, data in members.items()])
    md5 = hashlib.md5(targz).hexdigest()
    urls = [server.put(f"/r/{name}.tar.gz", targz) for name in ("one", "two")]
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "tools/download.py"),
                    f"--url={url}",
                    f"--output_dir={out}",
                    f"--md5={md5}",
                    "--retries=0",
                    "--extract",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            for url in urls
        ]
        results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in processes]
        for p in processes:
            p.stdout.close()
            p.stderr.close()
        for code, out_text, err in results:
            assert code == 0, out_text + err
        for name, data in members.items():
            assert (out / name).read_bytes() == data, name
        assert not [p for p in out.rglob(".heldout-*")]


# ------------------------------------------------------------------- sparse members


def _sparse_targz(real_size: int) -> bytes:
    """A tiny .tar.gz whose first member is a PAX 0.1 sparse file of `real_size` bytes (one
    data byte at its end, the rest holes), then an ordinary file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("t/big.bin")
        info.size = 1
        info.pax_headers = {
            "GNU.sparse.map": f"{real_size - 1},1",
            "GNU.sparse.realsize": str(real_size),
            "GNU.sparse.size": str(real_size),
        }
        tar.addfile(info, io.BytesIO(b"x"))
        after = tarfile.TarInfo("t/after.txt")
        after.size = 5
        tar.addfile(after, io.BytesIO(b"hello"))
    return gzip.compress(buffer.getvalue(), mtime=0)


def test_a_sparse_member_is_refused_not_written_out(server, tmp_path):
    targz = _sparse_targz(64 << 20)
    assert len(targz) < 400
    url = server.put("/r/sparse.tar.gz", targz)
    out = tmp_path / "out"
    completed = _extract(url, out, hashlib.md5(targz).hexdigest())
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "REFUSED:     't/big.bin': is a sparse file (declared size 67108864 bytes)" in (
        completed.stdout
    )
    assert _one_line(completed) == "download: error: 1 members refused, 0 not written (see above)"
    assert not (out / "t/big.bin").exists()
    assert (out / "t/after.txt").read_bytes() == b"hello"
    assert not [p for p in out.rglob(".heldout-*")]


def test_a_member_declaring_more_than_the_free_space_is_refused_before_writing(server, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    declared = shutil.disk_usage(out).free + (1 << 30)
    header = tarfile.TarInfo("t/huge.bin")
    header.size = declared
    # The header, then a little of its data: the archive ends (truncated) long before.
    tar_bytes = header.tobuf(tarfile.PAX_FORMAT) + b"\0" * (1 << 20)
    targz = gzip.compress(tar_bytes, mtime=0)
    url = server.put("/r/huge.tar.gz", targz)
    err = _one_line(_extract(url, out, hashlib.md5(targz).hexdigest()))
    assert f"{out}/t: extracting t/huge.bin (its declared size) needs" in err, err
    assert "is free on that file system" in err, err
    assert not (out / "t/huge.bin").exists()
    assert not [p for p in out.rglob(".heldout-*")]


# ----------------------------------------------------------------- a full disk


def _limited(limit_bytes: int):
    """For `preexec_fn`: files the child writes stop at `limit_bytes` (EFBIG, as a full disk
    would stop them), with SIGXFSZ ignored so that the write fails instead of killing it."""

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


@pytest.mark.parametrize("keep", [False, True], ids=["extract", "download"])
def test_a_write_error_names_the_file_and_leaves_no_temporary(server, tmp_path, keep):
    big = random.Random(5).randbytes(3 << 20)
    targz = make_targz([Entry("t/small.txt", data=b"small"), Entry("t/big.bin", data=big)])
    url = server.put("/r/full.tar.gz", targz)
    out = tmp_path / "out"
    args = [f"--url={url}", f"--output_dir={out}", f"--md5={hashlib.md5(targz).hexdigest()}"]
    args += ["--retries=0"] + ([] if keep else ["--extract"])
    completed = subprocess.run(
        [sys.executable, str(REPO / "tools/download.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        preexec_fn=_limited(1 << 20),
    )
    err = _one_line(completed)
    named = out / ("full.tar.gz.part" if keep else "t/big.bin")
    assert err.startswith(f"download: error: {named}: writing"), err
    assert "File too large" in err, err
    assert not [p for p in out.rglob(".heldout-*")]
    if keep:  # what arrived is kept for a resume, as after any interruption
        assert named.stat().st_size == 1 << 20
        assert targz.startswith(named.read_bytes())
    else:
        assert (out / "t/small.txt").read_bytes() == b"small"
        assert sorted(p.name for p in (out / "t").iterdir()) == ["small.txt"]
