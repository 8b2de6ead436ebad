"""The one seam through which the app tells or asks the writer something.

Widgets never call QMessageBox directly: they get a `Messenger`. The app passes
`QtMessenger`; tests pass `ScriptedMessenger` (tests/support/scripted.py), which records
every message and answers questions from a script, so no test ever blocks on a modal
dialog.
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtWidgets import QMessageBox, QWidget


class Choice(str, Enum):
    YES = "yes"
    NO = "no"
    SAVE = "save"
    DISCARD = "discard"
    CANCEL = "cancel"
    RETRY = "retry"
    OK = "ok"


_BUTTONS = {
    Choice.YES: QMessageBox.StandardButton.Yes,
    Choice.NO: QMessageBox.StandardButton.No,
    Choice.SAVE: QMessageBox.StandardButton.Save,
    Choice.DISCARD: QMessageBox.StandardButton.Discard,
    Choice.CANCEL: QMessageBox.StandardButton.Cancel,
    Choice.RETRY: QMessageBox.StandardButton.Retry,
    Choice.OK: QMessageBox.StandardButton.Ok,
}


class Messenger:
    """Interface: tell (info/warning/error) and ask (a question with choices)."""

    def info(self, title: str, text: str) -> None:
        raise NotImplementedError

    def warning(self, title: str, text: str) -> None:
        raise NotImplementedError

    def error(self, title: str, text: str) -> None:
        raise NotImplementedError

    def ask(self, title: str, text: str, choices: list[Choice], default: Choice) -> Choice:
        raise NotImplementedError


class QtMessenger(Messenger):
    def __init__(self, parent: QWidget | None = None) -> None:
        self._parent = parent

    def set_parent(self, parent: QWidget) -> None:
        self._parent = parent

    def info(self, title: str, text: str) -> None:
        QMessageBox.information(self._parent, title, text)

    def warning(self, title: str, text: str) -> None:
        QMessageBox.warning(self._parent, title, text)

    def error(self, title: str, text: str) -> None:
        QMessageBox.critical(self._parent, title, text)

    def ask(self, title: str, text: str, choices: list[Choice], default: Choice) -> Choice:
        buttons = QMessageBox.StandardButton.NoButton
        for choice in choices:
            buttons |= _BUTTONS[choice]
        answer = QMessageBox.question(self._parent, title, text, buttons, _BUTTONS[default])
        for choice, button in _BUTTONS.items():
            if answer == button:
                return choice
        return Choice.CANCEL  # dialog closed with the window's close button
