"""Safe streaming extraction: crafted tarballs, --only, existing files, resume, corruption."""

import hashlib
import io
import os
import random
import tarfile
from pathlib import Path

import pytest
from download_servers import Entry, Faults, ObjectServer, make_targz

from heldout.download import (
    ArchiveError,
    ChecksumMismatchError,
    DownloadError,
    RetryPolicy,
    download,
)
from heldout.download.extract import UnsafeMemberError, extract_tar_stream, safe_relative_path
from heldout.download.pipeline import ChunkReader, gunzip

FAST = RetryPolicy(retries=3, backoff_s=0.001)


@pytest.fixture
def server():
    with ObjectServer() as s:
        yield s


def _release(runs=6, size=150_000):
    """A small release-like tarball: experiment/ratio/run/{aux_arrays.npz, checkpoints/...}.

    Incompressible, seeded data: the compressed bytes are the same on every run.
    """
    rng = random.Random(runs)
    entries = [Entry("./", kind="dir"), Entry("./exp/", kind="dir")]
    files = {}
    for run in range(runs):
        base = f"exp/0.{run % 3 + 1}/{run}"
        for name, data in (
            (f"{base}/aux_arrays.npz", rng.randbytes(size)),
            (f"{base}/checkpoints/ckpt-80.index", f"index {run}".encode()),
        ):
            entries.append(Entry("./" + name, data=data))
            files[name] = data
    return make_targz(entries), files


def _tree(root):
    """Relative path -> bytes of every file, less the download's lock (`.<name>.lock`)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and not _is_lock(p.name)
    }


def _is_lock(name):
    return name.startswith(".") and name.endswith(".lock")


def _outside(tmp_path, out):
    """Everything under tmp_path that is not under out (what a bad member could have made)."""
    return sorted(
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if out not in p.parents and p != out
    )


def _extract_bytes(targz, out, **kwargs):
    return extract_tar_stream(ChunkReader(gunzip([targz])), out, **kwargs)


def _extract_url(url, targz, out, **kwargs):
    """`download(..., extract=True)` of `targz` served at `url`, with its true MD5."""
    kwargs.setdefault("retry", FAST)
    return download(url, out, md5=hashlib.md5(targz).hexdigest(), extract=True, **kwargs)


@pytest.mark.parametrize(
    "name, expected",
    [("a/b.txt", "a/b.txt"), ("./a//./b", "a/b"), ("./", ""), ("a/", "a")],
)
def test_safe_relative_path(name, expected):
    assert safe_relative_path(name) == expected


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a/..", "C:evil"])
def test_safe_relative_path_refuses(name):
    with pytest.raises(UnsafeMemberError):
        safe_relative_path(name)


def _bad_entries(tmp_path):
    return {
        "traversal": (Entry("../evil.txt", data=b"x"), "'..'"),
        "deep traversal": (Entry("a/../../evil.txt", data=b"x"), "'..'"),
        "absolute": (Entry(str(tmp_path / "abs-evil.txt"), data=b"x"), "absolute path"),
        "symlink": (Entry("link", kind="symlink", link=str(tmp_path)), "symbolic link"),
        "relative symlink": (Entry("a/link", kind="symlink", link="../../"), "symbolic link"),
        "hard link": (Entry("hard", kind="hardlink", link="/etc/passwd"), "hard link"),
        "device": (Entry("dev", kind="chardev"), "character device"),
        "fifo": (Entry("fifo", kind="fifo"), "FIFO"),
    }


@pytest.mark.parametrize("case", list(_bad_entries(Path("/tmp"))))
def test_unsafe_members_are_refused_and_the_rest_extracted(case, tmp_path):
    entry, reason = _bad_entries(tmp_path)[case]
    out = tmp_path / "out"
    targz = make_targz(
        [Entry("good/before.txt", data=b"1"), entry, Entry("good/after.txt", data=b"2")]
    )
    report = _extract_bytes(targz, out)
    assert len(report.refused) == 1
    assert report.refused[0][0] == entry.name and reason in report.refused[0][1]
    assert report.written == ["good/before.txt", "good/after.txt"]
    assert _tree(out) == {"good/before.txt": b"1", "good/after.txt": b"2"}
    assert not [p for p in out.rglob("*") if p.is_symlink() or not (p.is_file() or p.is_dir())]
    assert _outside(tmp_path, out) == []


def test_symlink_then_file_through_it_stays_inside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    targz = make_targz(
        [Entry("d", kind="symlink", link=str(outside)), Entry("d/f.txt", data=b"payload")]
    )
    report = _extract_bytes(targz, out)
    assert [name for name, _ in report.refused] == ["d"]
    assert _tree(out) == {"d/f.txt": b"payload"} and not (out / "d").is_symlink()
    assert list(outside.iterdir()) == []


def test_existing_symlink_in_output_dir_is_not_followed_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "exp").symlink_to(outside)
    report = _extract_bytes(make_targz([Entry("exp/f.txt", data=b"x")]), out)
    assert len(report.refused) == 1 and "outside the output directory" in report.refused[0][1]
    assert list(outside.iterdir()) == []


def test_only_writes_matching_members(tmp_path):
    targz, files = _release()
    report = _extract_bytes(targz, tmp_path, only=["*/aux_arrays.npz"])
    wanted = {k: v for k, v in files.items() if k.endswith("aux_arrays.npz")}
    assert _tree(tmp_path) == wanted
    assert sorted(report.written) == sorted(wanted)
    assert not list(tmp_path.rglob("checkpoints"))
    assert report.not_selected > 0


def test_existing_files_identical_skipped_different_kept_unless_overwrite(tmp_path):
    targz, files = _release(runs=2)
    names = sorted(files)
    (tmp_path / names[0]).parent.mkdir(parents=True)
    (tmp_path / names[0]).write_bytes(files[names[0]])  # identical
    (tmp_path / names[1]).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / names[1]).write_bytes(b"the user's own file")

    report = _extract_bytes(targz, tmp_path)
    assert report.already_present == 1
    assert report.conflicts == [
        (names[1], "exists with different content (overwrite=True replaces it)")
    ]
    assert (tmp_path / names[1]).read_bytes() == b"the user's own file"
    assert len(report.written) == len(files) - 2

    report = _extract_bytes(targz, tmp_path, overwrite=True)
    assert _tree(tmp_path) == files and report.conflicts == []


def test_file_where_a_directory_is_expected_is_a_conflict(tmp_path):
    (tmp_path / "exp").write_bytes(b"not a dir")
    report = _extract_bytes(make_targz([Entry("exp/f.txt", data=b"x")]), tmp_path)
    assert [name for name, _ in report.conflicts] == ["exp/f.txt"]
    assert (tmp_path / "exp").read_bytes() == b"not a dir"


def test_extracted_files_get_mtime_and_safe_mode(tmp_path):
    targz = make_targz([Entry("run.sh", data=b"#!", mode=0o4777), Entry("a.npz", data=b"a")])
    _extract_bytes(targz, tmp_path)
    assert (tmp_path / "run.sh").stat().st_mode & 0o7000 == 0
    assert (tmp_path / "run.sh").stat().st_mode & 0o100
    assert (tmp_path / "a.npz").stat().st_mtime == 1_600_000_000


def test_pax_long_names_work(tmp_path):
    name = "exp/" + "long" * 40 + "/aux_arrays.npz"
    _extract_bytes(make_targz([Entry(name, data=b"x")]), tmp_path)
    assert _tree(tmp_path) == {name: b"x"}


def test_stream_extract_over_http_with_drops(server, tmp_path):
    targz, files = _release(runs=10)
    url = server.put("/r/release.tar.gz", targz)
    server.faults = Faults(drop_after=200_000, drops=4)
    members = []
    result = _extract_url(
        url,
        targz,
        tmp_path,
        progress=lambda p: members.append(p.members_extracted),
    )
    assert _tree(tmp_path) == files
    assert result.retries == 4 and result.archive_path is None
    assert members[-1] == len(files)
    # no archive, no temporary files; the lock file stays (removing it would race)
    assert sorted(os.listdir(tmp_path)) == [".release.tar.gz.lock", "exp"]


def test_extract_keep_archive_resumes_from_part(server, tmp_path):
    targz, files = _release()
    url = server.put("/r/release.tar.gz", targz)
    (tmp_path / "release.tar.gz.part").write_bytes(targz[:300_000])
    result = _extract_url(url, targz, tmp_path, keep_archive=True)
    assert (tmp_path / "release.tar.gz").read_bytes() == targz
    assert result.bytes_reused == 300_000 and result.bytes_downloaded == len(targz) - 300_000
    assert [r.range for r in server.log if r.method == "GET"] == ["bytes=300000-"]
    assert {k: v for k, v in _tree(tmp_path).items() if k.startswith("exp/")} == files


def test_extract_from_an_archive_already_on_disk_needs_no_download(server, tmp_path):
    targz, files = _release(runs=2)
    url = server.put("/r/release.tar.gz", targz)
    (tmp_path / "release.tar.gz").write_bytes(targz)
    result = _extract_url(url, targz, tmp_path)
    assert [r.method for r in server.log] == ["HEAD"]
    assert _tree(tmp_path) == {**files, "release.tar.gz": targz}  # archive left as it was
    assert result.bytes_reused == len(targz) and result.bytes_downloaded == 0


def test_interrupted_extract_reruns_and_skips_finished_members(server, tmp_path):
    targz, files = _release(runs=10)
    url = server.put("/r/release.tar.gz", targz)
    md5 = hashlib.md5(targz).hexdigest()
    server.faults = Faults(drop_after=len(targz) // 2, drops=1)
    with pytest.raises(DownloadError, match="giving up after 0 retries"):
        download(url, tmp_path, md5=md5, extract=True, retry=RetryPolicy(retries=0))
    first = _tree(tmp_path)
    assert first and len(first) < len(files)
    assert all(files[k] == v for k, v in first.items())  # only whole files
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".heldout-")]

    result = download(url, tmp_path, md5=md5, extract=True, retry=FAST)
    assert _tree(tmp_path) == files
    assert result.extract.already_present == len(first)
    assert len(result.extract.written) == len(files) - len(first)


def test_md5_mismatch_while_extracting_is_reported_and_data_kept(server, tmp_path):
    targz, files = _release(runs=2)
    url = server.put("/r/release.tar.gz", targz)
    # Byte 5 is in the gzip header's MTIME: the stream still inflates, but the MD5 differs.
    server.faults = Faults(corrupt_offsets=(5,))
    with pytest.raises(ChecksumMismatchError) as caught:
        _extract_url(url, targz, tmp_path, keep_archive=True)
    message = str(caught.value)
    assert "expected" in message and "may be damaged" in message
    kept = tmp_path / "release.tar.gz.md5-mismatch"
    assert kept.read_bytes()[5] == targz[5] ^ 0xFF
    listing = (tmp_path / "release.tar.gz.md5-mismatch.files.txt").read_text().split()
    assert sorted(listing) == sorted(files)
    assert not (tmp_path / "release.tar.gz").exists()


def test_corrupt_gzip_stops_with_a_clear_message_and_keeps_bytes(server, tmp_path):
    targz, files = _release(runs=10)
    url = server.put("/r/release.tar.gz", targz)
    # Member data is incompressible, so stored: zlib finds the flipped byte only by the
    # CRC-32 at the end of the stream, after the files were written.
    bad = len(targz) // 4
    server.faults = Faults(corrupt_offsets=(bad,))
    with pytest.raises(ArchiveError) as caught:
        _extract_url(url, targz, tmp_path, keep_archive=True)
    message = str(caught.value)
    assert "gzip data is corrupt" in message and "release.tar.gz.corrupt" in message
    assert (tmp_path / "release.tar.gz.corrupt").read_bytes()[bad] == targz[bad] ^ 0xFF
    listing = (tmp_path / "release.tar.gz.corrupt.files.txt").read_text().split()
    assert listing and set(listing) <= set(files) and "may be damaged" in message
    assert not (tmp_path / "release.tar.gz.part").exists()
    assert not (tmp_path / "release.tar.gz").exists()

    # The rerun downloads anew and names the damaged file instead of overwriting it.
    server.faults = Faults()
    result = _extract_url(url, targz, tmp_path)
    assert len(result.extract.conflicts) == 1
    assert result.extract.already_present == len(listing) - 1


def test_non_tar_content_is_an_archive_error(tmp_path):
    buffer = io.BytesIO()
    import gzip

    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        f.write(b"this is not a tar file" * 100)
    with pytest.raises(ArchiveError, match="tar data is unreadable"):
        _extract_bytes(buffer.getvalue(), tmp_path)


def test_gnu_format_long_names(tmp_path):
    name = "exp/" + "g" * 150 + ".npz"
    _extract_bytes(make_targz([Entry(name, data=b"y")], format=tarfile.GNU_FORMAT), tmp_path)
    assert _tree(tmp_path) == {name: b"y"}


def test_interrupted_extract_keeps_whole_files_only(server, tmp_path):
    targz, files = _release(runs=10)
    url = server.put("/r/release.tar.gz", targz)

    def interrupt_midway(progress):
        if progress.members_extracted >= 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _extract_url(url, targz, tmp_path, progress=interrupt_midway)
    first = _tree(tmp_path)
    assert 5 <= len(first) < len(files) and all(files[k] == v for k, v in first.items())
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".heldout-")]


def test_extract_continues_an_existing_partial_download(server, tmp_path):
    targz, files = _release(runs=2)
    url = server.put("/r/release.tar.gz", targz)
    (tmp_path / "release.tar.gz.part").write_bytes(targz[:100_000])
    result = _extract_url(url, targz, tmp_path)
    assert result.archive_path == tmp_path / "release.tar.gz"
    assert result.archive_path.read_bytes() == targz
    assert result.bytes_reused == 100_000


def test_existing_symlink_at_a_destination_is_never_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "f.txt").symlink_to(outside)
    targz = make_targz([Entry("f.txt", data=b"new")])
    report = _extract_bytes(targz, out)
    assert report.conflicts == [
        ("f.txt", "exists and is a symbolic link (overwrite=True replaces the link)")
    ]
    _extract_bytes(targz, out, overwrite=True)
    assert not (out / "f.txt").is_symlink() and (out / "f.txt").read_bytes() == b"new"
    assert outside.read_bytes() == b"precious"


def test_empty_members_and_directories_are_written(tmp_path):
    targz = make_targz(
        [Entry("exp/", kind="dir"), Entry("exp/empty.npz"), Entry("exp/sub/", kind="dir")]
    )
    report = _extract_bytes(targz, tmp_path)
    assert report.written == ["exp/empty.npz"] and report.bytes_written == 0
    assert (tmp_path / "exp/empty.npz").read_bytes() == b"" and (tmp_path / "exp/sub").is_dir()
    # A second run finds the empty file identical, not in conflict.
    report = _extract_bytes(targz, tmp_path)
    assert report.already_present == 1 and report.conflicts == [] and report.written == []


def test_fifo_at_a_destination_is_a_conflict_and_never_opened(tmp_path):
    os.mkfifo(tmp_path / "f.txt")  # opening it for reading would block forever
    report = _extract_bytes(make_targz([Entry("f.txt", data=b"")]), tmp_path)
    assert report.conflicts == [
        ("f.txt", "exists and is not a regular file (overwrite=True replaces it)")
    ]
    _extract_bytes(make_targz([Entry("f.txt", data=b"x")]), tmp_path, overwrite=True)
    assert (tmp_path / "f.txt").read_bytes() == b"x"


def test_longest_possible_file_name_is_extracted(tmp_path):
    name = "exp/" + "n" * 251 + ".npz"  # a 255-byte name: no room to add a suffix
    report = _extract_bytes(make_targz([Entry(name, data=b"z")]), tmp_path)
    assert report.written == [name] and _tree(tmp_path) == {name: b"z"}
    assert os.listdir(tmp_path / "exp") == ["n" * 251 + ".npz"]  # no temporary left


def test_mtime_out_of_range_still_extracts(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("far-future.txt")
        info.size, info.mtime = 1, 1e20  # pax stores it; no time_t holds it
        tar.addfile(info, io.BytesIO(b"t"))
    report = _extract_bytes(buffer.getvalue(), tmp_path)
    assert report.written == ["far-future.txt"] and _tree(tmp_path) == {"far-future.txt": b"t"}


def test_a_path_named_twice_is_compared_with_the_first_copy(tmp_path):
    # The first copy may still be on its way to disk (fsync and rename run in workers):
    # the second must see it, not race it for the temporary name.
    targz = make_targz(
        [Entry("exp/f.npz", data=b"first" * 1000), Entry("exp/f.npz", data=b"second")]
        + [Entry("exp/g.npz", data=b"g"), Entry("exp/g.npz", data=b"g")]
    )
    report = _extract_bytes(targz, tmp_path)
    assert report.written == ["exp/f.npz", "exp/g.npz"] and report.already_present == 1
    assert report.conflicts == [
        ("exp/f.npz", "exists with different content (overwrite=True replaces it)")
    ]
    assert _tree(tmp_path) == {"exp/f.npz": b"first" * 1000, "exp/g.npz": b"g"}
