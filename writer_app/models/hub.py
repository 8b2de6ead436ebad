"""A thin layer over huggingface_hub: file metadata, download streams, and readable errors.

huggingface_hub does the HTTP plumbing (its shared client, auth headers, URL building,
status-code parsing); this module decides which endpoint to talk to and turns every
failure into one of the errors in errors.py. The endpoint is passed explicitly to every
call, because huggingface_hub reads HF_ENDPOINT only once, at import time.
"""

from __future__ import annotations

import os

# Set before huggingface_hub is imported: telemetry would otherwise make the first request
# fetch a registry from the public hub, and Xet would swap plain HTTP (which we resume,
# verify and test) for a native transfer client we cannot control.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"

from collections.abc import Iterable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import httpx2  # noqa: E402  (huggingface_hub 2.x's HTTP client)
from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    GatedRepoError,
    HfHubHTTPError,
    LocalTokenNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status  # noqa: E402

from writer_app import __version__  # noqa: E402
from writer_app.models.errors import (  # noqa: E402
    HubError,
    HubNotFound,
    HubServerError,
    HubUnauthorized,
    HubUnreachable,
)

# huggingface_hub may already have been imported (and read the environment) elsewhere.
constants.HF_HUB_DISABLE_TELEMETRY = True
constants.HF_HUB_DISABLE_XET = True

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"
LIBRARY_NAME = "writer-app"

# Errors raised by huggingface_hub or its HTTP client that translate_error understands.
HUB_FAILURES: tuple[type[BaseException], ...] = (
    HfHubHTTPError,
    httpx2.HTTPError,
    OfflineModeIsEnabled,
    LocalTokenNotFoundError,
)


@dataclass(frozen=True)
class HubSettings:
    endpoint: str = DEFAULT_ENDPOINT
    # None: send the token the writer saved with `hf auth login`, if any; False: never send one.
    token: str | bool | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 30.0  # also bounds how long a stalled transfer takes to notice

    @classmethod
    def from_environment(cls, endpoint: str | None = None, **overrides: Any) -> HubSettings:
        """The app's endpoint setting wins, then HF_ENDPOINT, then the public hub."""
        chosen = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        return cls(endpoint=chosen.rstrip("/"), **overrides)

    @property
    def host(self) -> str:
        return urlparse(self.endpoint).netloc or self.endpoint


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says about one file; enough to download and verify it."""

    repo_id: str
    filename: str
    revision: str  # a commit hash when the hub told us one, so resumes read the same bytes
    size: int
    sha256: str | None  # Git LFS files only; model files are always LFS
    etag: str | None
    url: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteFile:
        return cls(
            repo_id=str(data["repo_id"]),
            filename=str(data["filename"]),
            revision=str(data["revision"]),
            size=int(data["size"]),
            sha256=data.get("sha256"),
            etag=data.get("etag"),
            url=str(data["url"]),
        )


class HubClient:
    """One hub endpoint (and token). Safe to share between threads: it holds no connection."""

    def __init__(self, settings: HubSettings | None = None) -> None:
        self.settings = settings or HubSettings.from_environment()
        self._api = HfApi(
            endpoint=self.settings.endpoint,
            token=self.settings.token,
            library_name=LIBRARY_NAME,
            library_version=__version__,
        )

    def download_url(self, repo_id: str, filename: str, revision: str = "main") -> str:
        return hf_hub_url(repo_id, filename, revision=revision, endpoint=self.settings.endpoint)

    def request_headers(self) -> dict[str, str]:
        headers = build_hf_headers(
            token=self.settings.token, library_name=LIBRARY_NAME, library_version=__version__
        )
        # Compressed transfers would make byte offsets (and so Range resumes) meaningless.
        headers["Accept-Encoding"] = "identity"
        return headers

    def file_info(self, repo_id: str, filename: str, revision: str = "main") -> RemoteFile:
        """Size, sha256 and the commit to download from, for one file."""
        where = f"{filename} in {repo_id}"
        try:
            head = get_hf_file_metadata(
                self.download_url(repo_id, filename, revision),
                token=self.settings.token,
                timeout=self.settings.read_timeout,
                library_name=LIBRARY_NAME,
                library_version=__version__,
                endpoint=self.settings.endpoint,
            )
            commit = head.commit_hash or revision
            listed = self._paths_info(repo_id, [filename], commit)
        except HUB_FAILURES as exc:
            raise translate_error(exc, self.settings, where) from exc
        if filename not in listed:
            raise HubNotFound(f"The hub at {self.settings.host} has no file {where}.")
        info = listed[filename]
        etag = head.etag or info.etag
        return RemoteFile(repo_id, filename, commit, info.size, info.sha256, etag, info.url)

    def files_info(
        self, repo_id: str, filenames: Iterable[str], revision: str = "main"
    ) -> dict[str, RemoteFile]:
        """Metadata for many files of one repository in one request; missing files are left out."""
        try:
            return self._paths_info(repo_id, list(filenames), revision)
        except HUB_FAILURES as exc:
            raise translate_error(exc, self.settings, f"the files of {repo_id}") from exc

    def _paths_info(
        self, repo_id: str, filenames: list[str], revision: str
    ) -> dict[str, RemoteFile]:
        found: dict[str, RemoteFile] = {}
        for item in self._api.get_paths_info(repo_id, filenames, revision=revision):
            size = getattr(item, "size", None)
            if size is None:  # a folder
                continue
            lfs = getattr(item, "lfs", None)
            sha256 = lfs.sha256 if lfs is not None else None
            found[item.path] = RemoteFile(
                repo_id=repo_id,
                filename=item.path,
                revision=revision,
                size=int(size),
                sha256=sha256,
                etag=sha256 or item.blob_id,
                url=self.download_url(repo_id, item.path, revision),
            )
        return found

    @contextmanager
    def open_download(self, url: str, *, start: int = 0, what: str = "the file") -> Iterator[Any]:
        """A streaming GET from byte `start` on; any HTTP error status is raised as a HubError.

        The response is huggingface_hub's client response: check status_code (200 or 206)
        and headers, then read it with iter_bytes(). Errors while reading are translated too.
        """
        headers = self.request_headers()
        if start > 0:
            headers["Range"] = f"bytes={start}-"
        timeout = httpx2.Timeout(
            connect=self.settings.connect_timeout,
            read=self.settings.read_timeout,
            write=self.settings.read_timeout,
            pool=self.settings.connect_timeout,
        )
        try:
            with get_session().stream("GET", url, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()  # error bodies are small; hf_raise_for_status wants them
                    hf_raise_for_status(response)
                yield response
        except HUB_FAILURES as exc:
            raise translate_error(exc, self.settings, what) from exc


def translate_error(exc: BaseException, settings: HubSettings, what: str) -> HubError:
    """One readable HubError for anything huggingface_hub or its HTTP client raised."""
    host = settings.host
    if isinstance(exc, OfflineModeIsEnabled):
        return HubUnreachable(
            "Downloads are switched off because HF_HUB_OFFLINE is set; unset it to download models.",
            transient=False,
        )
    if isinstance(exc, LocalTokenNotFoundError):
        return HubUnauthorized(
            f"{host} needs you to log in (hf auth login) before it serves {what}."
        )
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.ProxyError):
        return HubUnreachable(
            f"Could not connect to {host}. Check your internet connection and try again."
        )
    if isinstance(exc, httpx2.TimeoutException):
        return HubUnreachable(f"{host} stopped responding while sending {what}.")
    if isinstance(exc, httpx2.TransportError):
        return HubUnreachable(f"The connection to {host} dropped while downloading {what}.")
    if isinstance(exc, GatedRepoError):
        return HubUnauthorized(
            f"{what} is in a gated repository: accept its terms on {host}, log in, and try again."
        )
    status = _status_of(exc)
    if isinstance(exc, RepositoryNotFoundError):
        private = " (or it is private and needs you to log in)" if status == 401 else ""
        return HubNotFound(f"The repository for {what} does not exist on {host}{private}.")
    if isinstance(exc, RevisionNotFoundError):
        return HubNotFound(f"The requested version of {what} does not exist on {host}.")
    if isinstance(exc, RemoteEntryNotFoundError) or status == 404:
        return HubNotFound(f"{host} has no {what} (not found).")
    if status in (401, 403):
        return HubUnauthorized(
            f"{host} refused access to {what} (HTTP {status}). Check your login token."
        )
    if status == 429:
        return HubServerError(f"{host} asked us to slow down (too many requests).", status=status)
    if status is not None and status >= 500:
        return HubServerError(
            f"{host} had a server error (HTTP {status}) while sending {what}. Try again later.",
            status=status,
        )
    detail = f"HTTP {status}" if status is not None else type(exc).__name__
    return HubError(f"{host} could not send {what} ({detail}).")


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if status is not None else None
