"""Resumable, verified model downloads over huggingface_hub's HTTP client.

Why not hf_hub_download: it resumes only within one call, never checks sha256, and raises
raw HTTP errors. Here the bytes go to `<file>.part` beside `<file>.part.json` (what they
are a prefix of), so a cancel, a pause, a dropped connection or a killed process all
resume later, in the next call or the next app run, with an HTTP Range request. The file
is renamed into place only after its sha256 matches the hub's and the engine has
validated it, so a half-written or corrupted model is never offered.

download() blocks; call it from a worker thread. `progress` is called on that thread
(at most ~10 times a second, plus every phase change and the end); `cancel` may be
triggered from any thread.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from writer_app.models.catalog import Catalog, CatalogEntry, app_catalog
from writer_app.models.errors import (
    ChecksumMismatch,
    DiskFull,
    DownloadCancelled,
    DownloadInProgress,
    HubError,
    HubUnreachable,
    InvalidModel,
    ModelsError,
)
from writer_app.models.hub import HubClient, HubSettings, RemoteFile
from writer_app.models.store import (
    DISK_FULL_ERRNOS,
    PartialState,
    Validator,
    check_model_file,
    partial_path,
    state_path,
)
from writer_app.safe_files import replace_file, try_lock

if TYPE_CHECKING:
    from writer_app.paths import AppPaths

log = logging.getLogger(__name__)

DISK_MARGIN_BYTES = 16 * 1024 * 1024  # leave the disk a little room after the download
HASH_BLOCK = 1024 * 1024
MAX_RESTARTS = 2  # fresh starts per call when the server ignores or garbles Range


@dataclass(frozen=True)
class DownloadSpec:
    repo_id: str
    filename: str
    revision: str = "main"
    catalog_id: str | None = None

    @classmethod
    def from_entry(cls, entry: CatalogEntry) -> DownloadSpec:
        return cls(entry.repo_id, entry.filename, entry.revision, entry.id)


class DownloadPhase(str, Enum):
    CONNECTING = "connecting"  # asking the hub for size and sha256
    RESUMING = "resuming"  # re-hashing the bytes a previous run left
    DOWNLOADING = "downloading"
    RETRYING = "retrying"  # waiting before another attempt (see retry_in_seconds)
    VERIFYING = "verifying"  # sha256 compared, engine validation
    DONE = "done"


@dataclass(frozen=True)
class Progress:
    filename: str
    phase: DownloadPhase
    bytes_done: int
    total_bytes: int  # 0 until the hub has told us the size
    speed_bytes_per_second: float  # smoothed over a few seconds
    eta_seconds: float | None
    retry_in_seconds: float | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.bytes_done / self.total_bytes if self.total_bytes else 0.0


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Cancel (or pause: same thing, the partial file stays) from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if cancelled meanwhile."""
        return self._event.wait(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5  # extra attempts after a failure; reset whenever bytes arrive
    base_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (failures - 1))


class _ProgressReporter:
    def __init__(
        self,
        filename: str,
        callback: ProgressCallback | None,
        clock: Callable[[], float],
        interval: float,
        smoothing_seconds: float = 3.0,
    ) -> None:
        self._filename = filename
        self._callback = callback
        self._clock = clock
        self._interval = interval
        self._smoothing = smoothing_seconds
        self._phase: DownloadPhase | None = None
        self._last_emit = float("-inf")
        self._sample: tuple[float, int] | None = None  # (time, bytes) of the last speed sample
        self._speed = 0.0

    def report(
        self, phase: DownloadPhase, done: int, total: int, *, retry_in: float | None = None
    ) -> None:
        now = self._clock()
        if phase is DownloadPhase.DOWNLOADING:
            self._measure(now, done)
        changed = phase is not self._phase
        if not changed and now - self._last_emit < self._interval:
            return
        self._phase, self._last_emit = phase, now
        if self._callback is None:
            return
        speed = self._speed if phase is DownloadPhase.DOWNLOADING else 0.0
        eta = (total - done) / speed if speed > 0 and total else None
        self._callback(Progress(self._filename, phase, done, total, speed, eta, retry_in))

    def _measure(self, now: float, done: int) -> None:
        if self._sample is None or done < self._sample[1]:
            self._sample = (now, done)  # first sample, or a restart from zero
            return
        elapsed = now - self._sample[0]
        if elapsed < 0.05:
            return
        instant = (done - self._sample[1]) / elapsed
        # Time-weighted moving average: steady over a few seconds, whatever the callback rate.
        weight = 1.0 - math.exp(-elapsed / self._smoothing)
        self._speed = (
            instant if self._speed == 0.0 else self._speed + weight * (instant - self._speed)
        )
        self._sample = (now, done)

    def pause_speed(self) -> None:
        """After a wait, measure afresh instead of averaging the gap in."""
        self._sample = None


class _PartialFile:
    """The .part file, opened for writing and locked against a second writer."""

    def __init__(self, path: Path, filename: str) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115
        if not try_lock(self._file.fileno()):
            self._file.close()
            raise DownloadInProgress(
                f"{filename} is already being downloaded by another window or app instance."
            )

    @property
    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def restart(self) -> None:
        self._file.seek(0)
        self._file.truncate()

    def seek(self, offset: int) -> None:
        self._file.seek(offset)

    def read(self, size: int) -> bytes:
        return self._file.read(size)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()  # also releases the lock


class _RestartNeeded(Exception):
    """The server's answer does not continue our partial file; start it over."""


class _Job:
    """One download() call: its file, its cancel token, its progress, how far it got."""

    def __init__(self, name: str, cancel: CancelToken, reporter: _ProgressReporter) -> None:
        self.name = name
        self.cancel = cancel
        self.reporter = reporter
        self.total = 0
        self.transfer: _Transfer | None = None

    @property
    def done(self) -> int:
        return self.transfer.done if self.transfer is not None else 0

    def report(self, phase: DownloadPhase, *, retry_in: float | None = None) -> None:
        self.reporter.report(phase, self.done, self.total, retry_in=retry_in)

    def check_cancelled(self) -> None:
        if not self.cancel.cancelled:
            return
        if self.done > 0:
            raise DownloadCancelled(
                f"The download of {self.name} was cancelled; the {_size_text(self.done)} "
                "downloaded so far are kept, so it can resume later."
            )
        raise DownloadCancelled(f"The download of {self.name} was cancelled.")


class Downloader:
    def __init__(
        self,
        hub: HubClient,
        *,
        catalog: Catalog | None = None,
        retry: RetryPolicy = RetryPolicy(),
        validate: Validator | None = check_model_file,
        free_space: Callable[[Path], int] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        progress_interval: float = 0.1,
    ) -> None:
        """`validate=None` skips engine validation (only for files that are not models);
        `sleep=None` waits on the cancel token, so a cancel interrupts a retry wait."""
        self.hub = hub
        self.catalog = catalog
        self.retry = retry
        self._validate = validate
        self._free_space = free_space or (lambda p: shutil.disk_usage(p).free)
        self._sleep = sleep
        self._clock = clock
        self._progress_interval = progress_interval

    def download(
        self,
        source: CatalogEntry | DownloadSpec,
        dest_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Path:
        """Download (or finish downloading) into dest_dir; returns the verified file's path."""
        spec = DownloadSpec.from_entry(source) if isinstance(source, CatalogEntry) else source
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / Path(spec.filename).name
        reporter = _ProgressReporter(target.name, progress, self._clock, self._progress_interval)
        job = _Job(target.name, cancel or CancelToken(), reporter)
        job.report(DownloadPhase.CONNECTING)
        remote = self._with_retries(
            job, lambda: self.hub.file_info(spec.repo_id, spec.filename, spec.revision)
        )
        if remote.sha256 is None:
            raise HubError(
                f"The hub publishes no sha256 for {target.name}, so it cannot be verified; "
                "only Git LFS files can be downloaded."
            )
        job.total = remote.size
        if self.catalog is not None:
            self.catalog.remember(remote)
        if not self._already_installed(target, remote, job):
            self._check_space(target, remote)
            self._download_verified(target, remote, spec.catalog_id, job)
        job.reporter.report(DownloadPhase.DONE, remote.size, remote.size)
        return target

    # -- steps ---------------------------------------------------------------------------
    def _already_installed(self, target: Path, remote: RemoteFile, job: _Job) -> bool:
        if not target.is_file() or target.stat().st_size != remote.size:
            return False
        hasher = hashlib.sha256()
        with open(target, "rb") as existing:
            while block := existing.read(HASH_BLOCK):
                job.check_cancelled()
                hasher.update(block)
        return hasher.hexdigest() == remote.sha256

    def _check_space(self, target: Path, remote: RemoteFile) -> None:
        part = partial_path(target)
        saved = PartialState.load(state_path(target))
        have = part.stat().st_size if part.exists() and _same_file(saved, remote) else 0
        needed = max(0, remote.size - have)
        free = self._free_space(target.parent)
        if free < needed + DISK_MARGIN_BYTES:
            raise DiskFull(
                f"{target.name} needs {_size_text(needed)} more but only {_size_text(free)} "
                f"is free in {target.parent}. Free up some space and try again."
            )

    def _download_verified(
        self, target: Path, remote: RemoteFile, catalog_id: str | None, job: _Job
    ) -> None:
        writer = _PartialFile(partial_path(target), target.name)
        try:
            self._open_transfer(target, writer, remote, catalog_id, job)
            self._fill(job, remote)
            writer.sync()
        finally:
            writer.close()
        job.report(DownloadPhase.VERIFYING)
        assert job.transfer is not None
        if job.transfer.hasher.hexdigest() != remote.sha256:
            self._discard(target)
            raise ChecksumMismatch(
                f"{target.name} arrived damaged: its sha256 does not match the one the hub "
                "published. The damaged file was deleted; downloading again should fix it."
            )
        self._install(target)

    def _open_transfer(
        self,
        target: Path,
        writer: _PartialFile,
        remote: RemoteFile,
        catalog_id: str | None,
        job: _Job,
    ) -> None:
        """Keep (and re-hash) what a previous run left if it is the same file, else start over."""
        transfer = job.transfer = _Transfer(writer)
        saved = PartialState.load(state_path(target))
        if _same_file(saved, remote) and writer.size <= remote.size:
            kept = writer.size
            writer.seek(0)
            while transfer.done < kept:
                job.check_cancelled()
                block = writer.read(min(HASH_BLOCK, kept - transfer.done))
                if not block:
                    break
                transfer.hasher.update(block)
                transfer.done += len(block)
                job.report(DownloadPhase.RESUMING)
        else:
            transfer.restart()
        state = PartialState(
            remote.url, remote.repo_id, remote.filename, remote.revision,
            remote.size, remote.sha256, remote.etag, catalog_id,
        )  # fmt: skip
        state.save(state_path(target))

    def _fill(self, job: _Job, remote: RemoteFile) -> None:
        """Request until the .part file holds the whole remote file."""
        assert job.transfer is not None
        restarts = 0
        while job.done < remote.size:
            try:
                self._with_retries(job, lambda: self._request(job, remote))
            except _RestartNeeded as why:
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise HubError(
                        f"{self.hub.settings.host} keeps sending the wrong part of "
                        f"{job.name} ({why}); try again later."
                    ) from None
                log.info("Restarting %s from zero: %s", job.name, why)
                job.transfer.restart()

    def _request(self, job: _Job, remote: RemoteFile) -> None:
        """One HTTP request, continuing from job.done."""
        transfer = job.transfer
        assert transfer is not None
        host = self.hub.settings.host
        with self.hub.open_download(remote.url, start=transfer.done, what=job.name) as response:
            status = response.status_code
            if status == 416:
                raise _RestartNeeded("the server says our partial file is longer than the file")
            if status == 200 and transfer.done > 0:
                log.info("Server ignored the Range request for %s; starting over", job.name)
                transfer.restart()
            elif status == 206:
                _check_content_range(response.headers.get("Content-Range"), transfer.done, remote)
            elif status != 200:
                raise HubError(f"{host} answered HTTP {status} for {job.name}.")
            job.report(DownloadPhase.DOWNLOADING)
            for chunk in response.iter_bytes():
                job.check_cancelled()
                if transfer.done + len(chunk) > remote.size:
                    raise _RestartNeeded("the server sent more bytes than the file has")
                transfer.write(chunk, job.name)
                job.report(DownloadPhase.DOWNLOADING)
        if transfer.done < remote.size:
            raise HubUnreachable(f"The connection to {host} ended before {job.name} was complete.")

    def _with_retries(self, job: _Job, action: Callable[[], Any]) -> Any:
        """Run `action`, retrying transient hub errors with exponential backoff.

        The failure count resets whenever bytes arrived, so a flaky connection that keeps
        making progress is never given up on; one that makes none is, after retry.retries.
        """
        failures = 0
        while True:
            job.check_cancelled()
            before = job.done
            try:
                return action()
            except HubError as exc:
                if not exc.transient:
                    raise
                failures = 1 if job.done > before else failures + 1
                if failures > self.retry.retries:
                    raise
                delay = self.retry.delay(failures)
                log.info("Retrying %s in %.1f s after: %s", job.name, delay, exc)
                job.report(DownloadPhase.RETRYING, retry_in=delay)
                if self._sleep is not None:
                    self._sleep(delay)
                else:
                    job.cancel.wait(delay)
                job.reporter.pause_speed()

    def _install(self, target: Path) -> None:
        """Validate the verified .part with the engine, then rename it into place."""
        part = partial_path(target)
        if self._validate is not None:
            try:
                self._validate(part)
            except InvalidModel as exc:
                self._discard(target)
                raise InvalidModel(
                    f"{target.name} downloaded correctly but the app cannot use it: {exc} "
                    "The file was deleted."
                ) from exc
        try:
            replace_file(part, target)
        except OSError as exc:
            raise ModelsError(
                f"Could not put {target.name} in place: {exc.strerror or exc}. "
                "Close anything using the old file and try again."
            ) from exc
        state_path(target).unlink(missing_ok=True)

    def _discard(self, target: Path) -> None:
        partial_path(target).unlink(missing_ok=True)
        state_path(target).unlink(missing_ok=True)


class _Transfer:
    """The partial file plus the running hash of everything in it."""

    def __init__(self, writer: _PartialFile) -> None:
        self.writer = writer
        self.hasher = hashlib.sha256()
        self.done = 0

    def write(self, chunk: bytes, name: str) -> None:
        try:
            self.writer.write(chunk)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise DiskFull(
                    f"The disk filled up while downloading {name}. Free up some space and "
                    "download again: it resumes where it stopped."
                ) from exc
            raise ModelsError(f"Could not write {name}: {exc.strerror or exc}.") from exc
        self.hasher.update(chunk)
        self.done += len(chunk)

    def restart(self) -> None:
        self.writer.restart()
        self.hasher = hashlib.sha256()
        self.done = 0


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _check_content_range(header: str | None, start: int, remote: RemoteFile) -> None:
    match = _CONTENT_RANGE.fullmatch((header or "").strip())
    if match is None:
        raise _RestartNeeded(f"unreadable Content-Range {header!r}")
    first, total = int(match.group(1)), match.group(3)
    if first != start or (total != "*" and int(total) != remote.size):
        raise _RestartNeeded(f"asked for bytes from {start}, got Content-Range {header!r}")


def _same_file(saved: PartialState | None, remote: RemoteFile) -> bool:
    """Whether a partial download is a prefix of the file the hub serves now.

    The sha256 names the content, so a new commit that left this file alone keeps the
    partial; the etag only decides when there is no sha256 to compare."""
    if saved is None or saved.size != remote.size:
        return False
    if saved.sha256 or remote.sha256:
        return saved.sha256 == remote.sha256
    return saved.etag is not None and saved.etag == remote.etag


def _size_text(size: int) -> str:
    """Sizes as a writer reads them: "850 kB", "73.6 MB", "1.55 GB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:,.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{size / 1e3:,.0f} kB"


def download(
    source: CatalogEntry | DownloadSpec,
    dest_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    hub: HubClient | None = None,
    **options: Any,
) -> Path:
    """One-call form of Downloader(hub, **options).download(...)."""
    downloader = Downloader(hub or HubClient(), **options)
    return downloader.download(source, dest_dir, progress=progress, cancel=cancel)


def download_model(
    paths: AppPaths,
    name: str,
    *,
    quantization: str | None = None,
    settings: HubSettings | None = None,
    models_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """For `writer-app models download NAME [--quant Q]`: fetch a catalog model (by id,
    family or file name; see Catalog.resolve) into the models folder."""
    catalog = app_catalog(paths)
    entry = catalog.resolve(name, quantization)
    downloader = Downloader(HubClient(settings), catalog=catalog)
    target_dir = models_dir or paths.models_dir
    return downloader.download(entry, target_dir, progress=progress, cancel=cancel)
