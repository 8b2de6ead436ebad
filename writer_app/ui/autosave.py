"""Keep a crash-recovery copy of unsaved work, a few seconds behind the writer.

The timer is a throttle, not a debounce: the first change after a copy arms it and
further typing does not push it back, so someone typing without pause still gets a copy
every `interval_s` seconds. A copy is also taken at once when the app loses focus (the
moment a writer walks away or another program might crash the session).
The copy is the document's text from `toPlainText()`: ghost text never reaches it.

Threads: the snapshot (text and document info) is taken on the GUI thread; the disk work
(temp file, fsync, rename, folder fsync: usually 2 ms, over 100 ms on a busy disk) runs
on a background thread, so typing never waits for the disk. Writes and discards go
through one serial queue (`_WriteQueue`), so they reach the disk in the order they were
asked for: a copy being written when the writer saves cannot reappear after the save
removed it. A newer request for a document replaces one that has not started yet, so a
slow disk costs one write of the newest text, not one write per request. Outcomes come
back to the GUI thread, where `written` and `problem` are emitted.

`stop()` (the window closes) and the end of the app wait for the queue, but only for a
bounded time: a disk that blocks for good must not stop the app from quitting.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QGuiApplication

from writer_app.documents.recovery import RecoveryError, RecoveryStore
from writer_app.ui.document_controller import DocumentController

log = logging.getLogger(__name__)

# How long closing the window or quitting waits for copies still on their way to disk.
# A healthy disk needs milliseconds; past this the disk is stuck and quitting wins.
STOP_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class Snapshot:
    """What one recovery copy holds, taken on the GUI thread."""

    doc_id: str
    text: str
    path: str | None
    title: str
    last_saved: datetime | None


Job = Snapshot | None  # None: remove the document's copy
Outcome = tuple[Literal["written", "problem"], str]  # doc_id, or a sentence for the writer


class _Relay(QObject):
    # Emitted on the writer thread. A QObject of its own rather than the Autosaver's
    # signal: the writer thread keeps it alive, so a late emit after a timed-out stop()
    # never touches a deleted Autosaver (Qt drops the connection when its receiver goes).
    ready = Signal()


class _WriteQueue:
    """Runs recovery writes and discards off the GUI thread, one at a time, in order.

    Pending jobs are kept per document, and a newer request replaces an older one that
    has not started: the latest request for a document always wins, nothing older can
    land after it, and only the newest snapshot is written.

    The worker is a daemon `threading.Thread` that exists only while there is work. Not
    a QThread or QThreadPool: when a blocked disk outlasts the bounded wait at quit,
    destroying a running QThread is fatal (qFatal) and QThreadPool's destructor waits
    without limit, whereas a daemon thread simply ends with the process. The worker
    touches nothing but the store; outcomes reach Qt through `relay.ready`.
    """

    def __init__(self, store: RecoveryStore) -> None:
        self.store = store
        self.relay = _Relay()
        self._lock = threading.Lock()
        self._pending: dict[str, Job] = {}  # insertion order is the order asked for
        self._outcomes: list[Outcome] = []
        self._running = False  # a worker is draining _pending
        self._thread: threading.Thread | None = None  # the latest worker

    def write(self, snapshot: Snapshot) -> None:
        self._put(snapshot.doc_id, snapshot)

    def discard(self, doc_id: str) -> None:
        self._put(doc_id, None)

    def wait(self, timeout_ms: int) -> bool:
        """Block until every job so far is done and the worker has ended; False on timeout.

        Call it on the GUI thread, the only one that adds jobs: then no new worker can
        start meanwhile, and once the latest one has ended the queue is empty.
        """
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(max(0, timeout_ms) / 1000)
        return not thread.is_alive()

    def take_outcomes(self) -> list[Outcome]:
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def _put(self, doc_id: str, job: Job) -> None:
        with self._lock:
            self._pending[doc_id] = job  # replaces a request for doc_id that has not started
            if self._running:
                return  # the worker checks _pending under the lock before it ends
            self._running = True
            self._thread = threading.Thread(
                target=self._drain, args=(self._thread,), name="recovery-writer", daemon=True
            )
            self._thread.start()

    def _drain(self, previous: threading.Thread | None) -> None:
        if previous is not None:
            # It has finished its work and is only returning; waiting for it means that
            # once the latest worker has ended, every earlier one has too (see wait()).
            previous.join()
        while True:
            with self._lock:
                if not self._pending:
                    self._running = False
                    return
                doc_id = next(iter(self._pending))
                job = self._pending.pop(doc_id)
            outcome = self._run(doc_id, job)
            if outcome is not None:
                with self._lock:
                    self._outcomes.append(outcome)
                self.relay.ready.emit()

    def _run(self, doc_id: str, job: Job) -> Outcome | None:
        try:
            if job is None:
                self.store.discard(doc_id)
                return None
            fresh = self.store.write(
                doc_id, job.text, path=job.path, title=job.title, last_saved=job.last_saved
            )
            return ("written", doc_id) if fresh else None
        except RecoveryError as error:
            return ("problem", f"Unsaved work could not be backed up: {error}")
        except OSError as error:  # from discard: the copy may be offered again next start
            return ("problem", f"An old recovery copy could not be removed: {error}")
        except Exception as error:  # a bug must not end the worker and stall every copy
            log.exception("recovery copy of %s failed", doc_id)
            return ("problem", f"Unsaved work could not be backed up: {error}")


class Autosaver(QObject):
    problem = Signal(str)  # recovery copies failed; a sentence for the writer
    written = Signal(str)  # doc_id of a fresh copy (tests and the status bar listen)

    def __init__(
        self,
        documents: DocumentController,
        store: RecoveryStore | None,
        *,
        interval_s: int,
        enabled: bool = True,
    ) -> None:
        super().__init__()
        self._documents = documents
        self._queue = _WriteQueue(store) if store is not None else None
        self._enabled = enabled
        self._stopped = False  # for good: see stop()
        self._told: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.write_now)
        self.set_interval(interval_s)
        if self._queue is not None:
            self._queue.relay.ready.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        document = documents.editor.document()
        document.contentsChanged.connect(self._arm)
        document.modificationChanged.connect(self._on_modification_changed)
        documents.discard_recovery.connect(self.discard)
        app = QCoreApplication.instance()
        if isinstance(app, QGuiApplication):
            app.applicationStateChanged.connect(self._on_app_state)
        if app is not None:
            # Quitting without closing the window first must not drop a queued copy.
            app.aboutToQuit.connect(self.flush)

    @property
    def active(self) -> bool:
        return self._enabled and not self._stopped and self._queue is not None

    def set_interval(self, seconds: int) -> None:
        self._timer.setInterval(max(1, seconds) * 1000)

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        if not enabled and self._queue is not None:
            self._timer.stop()
            self._queue.discard(self._documents.info.doc_id)

    def stop(self, timeout_ms: int = STOP_TIMEOUT_MS) -> bool:
        """The window closed: no more copies (its document was saved or let go).

        Final, unlike set_enabled(False): closing saves the window's settings, which
        would otherwise turn copies back on, and the window losing focus as it goes
        would then write the very work the writer just discarded.
        Waits up to timeout_ms for writes and discards already asked for, so the last
        request reaches the disk before the app goes; False if the disk did not finish.
        """
        self._timer.stop()
        self._stopped = True
        return self.flush(timeout_ms)

    @Slot()
    def flush(self, timeout_ms: int = STOP_TIMEOUT_MS) -> bool:
        """Wait (GUI thread, at most timeout_ms) until every queued write and discard is
        done and the writer thread has ended, then emit their `written` and `problem`
        signals. True if the queue is empty; False if the disk is still busy."""
        if self._queue is None:
            return True
        done = self._queue.wait(timeout_ms)
        self._deliver()  # now, rather than when the event loop gets to it
        return done

    def write_now(self) -> None:
        self._timer.stop()
        if not self.active:
            return
        assert self._queue is not None
        info = self._documents.info
        if not self._documents.is_modified():
            self._queue.discard(info.doc_id)
            return
        # Read the editor here, on the GUI thread; only this plain snapshot leaves it.
        snapshot = Snapshot(
            doc_id=info.doc_id,
            text=self._documents.text(),
            path=info.path,
            title=info.title,
            last_saved=info.last_saved,
        )
        self._queue.write(snapshot)

    def discard(self, doc_id: str) -> None:
        if self._queue is not None:
            # Queued behind any write still on its way, so that write cannot undo it.
            self._queue.discard(doc_id)

    @Slot()
    def _deliver(self) -> None:
        assert self._queue is not None
        for kind, detail in self._queue.take_outcomes():
            if kind == "written":
                self.written.emit(detail)
            elif detail not in self._told:  # once per reason, not every few seconds
                self._told.add(detail)
                self.problem.emit(detail)

    def _arm(self) -> None:
        if self.active and not self._timer.isActive():
            self._timer.start()

    def _on_modification_changed(self, modified: bool) -> None:
        if modified:
            self._arm()  # e.g. a restored document: unsaved from its first moment
        else:  # saved, or undone back to the saved text
            self._timer.stop()
            self.discard(self._documents.info.doc_id)

    def _on_app_state(self, state: Qt.ApplicationState) -> None:
        if state != Qt.ApplicationState.ApplicationActive:
            self.write_now()
