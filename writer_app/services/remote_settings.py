"""Where the remote server settings live, and the API key above all.

The address and model go in remote-server.json in the config folder. The key goes in the
OS keyring (macOS Keychain, Windows Credential Manager, Secret Service on Linux) through
`keyring` where one is available; otherwise into that same file, which is then readable
only by the user (0600). The key is never logged, and the UI only ever shows it masked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from writer_app.engine.remote_config import RemoteConfig
from writer_app.engine.remote_errors import RemoteConfigError
from writer_app.paths import AppPaths

log = logging.getLogger(__name__)
KEYRING_SERVICE = "writer-app remote server"
FILE_NAME = "remote-server.json"


class RemoteSettingsStore:
    def __init__(self, paths: AppPaths) -> None:
        self.path: Path = paths.config_dir / FILE_NAME

    def load(self) -> RemoteConfig | None:
        """The saved server, or None (nothing saved, or a file that cannot be used)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            url, model = str(data["base_url"]), str(data.get("model", ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        key = str(data.get("api_key", "")) or _keyring_get(url) or ""
        try:
            return RemoteConfig.create(url, key, model)
        except RemoteConfigError:
            return None

    def save(self, config: RemoteConfig) -> str:
        """Store it; returns where the key went ("keyring", "file" or "none")."""
        data: dict[str, str] = {"base_url": config.base_url, "model": config.model}
        where = "none"
        if config.api_key:
            if _keyring_set(config.base_url, config.api_key):
                where = "keyring"
            else:
                data["api_key"] = config.api_key
                where = "file"
        else:
            _keyring_delete(config.base_url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(self.path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
        return where


def _write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a file that was 0600 from its first byte (a key
    must never sit, even briefly, in a file others can read)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _keyring():  # type: ignore[no-untyped-def]
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    return None if isinstance(backend, fail.Keyring) else keyring


def _keyring_set(url: str, key: str) -> bool:
    ring = _keyring()
    if ring is None:
        return False
    try:
        ring.set_password(KEYRING_SERVICE, url, key)
        return True
    except Exception as error:  # any backend failure (locked, denied): fall back to the file
        log.warning("The OS keyring refused the API key (%s); it goes in a private file.", type(error).__name__)
        return False


def _keyring_get(url: str) -> str | None:
    ring = _keyring()
    if ring is None:
        return None
    try:
        return ring.get_password(KEYRING_SERVICE, url)
    except Exception:  # a locked or broken keyring reads as "no key"
        return None


def _keyring_delete(url: str) -> None:
    ring = _keyring()
    if ring is not None:
        with contextlib.suppress(Exception):
            ring.delete_password(KEYRING_SERVICE, url)
