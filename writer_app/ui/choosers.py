"""Seams for the window's own pickers: files and fonts.

Like `Messenger` (dialogs.py), the window never opens a QFileDialog or QFontDialog
itself: it asks a `FileChooser` / `FontChooser`. The app passes the Qt ones; tests pass
the scripted ones (tests/support/scripted.py), which answer from a queue and remember
what they were asked, so no test ever blocks on a modal dialog.
"""

from __future__ import annotations

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


class FontChooser:
    """Interface: ask the writer for a font, starting from `current`."""

    def choose_font(self, parent: QWidget | None, current: QFont) -> QFont | None:
        raise NotImplementedError


class QtFontChooser(FontChooser):
    def choose_font(self, parent: QWidget | None, current: QFont) -> QFont | None:
        accepted, font = QFontDialog.getFont(current, parent, "Editor font")
        return font if accepted else None
