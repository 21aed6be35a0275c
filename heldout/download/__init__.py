"""Download the released tarballs over HTTP(S) or from GCS: MD5 while streaming, resume, and
safe one-pass extraction. See `transfer.download` for the behaviour and the files it leaves.

    from heldout.download import download
    from heldout.release.registry import ARTIFACTS

    artifact = ARTIFACTS["cifar10-inception"]
    result = download(artifact.http_url, "data/", md5=artifact.md5, extract=True,
                      only=["*/aux_arrays.npz"], expected_size=artifact.size_bytes)
"""

from heldout.download.checksum import Progress, md5_file, normalize_md5, verify_file
from heldout.download.errors import (
    ArchiveError,
    ChecksumMismatchError,
    DownloadError,
    TransientError,
    UnsafeMemberError,
)
from heldout.download.extract import ExtractReport, extract_tar_stream, safe_relative_path
from heldout.download.resume import RetryPolicy
from heldout.download.sources import GcsSource, HttpSource, RemoteInfo, Source, open_source
from heldout.download.transfer import DownloadResult, download

__all__ = [
    "ArchiveError",
    "ChecksumMismatchError",
    "DownloadError",
    "DownloadResult",
    "ExtractReport",
    "GcsSource",
    "HttpSource",
    "Progress",
    "RemoteInfo",
    "RetryPolicy",
    "Source",
    "TransientError",
    "UnsafeMemberError",
    "download",
    "extract_tar_stream",
    "md5_file",
    "normalize_md5",
    "open_source",
    "safe_relative_path",
    "verify_file",
]
