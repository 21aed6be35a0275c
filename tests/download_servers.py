"""Real servers for the download tests and benchmark, all on 127.0.0.1.

- `ObjectServer`: a threaded HTTP/1.1 server of in-memory (or on-disk) objects with range
  requests, and faults on demand: drop the connection after N body bytes, flip bytes,
  refuse ranges (answer 200 with the whole object), answer an error status, report another
  size (or none) to HEAD, pause a response mid-way until the test lets it go on.
- `DroppingProxy`: a TCP proxy that cuts connections after N bytes from the server; put it in
  front of the GCS emulator to drop `google-cloud-storage` downloads for real.
- `GcsEmulator`: PyPI's `gcp-storage-emulator` as a subprocess.
- `make_targz`: tarballs with any member kinds (traversal, absolute, links, devices).

Run `python tests/download_servers.py FILE` to serve one file (the benchmark does).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path


@dataclasses.dataclass
class Faults:
    """What the server does wrong (all off by default).

    Attributes:
      refuse_ranges: ignore Range headers: 200 with the whole object.
      drop_after: cut the connection after sending this many body bytes of a response...
      drops: ...for this many responses (then serve normally); -1 for every response.
      corrupt_offsets: object offsets whose byte is flipped in every response.
      report_md5: send `x-goog-hash: md5=...` as GCS does.
      error_status: answer this status (e.g. 503) to the next `error_times` GETs.
      error_times: see error_status.
      head_length: the Content-Length HEAD reports: None the true size, "" none at all,
        else this text (a size larger than the disk, or junk).
      pause_after: stop sending after this many body bytes of a response, until
        `ObjectServer.resume()` (the download stays in progress, holding its lock)...
      pauses: ...for this many responses.
    """

    refuse_ranges: bool = False
    drop_after: int | None = None
    drops: int = 0
    corrupt_offsets: tuple[int, ...] = ()
    report_md5: bool = True
    error_status: int = 503
    error_times: int = 0
    head_length: str | None = None
    pause_after: int | None = None
    pauses: int = 0


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # keep test output clean
        pass

    def _lookup(self):
        self.server.log.append(Request(self.command, self.path, self.headers.get("Range")))
        obj = self.server.objects.get(self.path)
        if obj is None:
            self.send_error(404)
        return obj

    def _headers(self, status, length, total, md5, start=None, head=False):
        self.send_response(status)
        self.send_header("Content-Type", "application/gzip")
        reported = self.server.faults.head_length if head else None
        if reported != "":
            self.send_header("Content-Length", str(length) if reported is None else reported)
        self.send_header("Accept-Ranges", "none" if self.server.faults.refuse_ranges else "bytes")
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{total}")
        if self.server.faults.report_md5:
            self.send_header("x-goog-hash", "md5=" + base64.b64encode(md5).decode())
        self.end_headers()

    def do_HEAD(self):
        obj = self._lookup()
        if obj is not None:
            self._headers(200, obj.size, obj.size, obj.md5, head=True)

    def do_GET(self):
        obj = self._lookup()
        if obj is None:
            return
        faults = self.server.faults
        with self.server.lock:
            fail = faults.error_times > 0
            if fail:
                faults.error_times -= 1
        if fail:
            self.send_error(faults.error_status)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not faults.refuse_ranges:
            start = int(match.group(1))
            if start >= obj.size:  # as real servers do: the size in `bytes */<size>`
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{obj.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        length = obj.size - start
        self._headers(206 if start else 200, length, obj.size, obj.md5, start if start else None)
        with self.server.lock:
            drop = faults.drop_after is not None and faults.drops != 0
            if drop and faults.drops > 0:
                faults.drops -= 1
        limit = min(length, faults.drop_after) if drop else length
        with self.server.lock:
            pause = faults.pause_after is not None and faults.pauses > 0
            if pause:
                faults.pauses -= 1
        if pause:
            self._send(obj, start, start + min(limit, faults.pause_after))
            self.wfile.flush()
            self.server.paused.set()
            self.server.resumed.wait(60)  # never forever: a failing test must end
            start, limit = start + faults.pause_after, max(0, limit - faults.pause_after)
        if not drop and not faults.corrupt_offsets and isinstance(obj.data, Path):
            with open(obj.data, "rb") as f:  # the fast path, for the benchmark
                self.connection.sendfile(f, start, limit)
            return
        self._send(obj, start, start + limit)
        if drop:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _send(self, obj, start: int, end: int) -> None:
        sent = 0
        for chunk in obj.chunks(start, end):
            for offset in self.server.faults.corrupt_offsets:
                if start + sent <= offset < start + sent + len(chunk):
                    chunk = bytearray(chunk)
                    chunk[offset - start - sent] ^= 0xFF
            self.wfile.write(chunk)
            sent += len(chunk)


@dataclasses.dataclass
class _Object:
    data: bytes | Path
    size: int
    md5: bytes

    def chunks(self, start: int, end: int, chunk_bytes: int = 64 << 10):
        if isinstance(self.data, bytes):
            for i in range(start, end, chunk_bytes):
                yield self.data[i : min(i + chunk_bytes, end)]
            return
        with open(self.data, "rb") as f:
            f.seek(start)
            while start < end:
                chunk = f.read(min(chunk_bytes, end - start))
                if not chunk:
                    return
                start += len(chunk)
                yield chunk


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[str, _Object] = {}
        self.faults = Faults()
        self.log: list[Request] = []
        self.lock = threading.Lock()
        self.paused = threading.Event()  # set when a response has paused (Faults.pause_after)
        self.resumed = threading.Event()


class ObjectServer:
    """A threaded HTTP server on 127.0.0.1 (a context manager). `put` objects, set `faults`."""

    def __init__(self):
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> ObjectServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.resumed.set()  # no handler stays paused past the test
        self._server.shutdown()
        self._server.server_close()

    def wait_paused(self, timeout_s: float = 30.0) -> None:
        """Waits until a response has paused (see `Faults.pause_after`)."""
        if not self._server.paused.wait(timeout_s):
            raise TimeoutError("no response paused")

    def resume(self) -> None:
        """Lets paused responses (and any later ones) send the rest."""
        self._server.resumed.set()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def faults(self) -> Faults:
        return self._server.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._server.faults = value

    @property
    def log(self) -> list[Request]:
        return self._server.log

    def put(self, path: str, data: bytes | Path) -> str:
        """Serves `data` (bytes, or a file read on each request) at `path`; returns the URL."""
        if isinstance(data, Path):
            md5 = hashlib.md5()
            with open(data, "rb") as f:
                while chunk := f.read(8 << 20):
                    md5.update(chunk)
            obj = _Object(data, data.stat().st_size, md5.digest())
        else:
            obj = _Object(bytes(data), len(data), hashlib.md5(data).digest())
        self._server.objects[path] = obj
        return f"http://127.0.0.1:{self.port}{path}"


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 to `target_port` that cuts connections.

    The first `drops` connections that carry more than `drop_after` bytes from the server
    are closed right there (both sides). Bytes sent by clients are kept in `client_bytes`
    (to check which Range headers were asked for).
    """

    def __init__(self, target_port: int, drop_after: int, drops: int):
        self.target_port = target_port
        self.drop_after = drop_after
        self.drops = drops
        self.client_bytes = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def ranges(self) -> list[int]:
        """The start offsets of the Range headers clients sent, in order."""
        return [int(m) for m in re.findall(rb"(?i)range: bytes=(\d+)-", bytes(self.client_bytes))]

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._upload, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._download, args=(upstream, client), daemon=True).start()

    def _upload(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    self.client_bytes += data
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _download(self, upstream: socket.socket, client: socket.socket) -> None:
        sent, limit = 0, self.drop_after
        try:
            while data := upstream.recv(65536):
                if sent + len(data) > limit:
                    with self._lock:
                        drop = self.drops > 0
                        if drop:
                            self.drops -= 1
                    if drop:
                        client.sendall(data[: limit - sent])
                        return
                    limit = sys.maxsize  # this connection is spared
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GcsEmulator:
    """`gcp-storage-emulator start --in-memory` on a free port of 127.0.0.1 (a context manager)."""

    def __init__(self):
        exe = shutil.which("gcp-storage-emulator", path=str(Path(sys.executable).parent))
        exe = exe or shutil.which("gcp-storage-emulator")
        if exe is None:
            raise FileNotFoundError("gcp-storage-emulator is not installed (pip install '.[dev]')")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [exe, "start", "--host=127.0.0.1", f"--port={self.port}", "--in-memory"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> GcsEmulator:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("the GCS emulator did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tar member to write: `kind` is file, dir, symlink, hardlink, chardev or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


_KIND_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def make_targz(entries: list[Entry], *, format=tarfile.PAX_FORMAT) -> bytes:
    """A .tar.gz holding exactly `entries`, names written as given (no sanitizing)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=format) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _KIND_TYPES[entry.kind]
            info.mode = entry.mode
            info.mtime = 1_600_000_000
            info.linkname = entry.link
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _serve_file(path: str) -> None:
    """Serves one file at /<its name> until killed; prints the URL as the first line."""
    with ObjectServer() as server:
        url = server.put("/" + os.path.basename(path), Path(path))
        print(url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    _serve_file(sys.argv[1])
