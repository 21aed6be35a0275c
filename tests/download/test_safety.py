"""Downloads on shared machines and through crashes, against the real HTTP test server:
one writer per archive (a lock naming the holder), disk space checked before anything is
written, fsync before every rename (seen with strace), and the umask's modes everywhere.
"""

import hashlib
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from download_servers import Entry, Faults, ObjectServer, make_targz

from heldout.download import ChecksumMismatchError, RetryPolicy, download
from heldout.errors import InsufficientSpaceError

TOOL = Path(__file__).resolve().parents[2] / "tools" / "download.py"
FAST = RetryPolicy(retries=2, backoff_s=0.001)
FILES = {
    f"rel/0.{i % 3 + 1}/{i}/aux_arrays.npz": random.Random(i).randbytes(400_000) for i in range(6)
}
FILES["rel/0.1/0/checkpoints/ckpt-80.index"] = b"index"
TARGZ = make_targz(
    [Entry("rel/", kind="dir", mode=0o700)]
    + [Entry(name, data=data, mode=0o600) for name, data in FILES.items()]
    + [Entry("rel/run.sh", data=b"#!/bin/sh\n", mode=0o700)]
)
MD5 = hashlib.md5(TARGZ).hexdigest()


@pytest.fixture
def server():
    with ObjectServer() as s:
        yield s


def _cli(*args, umask=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, str(TOOL), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
        **kwargs,
    )


def _run_cli(*args, umask=None):
    process = _cli(*args, umask=umask)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


# --------------------------------------------------------------------------- one writer


@pytest.mark.parametrize("extract", [False, True], ids=["download", "extract"])
def test_a_second_process_on_one_archive_is_refused_naming_the_first(server, tmp_path, extract):
    url = server.put("/r/release.tar.gz", TARGZ)
    server.faults = Faults(pause_after=len(TARGZ) // 2, pauses=1)  # the first one waits
    out = tmp_path / "out"
    common = [f"--url={url}", f"--output_dir={out}", f"--md5={MD5}", "--retries=0"]
    first_args = common + (["--extract", "--keep_archive"] if extract else [])
    first = _cli(*first_args)
    try:
        server.wait_paused()
        # The second would append to the same .part (or write the same members): refused.
        second = common + (["--extract", "--only=*/aux_arrays.npz"] if extract else [])
        code, _, err = _run_cli(*second)
        assert code == 1, err
        assert err.strip() == err.strip().splitlines()[-1]  # one line, no traceback
        assert err.startswith(f"download: error: {out}/.release.tar.gz.lock: process {first.pid}")
        assert "holds this lock (downloading release.tar.gz into" in err
    finally:
        server.resume()
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert (out / "release.tar.gz").read_bytes() == TARGZ  # not interleaved with another
    if extract:
        assert all((out / name).read_bytes() == data for name, data in FILES.items())


def test_interrupted_holder_releases_the_lock_and_a_rerun_resumes(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    server.faults = Faults(pause_after=len(TARGZ) // 2, pauses=1)
    args = [f"--url={url}", f"--output_dir={tmp_path}", f"--md5={MD5}"]
    first = _cli(*args)
    server.wait_paused()
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    server.resume()
    assert first.returncode == 130, err
    assert "interrupted: what arrived is kept" in err and "Traceback" not in err
    code, stdout, err = _run_cli(*args)  # the lock died with its process
    assert code == 0, err
    assert (tmp_path / "release.tar.gz").read_bytes() == TARGZ and "(verified)" in stdout


# -------------------------------------------------------------------------- disk space


def _more_than_free(path: Path) -> int:
    return shutil.disk_usage(path).free + 10**12  # 1 TB more than there is


def test_server_size_beyond_the_free_space_fails_fast_writing_nothing(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    huge = _more_than_free(tmp_path)
    server.faults = Faults(head_length=str(huge))  # only claimed, never sent
    out = tmp_path / "out"
    code, _, err = _run_cli(f"--url={url}", f"--output_dir={out}", f"--md5={MD5}")
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"download: error: {out}: downloading")
    assert "more of the archive" in err and "missing); free some space" in err
    assert [r.method for r in server.log] == ["HEAD"]  # not a byte asked for
    assert not out.exists()  # no folder, no .part, no lock file


def test_registry_size_is_checked_when_the_server_reports_none(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    server.faults = Faults(head_length="")
    huge = _more_than_free(tmp_path)
    out = tmp_path / "out"
    for keep_archive in (False, True):
        with pytest.raises(InsufficientSpaceError, match="of extracted files") as caught:
            download(url, out, md5=MD5, extract=True, keep_archive=keep_archive, expected_size=huge)
        assert ("more of the archive" in str(caught.value)) == keep_archive
    with pytest.raises(InsufficientSpaceError, match="more of the archive"):
        download(url, out, md5=MD5, expected_size=huge)
    assert not out.exists() and all(r.method == "HEAD" for r in server.log)

    # With --only the selection's size is unknown (aux arrays are ~1% of a release): the
    # whole archive's size is not held against it.
    result = download(
        url, out, md5=MD5, extract=True, only=["*/aux_arrays.npz"], expected_size=huge
    )
    assert len(result.extract.written) == 6


# -------------------------------------------------------------------------- durability


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-o", os.devnull, "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="needs strace (and ptrace allowed) to see fsyncs")
def test_every_rename_comes_after_an_fsync_of_the_file_and_before_one_of_its_folder(
    server, tmp_path
):
    url = server.put("/r/release.tar.gz", TARGZ)
    out = tmp_path / "out"
    log = tmp_path / "strace.log"
    script = (
        "import sys; from heldout.download import download; "
        "download(sys.argv[1], sys.argv[2], md5=sys.argv[3], extract=True, keep_archive=True)"
    )
    subprocess.run(
        [
            "strace",
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
            "-o",
            str(log),
            sys.executable,
            "-c",
            script,
            url,
            str(out),
            MD5,
        ],
        check=True,
        timeout=120,
    )
    # Calls in the order they started (threads interleave: strace splits a call into
    # "<unfinished ...>" and "<... resumed>"; a thread starts a call after its last ended).
    calls = [
        line.split(None, 1)[1]
        for line in log.read_text().splitlines()
        if "resumed>" not in line and "(" in line
    ]
    synced = [
        c[c.index("<") + 1 : c.index(">")] for c in calls if c.startswith(("fsync", "fdatasync"))
    ]
    renames = [(i, c) for i, c in enumerate(calls) if c.startswith("rename")]

    def renamed(source, target):
        for i, call in renames:
            if f'"{source}"' in call and f'"{target}"' in call:
                return i
        raise AssertionError(f"no rename of {source} to {target}:\n" + "\n".join(calls))

    def fsynced(path, before=None, after=None):
        indices = [
            i
            for i, c in enumerate(calls)
            if c.startswith(("fsync", "fdatasync")) and f"<{path}>" in c
        ]
        return any((before is None or i < before) and (after is None or i > after) for i in indices)

    archive = out / "release.tar.gz"
    at = renamed(f"{archive}.part", archive)
    assert fsynced(f"{archive}.part", before=at), synced
    assert fsynced(out, after=at), synced
    for name in FILES:
        target = out / name
        # Temporaries are numbered files in the extraction's private folder under `out`.
        (source,) = {c.split('"')[1] for _, c in renames if c.split('"')[3] == str(target)}
        assert Path(source).parent.name.startswith(".heldout-extract-"), source
        assert Path(source).parent.parent == out, source
        at = renamed(source, target)
        assert fsynced(source, before=at), name
        assert fsynced(target.parent, after=at), name
    assert [p.name for p in out.iterdir() if p.name.startswith(".heldout-")] == []


# ------------------------------------------------------------------------------ modes


def _modes(root: Path) -> dict[str, int]:
    return {
        (p.relative_to(root).as_posix() + ("/" if p.is_dir() else "")): stat.S_IMODE(
            p.lstat().st_mode
        )
        for p in root.rglob("*")
    }


def test_under_umask_022_everything_written_is_readable_by_group_and_others(server, tmp_path):
    url = server.put("/r/release.tar.gz", TARGZ)
    good, bad = tmp_path / "good", tmp_path / "bad"
    args = [f"--url={url}", f"--md5={MD5}", "--extract", "--keep_archive", "--retries=0"]
    code, _, err = _run_cli(f"--output_dir={good}", *args, umask=0o022)
    assert code == 0, err
    server.faults = Faults(report_md5=False, corrupt_offsets=(5,))  # kept aside, listed
    code, _, err = _run_cli(f"--output_dir={bad}", *args, umask=0o022)
    assert code == 1 and "MD5 mismatch" in err
    modes = {f"good/{p}": m for p, m in _modes(good).items()}
    modes.update({f"bad/{p}": m for p, m in _modes(bad).items()})
    for written in (
        "good/release.tar.gz",
        "good/rel/0.1/0/aux_arrays.npz",
        "bad/release.tar.gz.md5-mismatch",
        "bad/release.tar.gz.md5-mismatch.files.txt",
    ):
        assert written in modes
    unreadable = {p: oct(m) for p, m in modes.items() if m & 0o044 != 0o044}
    assert unreadable == {}
    closed = {p: oct(m) for p, m in modes.items() if p.endswith("/") and m & 0o011 != 0o011}
    assert closed == {}  # folders can be entered, too


def test_files_get_the_mode_a_plain_open_would_under_the_umask(server, tmp_path):
    # umask 002 (group-writable, as shared project folders use): 0o664 files, 0o775
    # folders, 0o775 for members that were executable. Never the archive's own 0o600/0o700.
    url = server.put("/r/release.tar.gz", TARGZ)
    server.faults = Faults(report_md5=False, corrupt_offsets=(5,))  # a mismatch: a listing
    out = tmp_path / "out"
    old = os.umask(0o002)
    try:
        with pytest.raises(
            ChecksumMismatchError, match=rf"MD5 mismatch for {re.escape(url)}: expected {MD5}, got "
        ) as caught:
            download(url, out, md5=MD5, extract=True, keep_archive=True, retry=FAST)
    finally:
        os.umask(old)
    assert caught.value.expected == MD5 and caught.value.actual != MD5
    assert caught.value.kept_path == out / "release.tar.gz.md5-mismatch"
    modes = _modes(out)
    expected = {name: 0o664 for name in FILES}
    expected.update({"rel/run.sh": 0o775, "release.tar.gz.md5-mismatch": 0o664})
    expected["release.tar.gz.md5-mismatch.files.txt"] = 0o664
    expected[".release.tar.gz.lock"] = 0o664
    folders = {p: 0o775 for p in modes if p.endswith("/")}
    assert {p: oct(m) for p, m in modes.items()} == {
        p: oct(m) for p, m in {**expected, **folders}.items()
    }
