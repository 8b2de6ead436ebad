"""The main window's menus and actions, with platform-standard shortcuts.

Every action is also added to the window itself, so its shortcut still works while the
menu bar is hidden (focus mode). Shortcuts come from QKeySequence.StandardKey wherever
one exists, so each platform gets the keys its writers expect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QPlainTextEdit

from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import Settings, Theme
from writer_app.ui.document_controller import DocumentController
from writer_app.ui.find_replace import FindReplaceBar
from writer_app.ui.view_options import EditorLook

Key = QKeySequence.StandardKey
THEME_NAMES = {Theme.SYSTEM: "Follow the system", Theme.LIGHT: "Light", Theme.DARK: "Dark"}


@dataclass
class WindowMenus:
    file: QMenu
    edit: QMenu
    model: QMenu  # filled by the composition root
    view: QMenu
    help: QMenu
    recent: QMenu
    actions: dict[str, QAction]
    themes: dict[Theme, QAction]

    @property
    def full_screen(self) -> QAction:
        return self.actions["full_screen"]

    @property
    def focus_mode(self) -> QAction:
        return self.actions["focus_mode"]

    @property
    def panels_section(self) -> QMenu:
        return self.view  # panel toggles go at the end of View, after a separator

    def sync(self, settings: Settings) -> None:
        """Make check marks and the recent list match `settings`."""
        self.actions["line_wrap"].setChecked(settings.editor.line_wrap)
        self.themes[settings.editor.theme].setChecked(True)
        self._fill_recent(settings.window.recent_files)

    def _fill_recent(self, paths: tuple[str, ...]) -> None:
        for action in self.recent.actions():
            if action is not self.actions["clear_recent"]:
                self.recent.removeAction(action)
                action.deleteLater()
        clear = self.actions["clear_recent"]
        for number, path in enumerate(paths, start=1):
            # Numbered 1-9 then 0, like most editors; "&&" shows a literal "&".
            label = f"&{number % 10} {Path(path).name.replace('&', '&&')}"
            action = QAction(label, self.recent)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setData(path)
            self.recent.insertAction(clear, action)
        if paths:
            self.recent.insertSeparator(clear)
        clear.setEnabled(bool(paths))


class MenuHost(Protocol):
    """What the menus act on: the main window's parts and commands (the window passes
    itself; naming only these keeps menus.py from depending on main_window.py)."""

    documents: DocumentController
    editor: QPlainTextEdit
    look: EditorLook
    find_bar: FindReplaceBar
    keeper: SettingsKeeper

    def menuBar(self) -> QMenuBar: ...  # noqa: N802 (Qt's name)
    def addAction(self, action: QAction) -> None: ...  # noqa: N802 (Qt's name)
    def close(self) -> bool: ...
    def offer_recovery(self, *, quiet: bool = False) -> None: ...
    def choose_font(self) -> None: ...
    def set_full_screen(self, on: bool) -> None: ...
    def set_focus_mode(self, on: bool) -> None: ...
    def show_about(self) -> None: ...


def build_menus(window: MenuHost) -> WindowMenus:
    bar = window.menuBar()
    docs, editor, look = window.documents, window.editor, window.look
    actions: dict[str, QAction] = {}

    def add(
        menu: QMenu,
        name: str,
        text: str,
        slot: Callable[..., object],
        *keys: QKeySequence | Key | str,
        checkable: bool = False,
    ) -> QAction:
        action = QAction(text, window)
        action.setShortcuts(shortcuts(*keys))
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        menu.addAction(action)
        window.addAction(action)
        actions[name] = action
        return action

    file = bar.addMenu("&File")
    add(file, "new", "&New", docs.new_document, Key.New)
    add(file, "open", "&Open…", docs.open_dialog, Key.Open)
    recent = file.addMenu("Open &Recent")
    clear = QAction("Clear Recent Files", window)
    clear.triggered.connect(lambda: _clear_recent(window))
    recent.addAction(clear)
    actions["clear_recent"] = clear
    recent.triggered.connect(
        lambda action: action.data() and docs.open_path(action.data())  # type: ignore[arg-type]
    )
    file.addSeparator()
    add(file, "save", "&Save", docs.save, Key.Save)
    add(file, "save_as", "Save &As…", docs.save_as, Key.SaveAs, "Ctrl+Shift+S")
    file.addSeparator()
    add(file, "recover", "Recover Unsaved &Work…", window.offer_recovery)
    file.addSeparator()
    quit_action = add(file, "quit", "&Quit", window.close, Key.Quit, "Ctrl+Q")
    quit_action.setMenuRole(QAction.MenuRole.QuitRole)

    edit = bar.addMenu("&Edit")
    undo = add(edit, "undo", "&Undo", editor.undo, Key.Undo)
    redo = add(edit, "redo", "&Redo", editor.redo, Key.Redo)
    edit.addSeparator()
    cut = add(edit, "cut", "Cu&t", editor.cut, Key.Cut)
    copy = add(edit, "copy", "&Copy", editor.copy, Key.Copy)
    add(edit, "paste", "&Paste", editor.paste, Key.Paste)
    add(edit, "select_all", "Select &All", editor.selectAll, Key.SelectAll)
    edit.addSeparator()
    find_bar = window.find_bar
    add(edit, "find", "&Find…", find_bar.show_find, Key.Find)
    add(edit, "find_next", "Find &Next", find_bar.find_next, Key.FindNext)
    add(edit, "find_previous", "Find Pre&vious", find_bar.find_previous, Key.FindPrevious)
    add(edit, "replace", "R&eplace…", find_bar.show_replace, Key.Replace, "Ctrl+H")
    undo.setEnabled(editor.document().isUndoAvailable())
    redo.setEnabled(editor.document().isRedoAvailable())
    editor.undoAvailable.connect(undo.setEnabled)
    editor.redoAvailable.connect(redo.setEnabled)
    for action in (cut, copy):
        action.setEnabled(False)
        editor.copyAvailable.connect(action.setEnabled)

    model = bar.addMenu("&Model")

    view = bar.addMenu("&View")
    add(view, "zoom_in", "Zoom &In", look.zoom_in, Key.ZoomIn, "Ctrl+=")
    add(view, "zoom_out", "Zoom &Out", look.zoom_out, Key.ZoomOut, "Ctrl+-")
    add(view, "zoom_reset", "&Actual Size", look.reset_zoom, "Ctrl+0")
    add(view, "font", "&Font…", window.choose_font)
    add(view, "line_wrap", "&Wrap Lines", look.set_line_wrap, checkable=True)
    theme_menu = view.addMenu("&Theme")
    group = QActionGroup(window)
    themes: dict[Theme, QAction] = {}
    for theme, name in THEME_NAMES.items():
        action = QAction(name, group, checkable=True)
        action.triggered.connect(lambda _checked=False, t=theme: look.set_theme(t))
        theme_menu.addAction(action)
        themes[theme] = action
    view.addSeparator()
    add(
        view,
        "full_screen",
        "F&ull Screen",
        window.set_full_screen,
        Key.FullScreen,
        "F11",
        checkable=True,
    )
    # Shift+F11 as in Sublime Text's distraction-free mode; Esc also leaves it.
    add(view, "focus_mode", "F&ocus Mode", window.set_focus_mode, "Shift+F11", checkable=True)
    view.addSeparator()

    help_menu = bar.addMenu("&Help")
    about = add(help_menu, "about", "&About writer-app", window.show_about)
    about.setMenuRole(QAction.MenuRole.AboutRole)

    menus = WindowMenus(file, edit, model, view, help_menu, recent, actions, themes)
    menus.sync(window.keeper.current)
    return menus


def shortcuts(*keys: QKeySequence | Key | str) -> list[QKeySequence]:
    """All of the platform's bindings for each standard key, then the extras, once each.

    QKeySequence(StandardKey) would keep only the first binding of a standard key.
    """
    found: list[QKeySequence] = []
    for key in keys:
        bindings = QKeySequence.keyBindings(key) if isinstance(key, Key) else [QKeySequence(key)]
        found += [b for b in bindings if not b.isEmpty() and b not in found]
    return found


def _clear_recent(window: MenuHost) -> None:
    window.keeper.update(
        lambda settings: replace(settings, window=replace(settings.window, recent_files=()))
    )
