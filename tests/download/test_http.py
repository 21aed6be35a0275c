"""heldout.download over a real HTTP server on 127.0.0.1: MD5, resume, drops, range refusal."""

import hashlib
import os

import pytest
from download_servers import Faults, ObjectServer

from heldout.download import (
    ChecksumMismatchError,
    DownloadError,
    RetryPolicy,
    download,
    verify_file,
)

FAST = RetryPolicy(retries=3, backoff_s=0.001)
DATA = os.urandom(2_500_000)
MD5 = hashlib.md5(DATA).hexdigest()


@pytest.fixture
def server():
    with ObjectServer() as s:
        yield s


@pytest.fixture
def url(server):
    return server.put("/release/data.tar.gz", DATA)


def _names(directory):
    """The files a download left, less its lock file (`.<name>.lock`, kept on purpose)."""
    return sorted(p.name for p in directory.iterdir() if not _is_lock(p.name))


def _is_lock(name):
    return name.startswith(".") and name.endswith(".lock")


def test_downloads_verifies_and_renames(server, url, tmp_path):
    progress = []
    result = download(url, tmp_path, md5=MD5.upper(), retry=FAST, progress=progress.append)
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA
    assert _names(tmp_path) == ["data.tar.gz"]
    assert result.md5 == MD5 and result.size == len(DATA)
    assert result.bytes_downloaded == len(DATA) and result.bytes_reused == 0
    assert result.archive_path == tmp_path / "data.tar.gz"
    assert progress[-1].bytes_done == progress[-1].bytes_total == len(DATA)
    done = [p.bytes_done for p in progress]
    assert done == sorted(done)


def test_md5_from_server_when_not_given(url, tmp_path):
    assert download(url, tmp_path, retry=FAST).md5 == MD5


def test_no_md5_anywhere_is_refused_before_downloading(server, url, tmp_path):
    server.faults = Faults(report_md5=False)
    with pytest.raises(DownloadError, match="reports no MD5"):
        download(url, tmp_path, retry=FAST)
    assert [r.method for r in server.log] == ["HEAD"]
    assert _names(tmp_path) == []


def test_server_md5_disagreeing_with_expected_is_refused(server, url, tmp_path):
    with pytest.raises(DownloadError, match=f"server reports MD5 {MD5}"):
        download(url, tmp_path, md5="0" * 32, retry=FAST)
    assert [r.method for r in server.log] == ["HEAD"]


def test_http_404_says_so(server, tmp_path):
    url = f"http://127.0.0.1:{server.port}/missing.tar.gz"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(url, tmp_path, md5=MD5, retry=FAST)
    assert _names(tmp_path) == []


def test_resume_rehashes_prefix_and_asks_for_the_rest(server, url, tmp_path):
    (tmp_path / "data.tar.gz.part").write_bytes(DATA[:1_000_000])
    result = download(url, tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA
    assert result.bytes_reused == 1_000_000
    assert result.bytes_downloaded == len(DATA) - 1_000_000
    assert [r.range for r in server.log if r.method == "GET"] == ["bytes=1000000-"]


def test_dropped_connections_are_continued_transparently(server, url, tmp_path):
    server.faults = Faults(drop_after=600_000, drops=3)
    notes = []
    result = download(
        url, tmp_path, md5=MD5, retry=FAST, progress=lambda p: p.note and notes.append(p.note)
    )
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA
    assert result.retries == 3
    assert [r.range for r in server.log if r.method == "GET"] == [
        None,
        "bytes=600000-",
        "bytes=1200000-",
        "bytes=1800000-",
    ]
    assert any("lost" in n and "retry 1/3 at byte 600000" in n for n in notes)


def test_server_errors_are_retried(server, url, tmp_path):
    server.faults = Faults(error_status=503, error_times=2)
    result = download(url, tmp_path, md5=MD5, retry=FAST)
    assert result.retries == 2 and (tmp_path / "data.tar.gz").read_bytes() == DATA


def test_giving_up_keeps_the_partial_data_and_a_rerun_finishes(server, url, tmp_path):
    server.faults = Faults(drop_after=700_000, drops=1)
    no_retry = RetryPolicy(retries=0)
    with pytest.raises(DownloadError, match="giving up after 0 retries at byte 700000"):
        download(url, tmp_path, md5=MD5, retry=no_retry)
    assert (tmp_path / "data.tar.gz.part").read_bytes() == DATA[:700_000]
    assert not (tmp_path / "data.tar.gz").exists()

    result = download(url, tmp_path, md5=MD5, retry=no_retry)
    assert result.bytes_reused == 700_000
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA


def test_server_refusing_ranges_keeps_local_prefix(server, url, tmp_path):
    part = tmp_path / "data.tar.gz.part"
    part.write_bytes(DATA[:1_000_000])
    inode = part.stat().st_ino
    server.faults = Faults(refuse_ranges=True)
    result = download(url, tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA
    assert (tmp_path / "data.tar.gz").stat().st_ino == inode  # appended to, then renamed
    assert result.bytes_reused == 1_000_000
    # The server re-sent everything; the first 1 MB was read and discarded.
    assert [r.range for r in server.log if r.method == "GET"] == ["bytes=1000000-"]


def test_no_progress_without_ranges_gives_up_and_keeps_data(server, url, tmp_path):
    # Every response restarts at byte 0 and breaks at 1 MB: no attempt gets past the first.
    server.faults = Faults(refuse_ranges=True, drop_after=1_000_000, drops=-1)
    with pytest.raises(DownloadError, match="giving up after 3 retries at byte 1000000"):
        download(url, tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz.part").read_bytes() == DATA[:1_000_000]


def test_corrupted_bytes_are_kept_as_md5_mismatch(server, url, tmp_path):
    server.faults = Faults(corrupt_offsets=(123_456,))
    with pytest.raises(ChecksumMismatchError) as caught:
        download(url, tmp_path, md5=MD5, retry=FAST)
    error = caught.value
    kept = tmp_path / "data.tar.gz.md5-mismatch"
    assert error.expected == MD5 and error.actual != MD5 and error.kept_path == kept
    assert f"expected {MD5}, got {error.actual}" in str(error) and str(kept) in str(error)
    assert _names(tmp_path) == ["data.tar.gz.md5-mismatch"]
    assert kept.read_bytes()[123_456] == DATA[123_456] ^ 0xFF

    # A second bad download never replaces the first one's data.
    with pytest.raises(ChecksumMismatchError):
        download(url, tmp_path, md5=MD5, retry=FAST)
    assert _names(tmp_path) == ["data.tar.gz.md5-mismatch", "data.tar.gz.md5-mismatch.1"]


def test_existing_file_is_verified_not_downloaded(server, url, tmp_path):
    (tmp_path / "data.tar.gz").write_bytes(DATA)
    result = download(url, tmp_path, md5=MD5, retry=FAST)
    assert result.bytes_downloaded == 0 and result.md5 == MD5
    assert [r.method for r in server.log] == ["HEAD"]


def test_existing_different_file_is_left_alone_unless_overwrite(server, url, tmp_path):
    (tmp_path / "data.tar.gz").write_bytes(b"mine")
    with pytest.raises(ChecksumMismatchError, match="overwrite=True"):
        download(url, tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz").read_bytes() == b"mine"
    download(url, tmp_path, md5=MD5, retry=FAST, overwrite=True)
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA


def test_partial_larger_than_remote_is_kept(server, url, tmp_path):
    (tmp_path / "data.tar.gz.part").write_bytes(DATA + b"extra")
    with pytest.raises(DownloadError, match="is larger than"):
        download(url, tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz.part").read_bytes() == DATA + b"extra"


def test_verify_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(DATA)
    assert verify_file(path, MD5.upper()) == MD5
    with pytest.raises(ChecksumMismatchError, match=f"expected {'0' * 32}, got {MD5}"):
        verify_file(path, "0" * 32)
    assert path.read_bytes() == DATA


@pytest.mark.parametrize("url", ["ftp://host/x.tar.gz", "http://host/", "gs://bucket"])
def test_bad_urls_are_refused(url, tmp_path):
    with pytest.raises(DownloadError):
        download(url, tmp_path, md5=MD5)


def test_interrupt_keeps_the_partial_file_for_the_next_run(url, tmp_path):
    def interrupt_after_1mb(progress):
        if progress.bytes_done >= 1_000_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(url, tmp_path, md5=MD5, retry=FAST, progress=interrupt_after_1mb)
    part = (tmp_path / "data.tar.gz.part").read_bytes()
    assert len(part) >= 1_000_000 and DATA.startswith(part)

    result = download(url, tmp_path, md5=MD5, retry=FAST)
    assert result.bytes_reused == len(part)
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA


def test_empty_object_downloads_to_an_empty_file(server, tmp_path):
    url = server.put("/empty.tar.gz", b"")
    result = download(url, tmp_path, md5=hashlib.md5(b"").hexdigest(), retry=FAST)
    assert (tmp_path / "empty.tar.gz").read_bytes() == b""
    assert _names(tmp_path) == ["empty.tar.gz"]
    assert result.size == 0 and result.bytes_downloaded == 0


def test_malformed_md5_is_refused_before_any_request(server, url, tmp_path):
    with pytest.raises(ValueError, match="not an MD5"):
        download(url, tmp_path, md5="abc", retry=FAST)
    assert server.log == [] and _names(tmp_path) == []


def test_backoff_stays_finite_for_many_retries():
    policy = RetryPolicy(retries=5000, backoff_s=1.0, max_backoff_s=120.0)
    assert 0.5 <= policy.delay(1) <= 1.0
    assert 60.0 <= policy.delay(4000) <= 120.0  # 2 ** 3999 would overflow a float


@pytest.mark.parametrize(
    "header, start",
    [
        ("bytes 100-199/200", 100),
        ("Bytes 5000000000-5000000009/5000000010", 5_000_000_000),  # past 4 GiB, any case
        ("bytes 7-9/*", 7),
        ("", None),
        ("bytes */200", None),
        ("items 1-2/3", None),
        ("bytes x-9/10", None),
    ],
)
def test_content_range_start(header, start):
    from heldout.download.sources import _content_range_start

    assert _content_range_start(header) == start


def test_complete_part_with_a_server_that_reports_no_size_is_just_verified(server, url, tmp_path):
    # Killed between the last byte and the rename: the range from the end is a 416 that
    # means "nothing more", not "not a prefix of this object".
    server.faults = Faults(head_length="")
    (tmp_path / "data.tar.gz.part").write_bytes(DATA)
    result = download(url, tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA
    assert result.bytes_reused == len(DATA) and result.bytes_downloaded == 0
    assert _names(tmp_path) == ["data.tar.gz"]


def test_part_longer_than_an_object_of_unreported_size_says_so(server, url, tmp_path):
    server.faults = Faults(head_length="")
    (tmp_path / "data.tar.gz.part").write_bytes(DATA + b"extra")
    with pytest.raises(DownloadError, match=f"is larger than the object \\({len(DATA)} bytes"):
        download(url, tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz.part").read_bytes() == DATA + b"extra"


@pytest.mark.parametrize("length", ["²", "-1", "12abc"])
def test_a_malformed_content_length_counts_as_no_size(server, url, tmp_path, length):
    server.faults = Faults(head_length=length)  # "²".isdigit() is True; int("²") fails
    result = download(url, tmp_path, md5=MD5, retry=FAST)
    assert result.size == len(DATA) and (tmp_path / "data.tar.gz").read_bytes() == DATA


def test_download_errors_are_heldout_errors():
    from heldout.download import ArchiveError, TransientError, UnsafeMemberError, normalize_md5
    from heldout.errors import DownloadError as RootDownloadError
    from heldout.errors import HeldoutError, UsageError

    for error in (ArchiveError, ChecksumMismatchError, TransientError, DownloadError):
        assert issubclass(error, RootDownloadError) and issubclass(error, HeldoutError)
    assert issubclass(UnsafeMemberError, HeldoutError)
    with pytest.raises(UsageError, match="not an MD5"):
        normalize_md5("xyz")
    with pytest.raises(UsageError, match="apply to extract=True"):
        download("http://127.0.0.1:9/a.tar.gz", "out", only=["*"])
    with pytest.raises(UsageError, match="retries must be >= 0"):
        RetryPolicy(retries=-1)
