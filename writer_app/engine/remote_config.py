"""Where a completions server is and how to talk to it: address, key, model, patience.

Qt-free and network-free, so the dialog, the settings and the command line share the
same checks (an address the writer types is normalised once, here).
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass, field

import httpx2

from writer_app.engine.remote_errors import RemoteConfigError

API_KEY_ENV = "WRITER_APP_API_KEY"
_ENDPOINT_SUFFIXES = ("/completions", "/models", "/chat/completions")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded backoff for 429/503: at most `retries` more tries, at most `max_delay`
    seconds apart (a Retry-After header is honoured up to that), so a busy server costs
    a suggestion at most a few seconds before the writer hears about it."""

    retries: int = 3
    first_delay: float = 0.5
    max_delay: float = 4.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        wanted = self.first_delay * (2**attempt)
        if retry_after:
            # An HTTP date (rare from these servers) keeps our own backoff.
            with contextlib.suppress(ValueError):
                wanted = float(retry_after)
        return max(0.0, min(wanted, self.max_delay))


@dataclass(frozen=True)
class RemoteConfig:
    base_url: str  # normalised: scheme://host[:port]/path, usually .../v1
    api_key: str = field(default="", repr=False)  # never in a repr, a log or a message
    model: str = ""  # "" takes the server's first model
    connect_timeout: float = 5.0
    read_timeout: float = 30.0  # longest silence between two tokens (and before the first)
    retry: RetryPolicy = RetryPolicy()

    @classmethod
    def create(cls, base_url: str, api_key: str = "", model: str = "", **options: object) -> RemoteConfig:
        return cls(normalize_base_url(base_url), api_key.strip(), model.strip(), **options)  # type: ignore[arg-type]

    @property
    def host(self) -> str:
        """host:port as the status bar shows it ("Remote: host")."""
        url = httpx2.URL(self.base_url)
        return f"{url.host}:{url.port}" if url.port else str(url.host)

    @property
    def root_url(self) -> str:
        """The server's root: llama.cpp and vLLM serve /tokenize and /props there."""
        url = httpx2.URL(self.base_url)
        path = url.path.rstrip("/")
        path = path[: -len("/v1")] if path.endswith("/v1") else path
        return str(url.copy_with(path=path or "/")).rstrip("/")

    @property
    def masked_key(self) -> str:
        return mask_key(self.api_key)

    @property
    def is_plain_http_to_another_machine(self) -> bool:
        """Text would cross a network unencrypted: the app warns before the first request."""
        url = httpx2.URL(self.base_url)
        return url.scheme == "http" and not is_this_machine(str(url.host))


def normalize_base_url(text: str) -> str:
    """"localhost:8080" -> "http://localhost:8080/v1"; a pasted endpoint URL is trimmed to
    its base. Raises RemoteConfigError with a sentence for anything else."""
    text = text.strip()
    if not text:
        raise RemoteConfigError("Enter the server's address, for example http://localhost:8080/v1.")
    if "://" not in text:
        text = "http://" + text
    try:
        url = httpx2.URL(text)
    except (httpx2.InvalidURL, ValueError) as error:
        raise RemoteConfigError(f"{text!r} is not a server address: {error}.") from None
    if url.scheme not in ("http", "https"):
        raise RemoteConfigError(f"The server address must start with http:// or https://, not {url.scheme}://.")
    if not url.host:
        raise RemoteConfigError(f"{text!r} has no host name.")
    path = url.path.rstrip("/")
    for suffix in _ENDPOINT_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    path = path or "/v1"
    return str(url.copy_with(path=path, query=None, fragment=None))


def is_this_machine(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mask_key(key: str) -> str:
    """Enough to tell two keys apart, never enough to use one."""
    if not key:
        return "(none)"
    if len(key) < 12:
        return "****"
    return "…" + key[-4:]
