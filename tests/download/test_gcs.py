"""heldout.download from gs:// through a real GCS emulator and the real google-cloud-storage
client, with connections cut by a TCP proxy in between."""

import hashlib
import os
import random

import pytest
from download_servers import DroppingProxy, Entry, GcsEmulator, make_targz

from heldout.download import DownloadError, RetryPolicy, download

pytest.importorskip("gcp_storage_emulator", reason="needs the dev extra: pip install '.[dev]'")
storage = pytest.importorskip("google.cloud.storage")

FAST = RetryPolicy(retries=3, backoff_s=0.001)
DATA = random.Random(0).randbytes(3_000_000)
MD5 = hashlib.md5(DATA).hexdigest()


@pytest.fixture(scope="module")
def emulator():
    with GcsEmulator() as emu:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", emu.url)
            client = storage.Client.create_anonymous_client()
            bucket = client.create_bucket("gresearch")
            bucket.blob("heldout/data.tar.gz").upload_from_string(DATA)
            tree = {
                f"exp/0.5/{i}/aux_arrays.npz": random.Random(i).randbytes(200_000) for i in range(8)
            }
            targz = make_targz([Entry(name, data=data) for name, data in tree.items()])
            bucket.blob("heldout/release.tar.gz").upload_from_string(targz)
        yield emu, tree, targz


@pytest.fixture
def proxy(emulator, monkeypatch):
    """A proxy in front of the emulator; the client talks to it (STORAGE_EMULATOR_HOST)."""
    emu = emulator[0]
    proxy = DroppingProxy(emu.port, drop_after=10**12, drops=0)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{proxy.port}")
    yield proxy
    proxy.close()


def test_download_uses_the_md5_from_object_metadata(proxy, tmp_path):
    result = download("gs://gresearch/heldout/data.tar.gz", tmp_path, retry=FAST)
    assert result.md5 == MD5
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA
    assert sorted(os.listdir(tmp_path)) == [".data.tar.gz.lock", "data.tar.gz"]


def test_dropped_reads_are_resumed_with_ranges(proxy, tmp_path):
    proxy.drop_after, proxy.drops = 1_000_000, 2
    result = download("gs://gresearch/heldout/data.tar.gz", tmp_path, md5=MD5, retry=FAST)
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA
    assert result.retries == 2
    # Two drops, two range requests, each starting where the bytes received stopped.
    starts = proxy.ranges()
    assert len(starts) == 2 and 0 < starts[0] < starts[1] < len(DATA)


def test_resume_from_partial_file(proxy, tmp_path):
    (tmp_path / "data.tar.gz.part").write_bytes(DATA[:1_234_567])
    result = download("gs://gresearch/heldout/data.tar.gz", tmp_path, md5=MD5, retry=FAST)
    assert result.bytes_reused == 1_234_567
    assert result.bytes_downloaded == len(DATA) - 1_234_567
    assert proxy.ranges() == [1_234_567]
    assert (tmp_path / "data.tar.gz").read_bytes() == DATA


def test_giving_up_keeps_what_arrived(proxy, tmp_path):
    proxy.drop_after, proxy.drops = 1_000_000, 1
    with pytest.raises(DownloadError, match="giving up after 0 retries"):
        download(
            "gs://gresearch/heldout/data.tar.gz", tmp_path, md5=MD5, retry=RetryPolicy(retries=0)
        )
    part = (tmp_path / "data.tar.gz.part").read_bytes()
    assert 0 < len(part) < len(DATA) and DATA.startswith(part)


def test_extract_from_gcs_with_drops(emulator, proxy, tmp_path):
    _, tree, targz = emulator
    proxy.drop_after, proxy.drops = 500_000, 2
    result = download(
        "gs://gresearch/heldout/release.tar.gz",
        tmp_path,
        extract=True,
        only=["*/aux_arrays.npz"],
        retry=FAST,
    )
    assert result.md5 == hashlib.md5(targz).hexdigest() and result.retries == 2
    assert {
        p.relative_to(tmp_path).as_posix(): p.read_bytes()
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != ".release.tar.gz.lock"
    } == tree


def test_missing_object_is_a_clear_error(proxy, tmp_path):
    with pytest.raises(DownloadError, match="no such object"):
        download("gs://gresearch/heldout/missing.tar.gz", tmp_path, retry=FAST)
