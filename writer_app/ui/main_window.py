"""The main window: the editor in the middle, menus, status bar, docks, focus mode.

The composition root (app.py) builds the editor (any QPlainTextEdit; the app passes the
ghost-text editor), the settings keeper and the recovery store, and hands them in; then
it fills `model_menu`, adds panels with `add_dock`, and calls `start()`:

    window = MainWindow(editor, keeper=keeper, recovery=recovery, messenger=messenger)
    window.model_menu.addAction(...)
    window.add_dock(sampling_dock)
    window.start(args.file)

The pieces live in their own files: documents (document_controller.py), crash-recovery
copies (autosave.py), the look of the text (view_options.py), find and replace,
status bar and notices (status_bar.py), and the recovery dialog.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from PySide6.QtCore import QByteArray, QEvent, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QPlainTextEdit, QToolBar, QWidget

from writer_app import __version__
from writer_app.documents.recovery import RecoveryStore
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import Settings
from writer_app.ui.autosave import Autosaver
from writer_app.ui.choosers import FileChooser, FontChooser, QtFileChooser, QtFontChooser
from writer_app.ui.dialogs import Messenger
from writer_app.ui.document_controller import DocumentController, DocumentInfo
from writer_app.ui.find_replace import FindReplaceBar
from writer_app.ui.menus import build_menus
from writer_app.ui.recovery_dialog import QtRecoveryChooser, RecoveryChooser
from writer_app.ui.status_bar import NoticeBar, StatusBar, WordCounter
from writer_app.ui.view_options import EditorLook

APP_TITLE = "writer-app"


@dataclass
class _FocusModeState:
    was_full_screen: bool
    hidden: list[QWidget]  # panels and bars that were visible before focus mode


class MainWindow(QMainWindow):
    closed = Signal()  # the writer closed the window and nothing was left unsaved

    def __init__(
        self,
        editor: QPlainTextEdit,
        *,
        keeper: SettingsKeeper,
        recovery: RecoveryStore | None,
        messenger: Messenger,
        file_chooser: FileChooser | None = None,
        font_chooser: FontChooser | None = None,
        recovery_chooser: RecoveryChooser | None = None,
        startup_notices: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.editor = editor
        self.messenger = messenger
        self.recovery = recovery
        self.font_chooser = font_chooser or QtFontChooser()
        self.recovery_chooser = recovery_chooser or QtRecoveryChooser()
        self._startup_notices = startup_notices
        self._focus_mode: _FocusModeState | None = None
        self.keeper = keeper
        keeper.saveFailed.connect(lambda reason: messenger.warning("Settings not saved", reason))
        self.documents = DocumentController(
            editor,
            messenger=messenger,
            file_chooser=file_chooser or QtFileChooser(),
            settings=self.keeper,
            dialog_parent=self,
        )
        privacy = keeper.current.privacy
        self.autosaver = Autosaver(
            self.documents,
            recovery,
            interval_s=privacy.recovery_interval_s,
            enabled=privacy.crash_recovery,
        )
        for helper in (self.documents, self.autosaver):
            helper.setParent(self)  # they live and die with the window
        self.setCentralWidget(editor)
        self.look = EditorLook(editor, self.keeper)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.word_counter = WordCounter(editor, self.status.count_label)
        self.notice_bar = NoticeBar(self)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.notice_bar)
        self.find_bar = FindReplaceBar(editor, self)
        self.addToolBar(Qt.ToolBarArea.BottomToolBarArea, self.find_bar)
        self.menus = build_menus(self)
        self.model_menu = self.menus.model
        self.view_menu = self.menus.view

        self.documents.info_changed.connect(self._show_title)
        self.documents.notice.connect(self.notice_bar.show_notice)
        self.autosaver.problem.connect(self.notice_bar.show_notice)
        editor.document().modificationChanged.connect(self.setWindowModified)
        self.keeper.subscribe(self._on_settings_changed)
        self._show_title(self.documents.info)
        self.resize(1100, 760)

    # ----- for the composition root --------------------------------------------------

    def start(self, open_path: str | None = None) -> None:
        """Restore the window, show it, open a document, offer crashed work back."""
        window = self.keeper.current.window
        if window.geometry:
            self.restoreGeometry(QByteArray.fromBase64(window.geometry.encode("ascii")))
        if window.state:
            self.restoreState(QByteArray.fromBase64(window.state.encode("ascii")))
        self.show()
        for notice in self._startup_notices:
            self.messenger.warning("writer-app", notice)
        if open_path:
            if os.path.exists(open_path):
                self.documents.open_path(open_path, ask_first=False)
            else:  # a name for a new file, as in `writer-app notes.txt`
                self.documents.new_document_at(open_path)
        elif self._should_reopen(window.last_document):
            self.documents.open_path(window.last_document, ask_first=False)  # type: ignore[arg-type]
        self.offer_recovery(quiet=True)

    def add_dock(
        self,
        dock: QDockWidget,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
        *,
        visible: bool = True,
    ) -> QAction:
        """Add a panel; its show/hide toggle goes into the View menu and is returned."""
        if not dock.objectName():  # saveState/restoreState find docks by name
            dock.setObjectName("dock_" + "_".join(dock.windowTitle().lower().split()))
        self.addDockWidget(area, dock)
        dock.setVisible(visible)
        toggle = dock.toggleViewAction()
        self.menus.panels_section.addAction(toggle)
        self.addAction(toggle)  # shortcuts keep working while the menu bar is hidden
        return toggle

    def set_model_text(self, text: str, details: str = "") -> None:
        self.status.set_model_text(text, details)

    def set_engine_state(self, text: str) -> None:
        self.status.set_engine_state(text)

    # ----- commands the menus call ---------------------------------------------------

    def offer_recovery(self, *, quiet: bool = False) -> None:
        if self.recovery is None:
            if not quiet:
                self.messenger.info("Recover unsaved work", "Crash recovery is turned off.")
            return
        entries = self.recovery.list()
        if not entries:
            if not quiet:
                self.status.showMessage("There is no unsaved work to recover.", 5000)
            return
        decision = self.recovery_chooser.choose(self, entries, self.messenger)
        for doc_id in decision.discard:
            self.recovery.discard(doc_id)
        if decision.restore and self.documents.keep_or_discard_changes("restoring"):
            entry = self.recovery.claim(decision.restore)
            if entry is not None:
                self.documents.restore(entry)

    def choose_font(self) -> None:
        font = self.font_chooser.choose_font(self, self.look.base_font())
        if font is not None:
            self.look.set_font(font)

    def set_full_screen(self, on: bool) -> None:
        if on:
            self.showFullScreen()
        else:
            self.showNormal()
        self.menus.full_screen.setChecked(on)

    def set_focus_mode(self, on: bool) -> None:
        """Only the text: no menus, status bar, panels; full screen; Esc leaves."""
        if on == (self._focus_mode is not None):
            return
        if on:
            bars = [w for w in self.findChildren(QToolBar) if w.parent() is self]
            docks = [w for w in self.findChildren(QDockWidget) if w.parent() is self]
            hidden = [w for w in (*bars, *docks) if not w.isHidden()]
            self._focus_mode = _FocusModeState(self.isFullScreen(), hidden)
            for widget in (*hidden, self.menuBar(), self.status):
                widget.hide()
            self.look.set_focus_layout(True)
            self.set_full_screen(True)
        else:
            state, self._focus_mode = self._focus_mode, None
            assert state is not None
            for widget in (*state.hidden, self.menuBar(), self.status):
                widget.show()
            self.look.set_focus_layout(False)
            self.set_full_screen(state.was_full_screen)
        self.menus.focus_mode.setChecked(on)
        self.editor.setFocus()

    def in_focus_mode(self) -> bool:
        return self._focus_mode is not None

    def show_about(self) -> None:
        self.messenger.info(
            f"About {APP_TITLE}",
            f"{APP_TITLE} {__version__}\n\nA writing assistant: a GPT-2 model on this "
            "computer suggests how your sentence could go on. Tab accepts a suggestion; "
            "your text never leaves this computer.",
        )

    # ----- Qt events -----------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.documents.keep_or_discard_changes("closing"):
            event.ignore()
            return
        self.set_focus_mode(False)  # never remember the panels as hidden by focus mode
        self.autosaver.stop()
        self._remember_window()
        event.accept()
        self.closed.emit()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.ActivationChange:
            if self.isActiveWindow():
                self.documents.check_disk()  # back: did another program change the file?
            else:
                self.autosaver.write_now()  # the writer went elsewhere: keep a fresh copy
        super().changeEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Reached only when the editor did not use Esc (e.g. to dismiss ghost text).
        if event.key() == Qt.Key.Key_Escape and self.in_focus_mode():
            self.set_focus_mode(False)
            return
        super().keyPressEvent(event)

    # ----- internals -----------------------------------------------------------------

    def _show_title(self, info: DocumentInfo) -> None:
        self.setWindowTitle(f"{info.title}[*] — {APP_TITLE}")
        self.setWindowFilePath(info.path or "")
        self.setWindowModified(self.documents.is_modified())

    def _remember_window(self) -> None:
        geometry = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        state = bytes(self.saveState().toBase64().data()).decode("ascii")
        remember = self.keeper.current.privacy.remember_recent_files
        last = self.documents.info.path if remember else None

        def with_window(settings: Settings) -> Settings:
            window = replace(settings.window, geometry=geometry, state=state, last_document=last)
            return replace(settings, window=window)

        self.keeper.update(with_window)

    def _should_reopen(self, path: str | None) -> bool:
        remember = self.keeper.current.privacy.remember_recent_files
        return bool(path) and remember and os.path.isfile(path)  # type: ignore[arg-type]

    def _on_settings_changed(self, settings: Settings) -> None:
        self.autosaver.set_interval(settings.privacy.recovery_interval_s)
        if settings.privacy.crash_recovery != self.autosaver.active and self.recovery:
            self.autosaver.set_enabled(settings.privacy.crash_recovery)
        self.menus.sync(settings)
