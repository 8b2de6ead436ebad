"""Which key does what to the ghost text, per platform.

On macOS Qt reports the Command key as ControlModifier and the real Control key as
MetaModifier, and word moves use Option (AltModifier). So:

    action               Windows / Linux      macOS
    accept all           Tab                  Tab
    accept next word     Ctrl+Right           Option+Right
    accept sentence      Shift+Tab            Shift+Tab
    dismiss              Esc                  Esc
    next / previous      Alt+] / Alt+[        Option+] / Option+[
    suggest now          Ctrl+Space           Control+Space (Cmd+Space is Spotlight)
    retry, new seed      Ctrl+Shift+Space     Control+Shift+Space
"""

from __future__ import annotations

import sys
from enum import Enum

from PySide6.QtCore import QKeyCombination, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence


class GhostAction(Enum):
    ACCEPT_ALL = "accept_all"
    ACCEPT_WORD = "accept_word"
    ACCEPT_SENTENCE = "accept_sentence"
    DISMISS = "dismiss"
    NEXT_ALTERNATIVE = "next_alternative"
    PREVIOUS_ALTERNATIVE = "previous_alternative"
    TRIGGER = "trigger"
    RETRY = "retry"


KM = Qt.KeyboardModifier
# Modifiers that say where a key is or which layout group is active, not what was meant.
_IGNORED_MODIFIERS = KM.KeypadModifier | KM.GroupSwitchModifier


def _chord(key: Qt.Key, modifiers: KM = KM.NoModifier) -> tuple[int, int]:
    return (int(key.value), int(modifiers.value))


class GhostKeymap:
    def __init__(self, bindings: dict[tuple[int, int], GhostAction]) -> None:
        self._bindings = dict(bindings)

    @classmethod
    def for_platform(cls, platform: str = sys.platform) -> GhostKeymap:
        mac = platform == "darwin"
        word_modifier = KM.AltModifier if mac else KM.ControlModifier
        # Qt's Meta is the physical Control key on macOS.
        trigger_modifier = KM.MetaModifier if mac else KM.ControlModifier
        return cls(
            {
                _chord(Qt.Key.Key_Tab): GhostAction.ACCEPT_ALL,
                _chord(Qt.Key.Key_Right, word_modifier): GhostAction.ACCEPT_WORD,
                _chord(Qt.Key.Key_Tab, KM.ShiftModifier): GhostAction.ACCEPT_SENTENCE,
                # ...which most platforms deliver as Backtab, with or without Shift.
                _chord(Qt.Key.Key_Backtab, KM.ShiftModifier): GhostAction.ACCEPT_SENTENCE,
                _chord(Qt.Key.Key_Backtab): GhostAction.ACCEPT_SENTENCE,
                _chord(Qt.Key.Key_Escape): GhostAction.DISMISS,
                _chord(Qt.Key.Key_BracketRight, KM.AltModifier): GhostAction.NEXT_ALTERNATIVE,
                _chord(Qt.Key.Key_BracketLeft, KM.AltModifier): GhostAction.PREVIOUS_ALTERNATIVE,
                _chord(Qt.Key.Key_Space, trigger_modifier): GhostAction.TRIGGER,
                _chord(Qt.Key.Key_Space, trigger_modifier | KM.ShiftModifier): GhostAction.RETRY,
            }
        )

    def action_for(self, key: int, modifiers: KM) -> GhostAction | None:
        modifiers = modifiers & ~_IGNORED_MODIFIERS
        return self._bindings.get((int(key), int(modifiers.value)))

    def action_for_event(self, event: QKeyEvent) -> GhostAction | None:
        return self.action_for(event.key(), event.modifiers())

    def shortcut_text(self, action: GhostAction) -> str:
        """The first key bound to `action`, as the platform writes it (for tooltips)."""
        for (key, modifiers), bound in self._bindings.items():
            if bound is action:
                combination = QKeyCombination(KM(modifiers), Qt.Key(key))
                return QKeySequence(combination).toString(QKeySequence.SequenceFormat.NativeText)
        return ""
