"""A main window wired to the real settings file and recovery folder (in tmp_path), with
every dialog answered by a script. Import the `window_harness` fixture into a test file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from PySide6.QtWidgets import QPlainTextEdit

from tests.support.scripted import (
    ScriptedFileChooser,
    ScriptedFontChooser,
    ScriptedMessenger,
    ScriptedRecoveryChooser,
)
from writer_app.documents.recovery import RecoveryStore
from writer_app.paths import AppPaths
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import Settings, SettingsStore, Theme
from writer_app.ui.main_window import MainWindow
from writer_app.ui.themes import apply_theme


@dataclass
class Harness:
    window: MainWindow
    editor: QPlainTextEdit
    messenger: ScriptedMessenger
    files: ScriptedFileChooser
    fonts: ScriptedFontChooser
    recovery_chooser: ScriptedRecoveryChooser
    store: SettingsStore
    recovery: RecoveryStore
    windows: list[MainWindow] = field(default_factory=list)

    def type(self, text: str) -> None:
        """Insert text where the cursor is, as typing would (one undoable edit)."""
        self.editor.insertPlainText(text)


WindowFactory = Callable[..., Harness]


@pytest.fixture
def make_window(qtbot, app_home: AppPaths) -> Iterator[WindowFactory]:
    """make_window(settings=None, editor=None) -> Harness, sharing one settings file."""
    made: list[Harness] = []

    def make(
        settings: Settings | None = None,
        editor: QPlainTextEdit | None = None,
        start: bool = True,
        open_path: str | None = None,
    ) -> Harness:
        store = SettingsStore.for_paths(app_home)
        if settings is None:
            settings = store.load().settings
        editor = editor if editor is not None else QPlainTextEdit()
        harness = Harness(
            window=None,  # type: ignore[arg-type]
            editor=editor,
            messenger=ScriptedMessenger(),
            files=ScriptedFileChooser(),
            fonts=ScriptedFontChooser(),
            recovery_chooser=ScriptedRecoveryChooser(),
            store=store,
            recovery=RecoveryStore.for_paths(app_home),
        )
        harness.window = MainWindow(
            editor,
            keeper=SettingsKeeper(settings, store),
            recovery=harness.recovery,
            messenger=harness.messenger,
            file_chooser=harness.files,
            font_chooser=harness.fonts,
            recovery_chooser=harness.recovery_chooser,
        )
        if start:
            harness.window.start(open_path)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        # Tests that leave work unsaved have already checked what they wanted.
        harness.editor.document().setModified(False)
        harness.window.close()
        harness.window.deleteLater()
        harness.recovery.close()
    apply_theme(Theme.SYSTEM)  # the palette is app-wide; never leak a theme to other tests


@pytest.fixture
def window_harness(make_window: WindowFactory) -> Harness:
    return make_window()
