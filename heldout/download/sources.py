"""Where archive bytes come from: an HTTP(S) server with range requests, or Google Cloud Storage.

A source answers two questions: what is the object (`info`: size and the MD5 the server
reports), and what are its bytes from a given offset (`open_stream`). It raises
`TransientError` for failures worth retrying and `DownloadError` for the rest; retrying and
resuming are the caller's job (`heldout.download.resume`), so both sources behave alike.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import posixpath
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Protocol

import requests
import urllib3

from heldout.download.errors import DownloadError, TransientError
from heldout.download.pipeline import produce_in_thread

CHUNK_BYTES = 1 << 20
# A read that waits longer than this for the next bytes counts as a dropped connection.
DEFAULT_TIMEOUT_S = 60.0
_RETRIABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class RemoteInfo:
    """What the server says about an object.

    Attributes:
      size: length in bytes, or None when the server does not say.
      md5: lowercase hex MD5 the server reports (GCS metadata, `x-goog-hash` or `Content-MD5`),
        or None when it reports none (e.g. composite GCS objects).
    """

    size: int | None
    md5: str | None


class Source(Protocol):
    url: str
    filename: str

    def info(self) -> RemoteInfo: ...

    def open_stream(self, offset: int) -> tuple[int, Iterator[bytes]]:
        """Starts reading at `offset`; returns (offset the bytes really start at, chunks).

        The start is 0 instead of `offset` when the server ignored the range request. An
        `offset` at the object's end gives no chunks (a complete local prefix, when the size
        was not known beforehand).
        """
        ...


def open_source(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, gcs_client=None) -> Source:
    """The source for an `http://`, `https://` or `gs://bucket/object` URL."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return HttpSource(url, timeout_s=timeout_s)
    if scheme == "gs":
        return GcsSource(url, timeout_s=timeout_s, client=gcs_client)
    raise DownloadError(f"unsupported URL {url!r}: use http://, https:// or gs://bucket/object")


def _filename_of(url: str, path: str) -> str:
    name = posixpath.basename(urllib.parse.unquote(path))
    if name in ("", ".", ".."):
        raise DownloadError(f"cannot tell a file name from URL {url!r}: it must end in one")
    return name


def _b64_md5_to_hex(value: str) -> str | None:
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 16 else None


def md5_from_headers(headers) -> str | None:
    """The MD5 an HTTP response reports: GCS's `x-goog-hash: ...,md5=<b64>` or `Content-MD5`."""
    for part in headers.get("x-goog-hash", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.lower() == "md5":
            return _b64_md5_to_hex(value)
    if "Content-MD5" in headers:
        return _b64_md5_to_hex(headers["Content-MD5"])
    return None


# Errors from the HTTP stack that mean "the connection broke", not "the request was wrong".
_CONNECTION_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def _describe(error: BaseException) -> str:
    """The readable part of an HTTP stack error (urllib3 wraps its message in a tuple)."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    if error.args and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


class HttpSource:
    """An object served over HTTP(S); resumes with `Range: bytes=N-`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session: requests.Session | None = None,
    ):
        self.url = url
        self.filename = _filename_of(url, urllib.parse.urlsplit(url).path)
        self._timeout = (min(timeout_s, 30.0), timeout_s)  # (connect, read)
        self._owns_session = session is None
        self._session = session or requests.Session()
        # Raw bytes only: a server that would gzip the transfer must not change what we hash.
        self._headers = {"Accept-Encoding": "identity"}

    def close(self) -> None:
        """Closes the pooled connections (of a session this source created)."""
        if self._owns_session:
            self._session.close()

    def _check(self, response: requests.Response) -> None:
        code = response.status_code
        if code < 400:
            return
        response.close()
        message = f"{self.url}: HTTP {code} {response.reason}"
        if code in _RETRIABLE_HTTP:
            raise TransientError(message)
        raise DownloadError(message)

    def info(self) -> RemoteInfo:
        try:
            response = self._session.head(
                self.url, headers=self._headers, timeout=self._timeout, allow_redirects=True
            )
        except _CONNECTION_ERRORS as e:
            raise TransientError(f"{self.url}: {_describe(e)}") from e
        if response.status_code in (405, 501):  # HEAD not supported: learn it from the GET
            return RemoteInfo(size=None, md5=None)
        self._check(response)
        return RemoteInfo(
            size=_ascii_int(response.headers.get("Content-Length")),
            md5=md5_from_headers(response.headers),
        )

    def open_stream(self, offset: int) -> tuple[int, Iterator[bytes]]:
        headers = dict(self._headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = self._session.get(
                self.url, headers=headers, timeout=self._timeout, stream=True
            )
        except _CONNECTION_ERRORS as e:
            raise TransientError(f"{self.url}: {_describe(e)}") from e
        if response.status_code == 416:
            response.close()
            return self._past_the_end(offset, response.headers.get("Content-Range", ""))
        self._check(response)
        start = 0
        if response.status_code == 206:
            header = response.headers.get("Content-Range", "")
            start = _content_range_start(header)
            if start != offset:
                response.close()
                sent = f"from {start}" if start is not None else f"Content-Range {header!r}"
                raise DownloadError(
                    f"{self.url}: asked for bytes from {offset}, the server sent {sent} (HTTP 206)"
                )
        return start, self._chunks(response)

    def _past_the_end(self, offset: int, content_range: str) -> tuple[int, Iterator[bytes]]:
        """HTTP 416 for `bytes=<offset>-`: the object has no byte at `offset`.

        Only asked for when the size was not known beforehand (`info` gave none), so it is
        how a complete local prefix shows: the object ends exactly at `offset`. Servers say
        the size in `Content-Range: bytes */<size>` (RFC 9110); a larger prefix than that
        is not a part of this object. Without the header, the MD5 of the prefix decides.
        """
        match = _UNSATISFIED_RANGE.fullmatch(content_range)
        size = int(match.group(1)) if match else None
        if size is not None and size < offset:
            raise DownloadError(
                f"{self.url}: the local partial file ({offset} bytes) is larger than the "
                f"object ({size} bytes, HTTP 416): it is not a part of this object; move it "
                "away to download again"
            )
        if offset == 0:  # a range from 0 is never unsatisfiable for a non-empty object
            raise DownloadError(f"{self.url}: HTTP 416 for the whole object")
        return offset, (chunk for chunk in ())  # a generator: the caller closes it

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        try:
            with response:
                # `raw.stream` with decode_content=False: the bytes exactly as stored.
                yield from response.raw.stream(CHUNK_BYTES, decode_content=False)
        except _CONNECTION_ERRORS as e:
            raise TransientError(f"connection to {self.url} lost: {_describe(e)}") from e


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", re.IGNORECASE | re.ASCII)
_UNSATISFIED_RANGE = re.compile(r"\s*bytes\s+\*/(\d+)\s*", re.IGNORECASE | re.ASCII)


def _ascii_int(value: str | None) -> int | None:
    """A header's non-negative integer, or None. `str.isdigit` alone is not enough: it
    accepts "²", which `int` then refuses with a ValueError."""
    if value is None or not re.fullmatch(r"\s*[0-9]+\s*", value, re.ASCII):
        return None
    return int(value)


def _content_range_start(value: str) -> int | None:
    """The first byte of `Content-Range: bytes 100-199/200` (units are case-insensitive,
    RFC 9110), or None when the header is missing or malformed."""
    match = _CONTENT_RANGE.fullmatch(value)
    return int(match.group(1)) if match else None


class GcsSource:
    """An object in Google Cloud Storage, read with `google-cloud-storage`.

    The client is anonymous unless one is passed (the released buckets are public); like any
    `storage.Client`, it talks to `STORAGE_EMULATOR_HOST` when that is set. Reads are pinned to
    the object generation seen by `info`, so a resumed read never mixes two versions.
    """

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, client=None):
        parts = urllib.parse.urlsplit(url)
        bucket, object_name = parts.netloc, parts.path.lstrip("/")
        if not bucket or not object_name:
            raise DownloadError(f"bad GCS URL {url!r}: expected gs://bucket/object")
        self.url = url
        self.filename = _filename_of(url, object_name)
        self._bucket_name, self._object_name = bucket, object_name
        self._timeout = timeout_s
        self._client = client
        self._generation = None

    @property
    def client(self):
        if self._client is None:
            from google.cloud import storage

            self._client = storage.Client.create_anonymous_client()
        return self._client

    def _call(self, fn: Callable):
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions

        try:
            return fn()
        except api_exceptions.GoogleAPICallError as e:
            if e.code in _RETRIABLE_HTTP:
                raise TransientError(f"{self.url}: {e}") from e
            raise DownloadError(f"{self.url}: {e}") from e
        except (auth_exceptions.TransportError, *_CONNECTION_ERRORS) as e:
            raise TransientError(f"connection to {self.url} lost: {_describe(e)}") from e

    def close(self) -> None:
        """Nothing to release: the client's HTTP session lives as long as the client."""

    def info(self) -> RemoteInfo:
        bucket = self.client.bucket(self._bucket_name)
        blob = self._call(lambda: bucket.get_blob(self._object_name, timeout=self._timeout))
        if blob is None:
            raise DownloadError(f"{self.url}: no such object")
        self._generation = blob.generation
        md5 = _b64_md5_to_hex(blob.md5_hash) if blob.md5_hash else None
        return RemoteInfo(size=blob.size, md5=md5)

    def open_stream(self, offset: int) -> tuple[int, Iterator[bytes]]:
        blob = self.client.bucket(self._bucket_name).blob(
            self._object_name, generation=self._generation
        )

        def download(put: Callable[[bytes], None]) -> None:
            # retry=None: a drop surfaces here and the caller resumes from the last byte it
            # has; checksum=None: a ranged read cannot be checked by the library, we hash all.
            writer = _Writer(put)
            try:
                self._call(
                    lambda: blob.download_to_file(
                        writer,
                        start=offset or None,
                        raw_download=True,
                        checksum=None,
                        retry=None,
                        timeout=self._timeout,
                    )
                )
            except TransientError:
                writer.flush()  # what arrived before the drop is good: keep it
                raise
            writer.flush()

        # download_to_file pushes bytes; a worker thread turns that into chunks we pull.
        return offset, produce_in_thread(download, name="heldout-gcs-read")


class _Writer:
    """The file-like object `download_to_file` writes into: ~1 MiB chunks handed to `put`."""

    def __init__(self, put: Callable[[bytes], None]):
        self._put = put
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        if len(self._pending) >= CHUNK_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._put(bytes(self._pending))
            self._pending.clear()
