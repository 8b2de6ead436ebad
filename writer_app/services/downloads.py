"""The download manager: catalog downloads queued and run off the GUI thread.

    GUI thread                          pool thread
    DownloadManager.download(entry) ──▶ Downloader.download(...)  (blocking, resumable)
    progressed / finished / failed ◀─── queued signals, tagged with the run number

One download runs at a time; the others wait as QUEUED. Pausing is a cancel that keeps
the .part file, so "Resume" (in this run or after a restart, even after the app was
killed) continues it with an HTTP Range request; cancelling also deletes the partial.
Every failure arrives as the downloader's own sentence plus a FailureKind, so the UI can
decide whether to offer a retry.

Privacy: nothing here touches the network until download() or refresh_catalog() is
called, and neither does anything while the writer's privacy.offline setting is on.
The models folder is watched (QFileSystemWatcher), so files dropped into it by hand
show up without a restart.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, Qt, QThreadPool, QTimer, Signal, Slot

from writer_app.model_choice import models_folder
from writer_app.models.catalog import Catalog, CatalogEntry, app_catalog
from writer_app.models.downloader import CancelToken, Downloader, Progress
from writer_app.models.errors import (
    ChecksumMismatch,
    DiskFull,
    DownloadCancelled,
    DownloadInProgress,
    HubNotFound,
    HubServerError,
    HubUnauthorized,
    HubUnreachable,
    InvalidModel,
    ModelsError,
)
from writer_app.models.hub import HubClient, HubSettings, RemoteFile
from writer_app.models.store import ModelStore, partial_path, state_path
from writer_app.paths import AppPaths
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import Settings

log = logging.getLogger(__name__)

OFFLINE_MESSAGE = (
    "writer-app is in offline mode, so it does not contact the model hub. "
    "Turn offline mode off in the privacy settings to download models."
)
FOLDER_SETTLE_MS = 300  # coalesce the burst of events one copy or download makes

DownloaderFactory = Callable[[HubClient, Catalog], Downloader]


class FailureKind(str, Enum):
    SWITCHED_OFF = "switched_off"  # privacy.offline is on; nothing was attempted
    OFFLINE = "offline"  # no connection, dropped connection, timeout
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    SERVER = "server"
    DISK_FULL = "disk_full"
    CHECKSUM = "checksum"  # the damaged file was deleted; a retry downloads it afresh
    INVALID = "invalid"  # downloaded fine, but not a model the engine can use
    BUSY = "busy"  # another window or app instance is writing the same file
    OTHER = "other"

    @property
    def retryable(self) -> bool:
        """Whether trying again, unchanged, may well succeed."""
        return self in (self.OFFLINE, self.SERVER, self.CHECKSUM, self.DISK_FULL, self.OTHER)


_KINDS: tuple[tuple[type[ModelsError], FailureKind], ...] = (
    (HubUnreachable, FailureKind.OFFLINE),
    (HubNotFound, FailureKind.NOT_FOUND),
    (HubUnauthorized, FailureKind.UNAUTHORIZED),
    (HubServerError, FailureKind.SERVER),
    (DiskFull, FailureKind.DISK_FULL),
    (ChecksumMismatch, FailureKind.CHECKSUM),
    (InvalidModel, FailureKind.INVALID),
    (DownloadInProgress, FailureKind.BUSY),
)


def failure_kind(error: ModelsError) -> FailureKind:
    return next((kind for cls, kind in _KINDS if isinstance(error, cls)), FailureKind.OTHER)


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"  # paused or cancelled; waiting for the worker to let go
    FAILED = "failed"


class _Stop(str, Enum):
    PAUSE = "pause"  # keep the partial file
    CANCEL = "cancel"  # delete it


@dataclass
class DownloadJob:
    """A queued, running or failed download. Only the GUI thread changes it."""

    entry: CatalogEntry
    dest_dir: Path
    state: JobState = JobState.QUEUED
    progress: Progress | None = None
    message: str = ""  # why it failed
    kind: FailureKind | None = None
    token: CancelToken = field(default_factory=CancelToken)
    stop: _Stop | None = None
    run: int = 0  # which worker run reports for this job
    requeue: bool = False  # asked for again while it was stopping

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def percent(self) -> float:
        return self.progress.percent if self.progress else 0.0


class _RelayedCatalog(Catalog):
    """The catalog as the worker thread sees it: what the hub says is remembered on the
    GUI thread, so the metadata cache file only ever has one writer."""

    def __init__(self, source: Catalog, remember: Callable[[RemoteFile], None]) -> None:
        super().__init__(tuple(source.entries()), cache=None)
        self._remember = remember

    def remember(self, remote: RemoteFile) -> None:
        self._remember(remote)


class DownloadManager(QObject):
    jobChanged = Signal(str)  # entry id: queued, started, stopping, failed or gone
    progressed = Signal(str, object)  # entry id, Progress (the downloader throttles it)
    finished = Signal(str, str)  # entry id, path of the installed model
    failed = Signal(str, str, str)  # entry id, a sentence for the writer, FailureKind value
    cancelled = Signal(str, bool)  # entry id, True when the partial file was kept (paused)
    catalogRefreshed = Signal()
    catalogRefreshFailed = Signal(str)  # a sentence for the writer
    folderChanged = Signal()  # the models folder moved, or files in it came or went

    # From pool threads; delivered on the GUI thread (queued connections).
    _progress = Signal(int, object)
    _done = Signal(int, str)
    _error = Signal(int, object)
    _stopped = Signal(int)
    _remembered = Signal(object)
    _refresh_result = Signal(object)

    def __init__(
        self,
        paths: AppPaths,
        keeper: SettingsKeeper,
        *,
        catalog: Catalog | None = None,
        make_downloader: DownloaderFactory | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.paths = paths
        self._settings: Settings = keeper.current
        self.catalog = catalog or app_catalog(paths)
        self._make_downloader = make_downloader or (
            lambda hub, catalog: Downloader(hub, catalog=catalog)
        )
        self._jobs: dict[str, DownloadJob] = {}
        self._runs = itertools.count(1)
        self._refreshing = False
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)  # one download plus one catalog refresh
        self._store: ModelStore | None = None
        self._folder = self.models_dir
        self._watcher = QFileSystemWatcher(self)
        self._settle = QTimer(self, singleShot=True, interval=FOLDER_SETTLE_MS)
        self._settle.timeout.connect(self._on_folder_settled)
        self._watcher.directoryChanged.connect(lambda _path: self._settle.start())
        queued = Qt.ConnectionType.QueuedConnection
        self._progress.connect(self._on_progress, queued)
        self._done.connect(self._on_done, queued)
        self._error.connect(self._on_error, queued)
        self._stopped.connect(self._on_stopped, queued)
        self._remembered.connect(self._on_remembered, queued)
        self._refresh_result.connect(self._on_refresh_result, queued)
        keeper.subscribe(self._follow_settings)

    def _follow_settings(self, settings: Settings) -> None:
        self._settings = settings
        self.update_folder()

    # ---- settings-derived ---------------------------------------------------------------

    @property
    def offline(self) -> bool:
        return self._settings.privacy.offline

    @property
    def models_dir(self) -> Path:
        return models_folder(self._settings, self.paths)

    def hub_settings(self) -> HubSettings:
        """The endpoint setting, else HF_ENDPOINT, else the public hub."""
        return HubSettings.from_environment(self._settings.models.hub_endpoint)

    @property
    def store(self) -> ModelStore:
        if self._store is None or self._store.models_dir != self.models_dir:
            self._store = ModelStore(self.models_dir, catalog=self.catalog)
        return self._store

    def update_folder(self) -> None:
        """Follow the models_dir setting and (re)watch the folder (also when it appears)."""
        folder = self.models_dir
        moved, self._folder = folder != self._folder, folder
        watched = self._watcher.directories()
        if watched and watched != [str(folder)]:
            self._watcher.removePaths(watched)
        if folder.is_dir() and str(folder) not in self._watcher.directories():
            self._watcher.addPath(str(folder))
        if moved:
            self.folderChanged.emit()

    def _on_folder_settled(self) -> None:
        self.update_folder()
        self.folderChanged.emit()

    # ---- jobs ---------------------------------------------------------------------------

    def job(self, entry_id: str) -> DownloadJob | None:
        return self._jobs.get(entry_id)

    def jobs(self) -> list[DownloadJob]:
        return list(self._jobs.values())

    @property
    def busy(self) -> bool:
        return any(j.state in (JobState.RUNNING, JobState.STOPPING) for j in self._jobs.values())

    def download(self, entry: CatalogEntry) -> bool:
        """Queue a download (or resume a partial one). False if offline mode forbids it."""
        if self.offline:
            self.failed.emit(entry.id, OFFLINE_MESSAGE, FailureKind.SWITCHED_OFF.value)
            return False
        job = self._jobs.get(entry.id)
        if job is not None and job.state in (JobState.QUEUED, JobState.RUNNING):
            return True
        if job is not None and job.state is JobState.STOPPING:
            job.requeue, job.stop = True, _Stop.PAUSE  # keep what it has, then go on
            return True
        self._jobs[entry.id] = DownloadJob(entry, self.models_dir)
        self.jobChanged.emit(entry.id)
        self._start_next()
        return True

    def pause(self, entry_id: str) -> None:
        """Stop, keeping the partial file for a later resume."""
        self._stop(entry_id, _Stop.PAUSE)

    def cancel(self, entry_id: str) -> None:
        """Stop (or unqueue) and delete the partial file; also discards a paused download."""
        if entry_id in self._jobs:
            self._stop(entry_id, _Stop.CANCEL)
            return
        entry = self.catalog.get(entry_id)
        self._discard_partial(self.models_dir / entry.filename)
        self.jobChanged.emit(entry_id)

    def dismiss(self, entry_id: str) -> None:
        """Forget a failed job (its partial file, if any, stays)."""
        job = self._jobs.get(entry_id)
        if job is not None and job.state is JobState.FAILED:
            del self._jobs[entry_id]
            self.jobChanged.emit(entry_id)

    def _stop(self, entry_id: str, how: _Stop) -> None:
        job = self._jobs.get(entry_id)
        if job is None:
            return
        if job.state is JobState.RUNNING or job.state is JobState.STOPPING:
            job.state, job.stop, job.requeue = JobState.STOPPING, how, False
            job.token.cancel()
            self.jobChanged.emit(entry_id)
            return
        del self._jobs[entry_id]  # queued or failed: no worker holds it
        if how is _Stop.CANCEL:
            self._discard_partial(job.dest_dir / job.entry.filename)
        self.jobChanged.emit(entry_id)
        self.cancelled.emit(entry_id, how is _Stop.PAUSE)

    def _start_next(self) -> None:
        if self.busy:
            return
        job = next((j for j in self._jobs.values() if j.state is JobState.QUEUED), None)
        if job is None:
            return
        job.state, job.run, job.token = JobState.RUNNING, next(self._runs), CancelToken()
        job.progress = None
        hub = HubClient(self.hub_settings())
        downloader = self._make_downloader(hub, _RelayedCatalog(self.catalog, self._remembered.emit))
        run, entry, dest, token = job.run, job.entry, job.dest_dir, job.token

        def work() -> None:  # on a pool thread: touches only its own arguments
            try:
                path = downloader.download(
                    entry, dest, progress=lambda p: self._progress.emit(run, p), cancel=token
                )
            except DownloadCancelled:
                self._stopped.emit(run)
            except ModelsError as error:
                self._error.emit(run, error)
            except Exception as error:  # a bug must not kill the thread silently
                log.exception("download of %s failed unexpectedly", entry.filename)
                self._error.emit(
                    run, ModelsError(f"The download of {entry.filename} failed: {error}.")
                )
            else:
                self._done.emit(run, str(path))

        self.jobChanged.emit(job.id)
        self._pool.start(work)

    def _running(self, run: int) -> DownloadJob | None:
        return next((j for j in self._jobs.values() if j.run == run), None)

    @Slot(int, object)
    def _on_progress(self, run: int, progress: Progress) -> None:
        job = self._running(run)
        if job is not None and job.state is JobState.RUNNING:
            job.progress = progress
            self.progressed.emit(job.id, progress)

    @Slot(int, str)
    def _on_done(self, run: int, path: str) -> None:
        job = self._running(run)
        if job is None:
            return
        del self._jobs[job.id]
        self.update_folder()  # the folder may have just been created
        self.jobChanged.emit(job.id)
        self.finished.emit(job.id, path)
        self._start_next()

    @Slot(int, object)
    def _on_error(self, run: int, error: ModelsError) -> None:
        job = self._running(run)
        if job is None:
            return
        if job.state is JobState.STOPPING:  # failed while being paused or cancelled
            self._on_stopped(run)
            return
        job.state, job.message, job.kind = JobState.FAILED, str(error), failure_kind(error)
        job.stop = None
        self.jobChanged.emit(job.id)
        self.failed.emit(job.id, job.message, job.kind.value)
        self._start_next()

    @Slot(int)
    def _on_stopped(self, run: int) -> None:
        job = self._running(run)
        if job is None:
            return
        kept = job.stop is not _Stop.CANCEL
        if not kept:
            self._discard_partial(job.dest_dir / job.entry.filename)
        if job.requeue:
            job.state, job.stop, job.requeue = JobState.QUEUED, None, False
        else:
            del self._jobs[job.id]
        self.jobChanged.emit(job.id)
        self.cancelled.emit(job.id, kept)
        self._start_next()

    @staticmethod
    def _discard_partial(target: Path) -> None:
        partial_path(target).unlink(missing_ok=True)
        state_path(target).unlink(missing_ok=True)

    # ---- catalog ------------------------------------------------------------------------

    def refresh_catalog(self, *, include_extras: bool = True) -> bool:
        """Ask the hub for exact sizes and hashes, in the background (an explicit network
        action). False when offline mode forbids it or a refresh is already running."""
        if self.offline:
            self.catalogRefreshFailed.emit(OFFLINE_MESSAGE)
            return False
        if self._refreshing:
            return False
        self._refreshing = True
        hub = HubClient(self.hub_settings())
        repos: dict[str, list[str]] = {}
        for entry in self.catalog.entries(include_extras=include_extras):
            repos.setdefault(entry.repo_id, []).append(entry.filename)

        def work() -> None:
            try:
                found = [r for repo, names in repos.items()
                         for r in hub.files_info(repo, names).values()]
            except ModelsError as error:
                self._refresh_result.emit(error)
            else:
                self._refresh_result.emit(found)

        self._pool.start(work)
        return True

    @property
    def refreshing(self) -> bool:
        return self._refreshing

    @Slot(object)
    def _on_remembered(self, remote: RemoteFile) -> None:
        self.catalog.remember(remote)

    @Slot(object)
    def _on_refresh_result(self, result: list[RemoteFile] | ModelsError) -> None:
        self._refreshing = False
        if isinstance(result, ModelsError):
            self.catalogRefreshFailed.emit(str(result))
            return
        for remote in result:
            self.catalog.remember(remote)
        self.catalogRefreshed.emit()

    # ---- lifetime -----------------------------------------------------------------------

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Pause whatever runs (its partial file resumes next time) and wait for it."""
        for job in list(self._jobs.values()):
            if job.state is JobState.QUEUED:
                del self._jobs[job.id]
            elif job.state is JobState.RUNNING:
                job.state, job.stop = JobState.STOPPING, _Stop.PAUSE
                job.token.cancel()
        self._pool.waitForDone(timeout_ms)
