"""Crash recovery: unsaved text kept beside the app, offered back after a crash.

One JSON file per open document, `<doc_id>.json`, holding the text and its metadata,
replaced atomically on every write. Ids are stable per open document for the session
(`new_doc_id()`); untitled documents simply have `path` None.

Who owns an entry? Every running store holds an exclusive OS lock (flock / msvcrt) on
`owners/<owner>.lock`, and each entry names its owner. The OS drops a lock when its
process dies, however it dies (even SIGKILL), so "the owner's lock can be taken" means
"the owner crashed or quit". `list()` returns only such orphaned entries: a second
running instance never offers the first one's live documents as crashed. A lock is more
trustworthy than a PID, which the system may have handed to an unrelated process.

`close()` leaves entries in place on purpose: the app discards a document's entry once
it is saved or deliberately abandoned, and whatever is left is offered next time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from writer_app.paths import AppPaths
from writer_app.safe_files import explain_write_failure, try_lock, unlock, write_bytes_atomic

FORMAT_VERSION = 1
_DOC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_doc_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class RecoveryEntry:
    doc_id: str
    path: str | None  # None for an untitled document
    title: str
    text: str
    last_saved: datetime | None  # when the writer last saved it, if ever
    written_at: datetime  # when this recovery copy was taken (UTC)


class RecoveryError(Exception):
    """A recovery copy could not be written; str() is a sentence for the writer."""


class RecoveryStore:
    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._owners = self.folder / "owners"
        self._damaged = self.folder / "damaged"
        self.owner = uuid.uuid4().hex
        try:
            self._owners.mkdir(parents=True, exist_ok=True)
            self._lock = _OwnerLock.create(self._owners / f"{self.owner}.lock")
        except OSError as error:
            raise RecoveryError(
                f"Crash recovery is off: the folder {self.folder} cannot be used "
                f"({error.strerror or error})."
            ) from error
        self._last_written: dict[str, tuple[Any, ...]] = {}

    @classmethod
    def for_paths(cls, paths: AppPaths) -> RecoveryStore:
        return cls(paths.recovery_dir)

    def write(
        self,
        doc_id: str,
        text: str,
        *,
        path: str | None,
        title: str,
        last_saved: datetime | None,
    ) -> bool:
        """Keep a recovery copy; returns False (and touches nothing) if nothing changed."""
        if not _DOC_ID.fullmatch(doc_id):
            raise ValueError(f"doc_id must be 1-64 letters, digits, '-' or '_', got {doc_id!r}")
        key = (text, path, title, last_saved)
        if self._last_written.get(doc_id) == key:
            return False
        payload = {
            "format": FORMAT_VERSION,
            "doc_id": doc_id,
            "path": path,
            "title": title,
            "last_saved": last_saved.isoformat() if last_saved else None,
            "written_at": datetime.now(timezone.utc).isoformat(),
            "owner": self.owner,
            "owner_pid": os.getpid(),  # for people reading the folder; liveness uses the lock
            "text": text,
        }
        # ensure_ascii: a lone surrogate from the editor must not make the copy fail.
        data = json.dumps(payload).encode("ascii")
        target = self._entry_file(doc_id)
        try:
            write_bytes_atomic(target, data)
        except OSError as error:
            existed = target.exists()
            message = explain_write_failure(error, what="the recovery copy", existed=existed)
            raise RecoveryError(message) from error
        self._last_written[doc_id] = key
        return True

    def discard(self, doc_id: str) -> None:
        self._last_written.pop(doc_id, None)
        if _DOC_ID.fullmatch(doc_id):
            with contextlib.suppress(FileNotFoundError):
                self._entry_file(doc_id).unlink()

    def list(self) -> list[RecoveryEntry]:
        """Entries left behind by instances that are gone, newest first. Never raises."""
        orphans: list[RecoveryEntry] = []
        referenced: set[str] = set()
        alive: dict[str, bool] = {}
        for file in sorted(self.folder.glob("*.json")):
            loaded = self._read(file)
            if loaded is None:
                continue
            entry, owner = loaded
            referenced.add(owner)
            if owner not in alive:
                alive[owner] = owner == self.owner or _OwnerLock.is_held(self._owner_file(owner))
            if not alive[owner]:
                orphans.append(entry)
        self._forget_dead_owners(referenced)
        return sorted(orphans, key=lambda entry: entry.written_at, reverse=True)

    def claim(self, doc_id: str) -> RecoveryEntry | None:
        """Adopt an orphaned entry as this instance's live document; None if not orphaned."""
        entry = next((e for e in self.list() if e.doc_id == doc_id), None)
        if entry is not None:
            self.write(
                doc_id, entry.text, path=entry.path, title=entry.title, last_saved=entry.last_saved
            )
        return entry

    def close(self) -> None:
        self._lock.release(delete=True)

    def __enter__(self) -> RecoveryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _entry_file(self, doc_id: str) -> Path:
        return self.folder / f"{doc_id}.json"

    def _owner_file(self, owner: str) -> Path:
        return self._owners / f"{owner}.lock"

    def _read(self, file: Path) -> tuple[RecoveryEntry, str] | None:
        try:
            payload = json.loads(file.read_bytes().decode("utf-8"))
            if payload.get("format", 0) > FORMAT_VERSION:
                return None  # a newer writer-app's entry: leave it for that version
            return _parse(payload, file.stem)
        except FileNotFoundError:
            return None  # discarded by its owner while we were looking
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            self._set_aside(file)
            return None

    def _set_aside(self, file: Path) -> None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        with contextlib.suppress(OSError):
            self._damaged.mkdir(exist_ok=True)
            os.replace(file, self._damaged / f"{file.name}.{stamp}-{uuid.uuid4().hex[:6]}")

    def _forget_dead_owners(self, referenced: set[str]) -> None:
        """Remove lock files of crashed instances that no entry mentions any more."""
        for lock_file in self._owners.glob("*.lock"):
            owner = lock_file.stem
            if owner != self.owner and owner not in referenced:
                _OwnerLock.delete_if_dead(lock_file)


def _parse(payload: dict[str, Any], stem: str) -> tuple[RecoveryEntry, str]:
    def text_or_none(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        raise TypeError("expected text")

    fields = [payload["doc_id"], payload["title"], payload["text"], payload["owner"]]
    if not all(isinstance(value, str) for value in fields) or payload["doc_id"] != stem:
        raise TypeError("damaged recovery entry")
    last_saved = text_or_none(payload["last_saved"])
    written_at = datetime.fromisoformat(payload["written_at"])
    if written_at.tzinfo is None:
        raise ValueError("written_at must carry a time zone")  # else sorting would fail
    entry = RecoveryEntry(
        doc_id=payload["doc_id"],
        path=text_or_none(payload["path"]),
        title=payload["title"],
        text=payload["text"],
        last_saved=datetime.fromisoformat(last_saved) if last_saved else None,
        written_at=written_at,
    )
    return entry, payload["owner"]


class _OwnerLock:
    """An exclusive lock on a file; the OS releases it when the holding process dies."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def create(cls, path: Path) -> _OwnerLock:
        # Lock under a temporary name, then rename: the final name never exists unlocked,
        # so a prober cannot mistake a starting instance for a dead one.
        # (Windows cannot rename an open file; there the tiny window stays open.)
        temp = path.with_suffix(".starting") if _CAN_RENAME_OPEN_FILES else path
        fd = os.open(temp, os.O_RDWR | os.O_CREAT, 0o644)
        if not try_lock(fd):
            os.close(fd)
            raise OSError(f"{path.name} is locked by another process")
        os.write(fd, f"{os.getpid()}\n".encode())
        if temp != path:
            os.replace(temp, path)
        return cls(path, fd)

    @staticmethod
    def is_held(path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False  # no lock file: its owner is long gone
        try:
            if try_lock(fd):
                unlock(fd)
                return False
            return True
        finally:
            os.close(fd)

    @staticmethod
    def delete_if_dead(path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return
        try:
            if not try_lock(fd):
                return
            if _CAN_RENAME_OPEN_FILES:  # unlink while holding it: no one sees it unlocked
                with contextlib.suppress(OSError):
                    path.unlink()
            unlock(fd)
        finally:
            os.close(fd)
        if not _CAN_RENAME_OPEN_FILES:
            with contextlib.suppress(OSError):
                path.unlink()

    def release(self, *, delete: bool) -> None:
        if self._fd is None:
            return
        if delete and _CAN_RENAME_OPEN_FILES:
            with contextlib.suppress(OSError):
                self.path.unlink()
        unlock(self._fd)
        os.close(self._fd)
        self._fd = None
        if delete and not _CAN_RENAME_OPEN_FILES:
            with contextlib.suppress(OSError):
                self.path.unlink()


_CAN_RENAME_OPEN_FILES = os.name != "nt"

