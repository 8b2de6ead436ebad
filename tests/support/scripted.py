"""Scripted stand-ins for every dialog the app can open, so tests never meet a modal.

Each one implements the seam its ui/ module defines (Messenger, FileChooser, ...): it
answers from a queue the test fills and records what it was asked. The composition
root takes them through WriterApp.build(...), and MainWindow through its arguments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QWidget

from writer_app.documents.recovery import RecoveryEntry
from writer_app.ui.choosers import FileChooser, FontChooser
from writer_app.ui.dialogs import Choice, Messenger
from writer_app.ui.model_manager import ModelChooser
from writer_app.ui.recovery_dialog import RecoveryChooser, RecoveryDecision
from writer_app.ui.sampling_panel import NameAsker


@dataclass
class ScriptedMessenger(Messenger):
    """For tests: records messages; answers questions from `answers` (else the default)."""

    answers: deque[Choice] = field(default_factory=deque)
    log: list[tuple[str, str, str]] = field(default_factory=list)

    def info(self, title: str, text: str) -> None:
        self.log.append(("info", title, text))

    def warning(self, title: str, text: str) -> None:
        self.log.append(("warning", title, text))

    def error(self, title: str, text: str) -> None:
        self.log.append(("error", title, text))

    def ask(self, title: str, text: str, choices: list[Choice], default: Choice) -> Choice:
        self.log.append(("ask", title, text))
        answer = self.answers.popleft() if self.answers else default
        assert answer in choices, f"scripted answer {answer} is not one of {choices}"
        return answer

    def texts(self, kind: str | None = None) -> list[str]:
        return [text for k, _title, text in self.log if kind is None or k == kind]


@dataclass
class ScriptedFileChooser(FileChooser):
    """For tests: answers from `answers` (None = the writer cancelled); records requests."""

    answers: deque[str | None] = field(default_factory=deque)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def open_path(self, parent: QWidget | None, start_dir: str) -> str | None:
        self.asked.append(("open", start_dir))
        return self._next()

    def save_path(self, parent: QWidget | None, suggested: str) -> str | None:
        self.asked.append(("save", suggested))
        return self._next()

    def _next(self) -> str | None:
        assert self.answers, "the test did not script an answer for this file dialog"
        return self.answers.popleft()


@dataclass
class ScriptedFontChooser(FontChooser):
    answers: deque[QFont | None] = field(default_factory=deque)

    def choose_font(self, parent: QWidget | None, current: QFont) -> QFont | None:
        assert self.answers, "the test did not script an answer for the font dialog"
        return self.answers.popleft()


@dataclass
class ScriptedRecoveryChooser(RecoveryChooser):
    """For tests: each answer is a function of the offered entries; records the offers."""

    answers: deque[Callable[[list[RecoveryEntry]], RecoveryDecision]] = field(default_factory=deque)
    offered: list[list[RecoveryEntry]] = field(default_factory=list)

    def choose(
        self, parent: QWidget | None, entries: list[RecoveryEntry], messenger: Messenger
    ) -> RecoveryDecision:
        self.offered.append(entries)
        return self.answers.popleft()(entries) if self.answers else RecoveryDecision()


@dataclass
class ScriptedModelChooser(ModelChooser):
    """For tests: answers from `answers` (None = the writer cancelled); records requests."""

    answers: deque[str | None] = field(default_factory=deque)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def model_file(self, parent: QWidget | None, start_dir: str) -> str | None:
        self.asked.append(("model_file", start_dir))
        return self._next()

    def folder(self, parent: QWidget | None, start_dir: str) -> str | None:
        self.asked.append(("folder", start_dir))
        return self._next()

    def _next(self) -> str | None:
        assert self.answers, "the test did not script an answer for this chooser"
        return self.answers.popleft()


@dataclass
class ScriptedNameAsker(NameAsker):
    """For tests: answers from `answers` (None = cancelled)."""

    answers: deque[str | None] = field(default_factory=deque)

    def ask_name(self, parent: QWidget | None, title: str, label: str, default: str) -> str | None:
        assert self.answers, "the test did not script an answer for the name dialog"
        return self.answers.popleft()
