"""Keep a crash-recovery copy of unsaved work, a few seconds behind the writer.

The timer is a throttle, not a debounce: the first change after a copy arms it and
further typing does not push it back, so someone typing without pause still gets a copy
every `interval_s` seconds. A copy is also taken at once when the app loses focus (the
moment a writer walks away or another program might crash the session).
The copy is the document's text from `toPlainText()`: ghost text never reaches it.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication

from writer_app.documents.recovery import RecoveryError, RecoveryStore
from writer_app.ui.document_controller import DocumentController


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
        self._store = store
        self._enabled = enabled
        self._told: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.write_now)
        self.set_interval(interval_s)
        document = documents.editor.document()
        document.contentsChanged.connect(self._arm)
        document.modificationChanged.connect(self._on_modification_changed)
        documents.discard_recovery.connect(self.discard)
        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
            app.applicationStateChanged.connect(self._on_app_state)

    @property
    def active(self) -> bool:
        return self._enabled and self._store is not None

    def set_interval(self, seconds: int) -> None:
        self._timer.setInterval(max(1, seconds) * 1000)

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        if not enabled and self._store is not None:
            self._timer.stop()
            self._store.discard(self._documents.info.doc_id)

    def stop(self) -> None:
        """The window closed: no more copies (its document was saved or let go)."""
        self._timer.stop()
        self._enabled = False

    def write_now(self) -> None:
        self._timer.stop()
        if not self.active:
            return
        assert self._store is not None
        info = self._documents.info
        if not self._documents.is_modified():
            self._store.discard(info.doc_id)
            return
        try:
            fresh = self._store.write(
                info.doc_id,
                self._documents.text(),
                path=info.path,
                title=info.title,
                last_saved=info.last_saved,
            )
        except RecoveryError as error:
            if str(error) not in self._told:  # once per reason, not every few seconds
                self._told.add(str(error))
                self.problem.emit(f"Unsaved work could not be backed up: {error}")
            return
        if fresh:
            self.written.emit(info.doc_id)

    def discard(self, doc_id: str) -> None:
        if self._store is not None:
            self._store.discard(doc_id)

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
