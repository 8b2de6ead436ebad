"""Edit ▸ Suggestions: when ghost text is offered, and the keys that work with it.

Every choice here is a setting (editor section), changed through the window's keeper,
so it persists and reaches the controller through the app's settings wiring.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup

from writer_app.settings import EditorSettings, Settings
from writer_app.ui.keymap import GhostAction, GhostKeymap

if TYPE_CHECKING:
    from writer_app.app import WriterApp

PAUSES_MS = (150, 300, 500, 800, 1200)

_KEY_HELP = (
    (GhostAction.ACCEPT_ALL, "accept the whole suggestion"),
    (GhostAction.ACCEPT_WORD, "accept the next word"),
    (GhostAction.ACCEPT_SENTENCE, "accept to the end of the sentence or line"),
    (GhostAction.DISMISS, "dismiss it (or just keep typing)"),
    (GhostAction.NEXT_ALTERNATIVE, "next alternative"),
    (GhostAction.PREVIOUS_ALTERNATIVE, "previous alternative"),
    (GhostAction.TRIGGER, "suggest now"),
    (GhostAction.RETRY, "a fresh suggestion"),
)


def shortcuts_text(keymap: GhostKeymap) -> str:
    lines = [f"{keymap.shortcut_text(action)}\t{what}" for action, what in _KEY_HELP]
    lines.append("Ctrl+Z\tan accepted suggestion is one undo step")
    return "\n".join(lines)


class SuggestionMenu:
    """Builds the submenu and keeps its check marks in step with the settings."""

    def __init__(self, writer_app: WriterApp) -> None:
        window = writer_app.window
        self._keeper = window.keeper
        menu = window.menus.edit.addMenu("S&uggestions")
        self.menu = menu
        keymap = writer_app.editor.keymap

        suggest_now = QAction(f"Suggest Now\t{keymap.shortcut_text(GhostAction.TRIGGER)}", menu)
        suggest_now.triggered.connect(writer_app.controller.trigger)
        menu.addAction(suggest_now)
        menu.addSeparator()
        self.automatic = self._toggle("&Automatic Suggestions", "autosuggest")
        self.mid_word = self._toggle("Suggest in the &Middle of Words", "suggest_mid_word")
        self.ignore_after = self._toggle(
            "&Ignore Text After the Cursor", "ignore_text_after_cursor"
        )
        pause_menu = menu.addMenu("Typing &Pause Before Suggesting")
        group = QActionGroup(menu)
        self.pauses: dict[int, QAction] = {}
        for pause in PAUSES_MS:
            action = QAction(f"{pause} ms", group, checkable=True)
            action.triggered.connect(lambda _=False, ms=pause: self._set(debounce_ms=ms))
            pause_menu.addAction(action)
            self.pauses[pause] = action

        keys = QAction("&Keyboard Shortcuts…", window)
        keys.triggered.connect(
            lambda: window.messenger.info("Keyboard shortcuts", shortcuts_text(keymap))
        )
        window.menus.help.insertAction(window.menus.help.actions()[0], keys)
        self.keys_action = keys

        self._keeper.changed.connect(self.sync)
        self.sync(self._keeper.current)

    def _toggle(self, text: str, field: str) -> QAction:
        action = QAction(text, self.menu, checkable=True)
        action.triggered.connect(lambda checked: self._set(**{field: checked}))
        self.menu.addAction(action)
        return action

    def _set(self, **changes: object) -> None:
        self._keeper.update(lambda s: replace(s, editor=replace(s.editor, **changes)))

    def sync(self, settings: Settings) -> None:
        editor: EditorSettings = settings.editor
        self.automatic.setChecked(editor.autosuggest)
        self.mid_word.setChecked(editor.suggest_mid_word)
        self.ignore_after.setChecked(editor.ignore_text_after_cursor)
        for pause, action in self.pauses.items():
            action.setChecked(pause == editor.debounce_ms)
