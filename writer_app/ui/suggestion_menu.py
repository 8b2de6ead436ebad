"""Edit ▸ Suggestions: when ghost text is offered, and the keys that work with it.

Every choice here is a setting (editor section), changed through the settings keeper,
so it persists and reaches the controller, which subscribes to the keeper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu

from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import EditorSettings, Settings
from writer_app.ui.dialogs import Messenger
from writer_app.ui.keymap import GhostAction, GhostKeymap

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

    def __init__(
        self,
        keeper: SettingsKeeper,
        messenger: Messenger,
        *,
        suggest_now: Callable[[], object],
        keymap: GhostKeymap,
        edit_menu: QMenu,
        help_menu: QMenu,
    ) -> None:
        self._keeper = keeper
        menu = edit_menu.addMenu("S&uggestions")
        self.menu = menu

        now = QAction(f"Suggest Now\t{keymap.shortcut_text(GhostAction.TRIGGER)}", menu)
        now.triggered.connect(suggest_now)
        menu.addAction(now)
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

        keys = QAction("&Keyboard Shortcuts…", help_menu)
        keys.triggered.connect(lambda: messenger.info("Keyboard shortcuts", shortcuts_text(keymap)))
        help_menu.insertAction(help_menu.actions()[0], keys)
        self.keys_action = keys

        keeper.subscribe(self.sync)

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
