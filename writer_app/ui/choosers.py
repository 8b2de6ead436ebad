"""Seams for the window's own pickers: files and fonts.

Like `Messenger` (dialogs.py), the window never opens a QFileDialog or QFontDialog
itself: it asks a `FileChooser` / `FontChooser`. The app passes the Qt ones; tests pass
the scripted ones, which answer from a queue and remember what they were asked, so no
test ever blocks on a modal dialog.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFileDialog, QFontDialog, QWidget

# Plain text and Markdown first; "All files" last so nothing is ever unreachable.
FILE_FILTERS = ";;".join(
    (
        "Text and Markdown (*.txt *.md *.markdown *.text)",
        "Plain text (*.txt *.text)",
        "Markdown (*.md *.markdown)",
        "All files (*)",
    )
)


class FileChooser:
    """Interface: ask the writer for a file to open or a place to save."""

    def open_path(self, parent: QWidget | None, start_dir: str) -> str | None:
        raise NotImplementedError

    def save_path(self, parent: QWidget | None, suggested: str) -> str | None:
        raise NotImplementedError


class QtFileChooser(FileChooser):
    def open_path(self, parent: QWidget | None, start_dir: str) -> str | None:
        path, _filter = QFileDialog.getOpenFileName(parent, "Open", start_dir, FILE_FILTERS)
        return path or None

    def save_path(self, parent: QWidget | None, suggested: str) -> str | None:
        path, _filter = QFileDialog.getSaveFileName(parent, "Save As", suggested, FILE_FILTERS)
        return path or None


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


class FontChooser:
    """Interface: ask the writer for a font, starting from `current`."""

    def choose_font(self, parent: QWidget | None, current: QFont) -> QFont | None:
        raise NotImplementedError


class QtFontChooser(FontChooser):
    def choose_font(self, parent: QWidget | None, current: QFont) -> QFont | None:
        accepted, font = QFontDialog.getFont(current, parent, "Editor font")
        return font if accepted else None


@dataclass
class ScriptedFontChooser(FontChooser):
    answers: deque[QFont | None] = field(default_factory=deque)

    def choose_font(self, parent: QWidget | None, current: QFont) -> QFont | None:
        assert self.answers, "the test did not script an answer for the font dialog"
        return self.answers.popleft()
