"""A small Hugging Face hub on 127.0.0.1 for tests, with fault injection and a request log.

It implements exactly what huggingface_hub 2.4 calls for writer_app.models:
    HEAD/GET /{owner}/{name}/resolve/{revision}/{filename}   (X-Repo-Commit, ETag,
        X-Linked-Size / X-Linked-Etag for LFS files, Range support)
    POST /api/models/{owner}/{name}/paths-info/{revision}    (size, LFS sha256)
    GET  /_lfs/{sha256}   the "CDN" that resolve redirects to when redirect_downloads=True
Anything else is answered 404 and logged, so a test can assert nothing unexpected was asked.

Faults (per file, see Faults) apply to the GETs that carry file content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Faults:
    drop_after_bytes: int | None = None  # close the connection after sending this many body bytes
    drop_times: int | None = None  # how many responses to drop (None: every one)
    corrupt: bool = False  # flip one byte in the middle: right length, wrong content
    status: int | None = None  # answer content GETs with this HTTP status...
    status_times: int | None = None  # ...this many times, then serve normally (None: forever)
    bytes_per_second: int | None = None  # throttle the body
    ignore_range: bool = False  # answer Range requests with 200 and the whole file


@dataclass
class HostedFile:
    repo_id: str
    filename: str
    data: bytes
    lfs: bool = True
    faults: Faults = field(default_factory=Faults)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid

    def served_bytes(self) -> bytes:
        if not self.faults.corrupt or not self.data:
            return self.data
        middle = len(self.data) // 2
        return self.data[:middle] + bytes([self.data[middle] ^ 0xFF]) + self.data[middle + 1 :]


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    status: int


class FakeHub:
    """Use as a context manager; `endpoint` is what HubSettings(endpoint=...) takes."""

    def __init__(self, *, redirect_downloads: bool = False, token: str | None = None) -> None:
        self.redirect_downloads = redirect_downloads
        self.token = token  # when set, hub requests must carry "Bearer <token>"
        self._files: dict[tuple[str, str], HostedFile] = {}
        self._commits: dict[str, str] = {}
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.handler_errors: list[str] = []  # tracebacks of the fake hub's own bugs
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeHub:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:  # the test's own failure, if any, says more
            assert not self.handler_errors, "the fake hub itself failed:\n" + "\n".join(
                self.handler_errors
            )

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start the fake hub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- content ---------------------------------------------------------------------------
    def add_file(self, repo_id: str, filename: str, data: bytes, *, lfs: bool = True) -> HostedFile:
        """Host (or replace) a file; every change makes a new commit, like a push would."""
        with self._lock:
            hosted = HostedFile(repo_id, filename, bytes(data), lfs)
            self._files[(repo_id, filename)] = hosted
            self._commits[repo_id] = secrets.token_hex(20)
            return hosted

    def commit(self, repo_id: str) -> str:
        return self._commits[repo_id]

    def set_faults(self, repo_id: str, filename: str, **faults: Any) -> None:
        with self._lock:
            hosted = self._files[(repo_id, filename)]
            hosted.faults = replace(Faults(), **faults)

    def clear_faults(self, repo_id: str, filename: str) -> None:
        self.set_faults(repo_id, filename)

    # -- request log -----------------------------------------------------------------------
    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def content_gets(self) -> list[LoggedRequest]:
        """The GETs that returned (or tried to return) file bytes."""
        return [r for r in self.requests if r.method == "GET" and _is_content_path(r.path)]

    def _record(self, request: LoggedRequest) -> None:
        with self._lock:
            self._log.append(request)

    def _lookup(self, repo_id: str, filename: str) -> HostedFile | None:
        with self._lock:
            return self._files.get((repo_id, filename))

    def _repo_exists(self, repo_id: str) -> bool:
        with self._lock:
            return repo_id in self._commits

    def _take_status_fault(self, hosted: HostedFile) -> int | None:
        with self._lock:
            faults = hosted.faults
            if faults.status is None or faults.status_times == 0:
                return None
            if faults.status_times is not None:
                faults.status_times -= 1
            return faults.status

    def _take_drop_fault(self, hosted: HostedFile) -> int | None:
        with self._lock:
            faults = hosted.faults
            if faults.drop_after_bytes is None or faults.drop_times == 0:
                return None
            if faults.drop_times is not None:
                faults.drop_times -= 1
            return faults.drop_after_bytes

    def _file_by_sha(self, sha256: str) -> HostedFile | None:
        with self._lock:
            return next((f for f in self._files.values() if f.sha256 == sha256), None)


def _is_content_path(path: str) -> bool:
    return "/resolve/" in path or path.startswith("/_lfs/")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-transfer (cancelled, killed) are part of the tests; any
        # other exception is a bug in the fake hub, kept for the fixture to report.
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            self.hub.handler_errors.append("".join(traceback.format_exception(error)))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    # -- dispatch --------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._logged = False
        path = urlsplit(self.path).path
        try:
            if path.startswith("/api/models/") and "/paths-info/" in path and method == "POST":
                self._paths_info(path)
            elif "/resolve/" in path and method in ("HEAD", "GET"):
                self._resolve(method, path)
            elif path.startswith("/_lfs/") and method == "GET":
                hosted = self.hub._file_by_sha(path.removeprefix("/_lfs/"))
                if hosted is None:
                    self._error(404, "EntryNotFound", "Entry not found")
                else:
                    self._send_content(hosted, head=False)
            else:
                self._drain_body()
                self._error(404, None, "Not found")
        finally:
            if not self._logged:  # the handler failed before answering
                self._log_request(0)

    def _log_request(self, status: int) -> None:
        self._logged = True
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path).path
        self.hub._record(LoggedRequest(self.command, path, headers, status))

    # -- endpoints -------------------------------------------------------------------------
    def _paths_info(self, path: str) -> None:
        body = self._drain_body()
        if not self._authorized():
            return
        repo_part, revision = path.removeprefix("/api/models/").split("/paths-info/", 1)
        repo_id, revision = unquote(repo_part), unquote(revision)
        if not self._check_repo(repo_id, revision):
            return
        wanted = _parse_paths(body, self.headers.get("Content-Type", ""))
        listed = []
        for name in wanted:
            hosted = self.hub._lookup(repo_id, name)
            if hosted is None:
                continue
            item: dict[str, Any] = {
                "type": "file",
                "oid": hosted.git_oid,
                "size": len(hosted.data),
                "path": hosted.filename,
            }
            if hosted.lfs:
                item["lfs"] = {"oid": hosted.sha256, "size": len(hosted.data), "pointerSize": 134}
            listed.append(item)
        self._send_json(200, listed)

    def _resolve(self, method: str, path: str) -> None:
        if not self._authorized():
            return
        owner, name, _, revision, *rest = path.lstrip("/").split("/")
        repo_id, revision, filename = f"{owner}/{name}", unquote(revision), unquote("/".join(rest))
        if not self._check_repo(repo_id, revision):
            return
        hosted = self.hub._lookup(repo_id, filename)
        if hosted is None:
            self._error(404, "EntryNotFound", "Entry not found")
            return
        commit = self.hub.commit(repo_id)
        if method == "GET" and self.hub.redirect_downloads:
            self._begin(302)
            self.send_header("Location", f"/_lfs/{hosted.sha256}")
            self._repo_headers(hosted, commit)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_content(hosted, head=(method == "HEAD"), commit=commit)

    def _send_content(self, hosted: HostedFile, *, head: bool, commit: str | None = None) -> None:
        if not head:
            status = self.hub._take_status_fault(hosted)
            if status is not None:
                self._error(status, None, "Injected failure")
                return
        data = hosted.served_bytes()
        size = len(data)
        start, end = 0, size - 1
        range_header = self.headers.get("Range")
        partial = bool(range_header) and not hosted.faults.ignore_range and not head
        if partial:
            start, end = _parse_range(range_header or "", size)
            if start >= size:
                self._begin(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self._begin(206 if partial else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{hosted.etag}"')
        self.send_header("Content-Length", str(end - start + 1))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if commit is not None:
            self._repo_headers(hosted, commit)
        self.end_headers()
        if not head:
            self._stream(hosted, data[start : end + 1])

    def _stream(self, hosted: HostedFile, body: bytes) -> None:
        drop_after = self.hub._take_drop_fault(hosted)
        limit = len(body) if drop_after is None else min(drop_after, len(body))
        rate = hosted.faults.bytes_per_second
        step = max(1, rate // 20) if rate else 64 * 1024
        sent = 0
        try:
            while sent < limit and not self.hub.stopping.is_set():
                piece = body[sent : min(sent + step, limit)]
                self.wfile.write(piece)
                self.wfile.flush()
                sent += len(piece)
                if rate:
                    time.sleep(len(piece) / rate)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if sent < len(body):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    # -- helpers ---------------------------------------------------------------------------
    def _begin(self, status: int) -> None:
        # Logged before answering, so a client that has its answer always finds it logged.
        self._log_request(status)
        self.send_response(status)

    def _repo_headers(self, hosted: HostedFile, commit: str) -> None:
        self.send_header("X-Repo-Commit", commit)
        if hosted.lfs:
            self.send_header("X-Linked-Size", str(len(hosted.data)))
            self.send_header("X-Linked-Etag", f'"{hosted.sha256}"')

    def _authorized(self) -> bool:
        if self.hub.token is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.hub.token}":
            return True
        self._error(401, None, "Invalid credentials in Authorization header")
        return False

    def _check_repo(self, repo_id: str, revision: str) -> bool:
        if not self.hub._repo_exists(repo_id):
            self._error(404, "RepoNotFound", "Repository not found")
            return False
        if revision not in ("main", self.hub.commit(repo_id)):
            self._error(404, "RevisionNotFound", "Invalid rev id")
            return False
        return True

    def _error(self, status: int, code: str | None, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._begin(status)
        if code is not None:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self._begin(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drain_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


def _parse_paths(body: bytes, content_type: str) -> list[str]:
    if "json" in content_type:
        paths = json.loads(body or b"{}").get("paths", [])
        return [paths] if isinstance(paths, str) else list(paths)
    return parse_qs(body.decode()).get("paths", [])


def _parse_range(header: str, size: int) -> tuple[int, int]:
    first, _, last = header.removeprefix("bytes=").partition("-")
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return start, end


def free_port() -> int:
    """A port nothing listens on (bound, then released), for 'server down' tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    with FakeHub() as hub:
        yield hub


@pytest.fixture
def localhost_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail the test if anything tries to reach an address other than 127.0.0.1."""
    violations: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in LOCAL_HOSTS and not str(host).startswith("/"):
            violations.append(str(address))
            raise ConnectionRefusedError(
                f"test tried to reach {address}; only 127.0.0.1 is allowed"
            )

    def connect(sock: socket.socket, address: Any) -> Any:
        _check(address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        _check(address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            _check((host.decode() if isinstance(host, bytes) else host, 0))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield violations
    assert not violations, f"tests must only talk to 127.0.0.1, but tried {violations}"


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes (no GGML structure) for transfers that skip model validation."""
    return hashlib.shake_256(seed.to_bytes(8, "little")).digest(size)


def tiny_gpt2_file(path: Path, seed: int = 0) -> Path:
    """A real (tiny, ~14 kB) GGML GPT-2 file that passes the engine's validator."""
    from tests.support.models import random_gpt2  # lazily: it pulls in numpy and the writer

    vocab = [bytes([i]) for i in range(256)] + [b"<|endoftext|>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    return random_gpt2(path, n_layer=1, n_embd=8, n_head=2, n_ctx=16, vocab=vocab, seed=seed)
