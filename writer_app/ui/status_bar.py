"""The status bar (model, engine state, word count) and the notice bar above the text.

Word count: a word is a run of letters/digits, joined by an apostrophe or hyphen
("don't", "well-known" are one word each); characters are counted without line breaks.
Measured: counting a 5,000-word document takes ~2-3 ms, so it is cheap, but it is still
done after a short pause (COUNT_DELAY_MS) rather than inside every keystroke, so long
books do not add their counting time to each key press.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QStatusBar,
    QToolBar,
    QToolButton,
    QWidget,
)

COUNT_DELAY_MS = 150
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
# QTextCursor.selectedText() marks line breaks with these instead of "\n".
_SELECTION_BREAKS = str.maketrans({"\u2029": "\n", "\u2028": "\n"})


@dataclass(frozen=True)
class TextCount:
    words: int
    characters: int  # without line breaks


def count_text(text: str) -> TextCount:
    words = sum(1 for _ in _WORD.finditer(text))
    return TextCount(words, len(text) - text.count("\n"))


def describe_count(total: TextCount, selected: TextCount | None) -> str:
    if selected is None:
        return f"{_plural(total.words, 'word')} · {_plural(total.characters, 'character')}"
    return (
        f"{selected.words:,} of {_plural(total.words, 'word')} selected · "
        f"{_plural(selected.characters, 'character')}"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.model_label = QLabel("No model")
        self.engine_label = QLabel("")
        self.count_label = QLabel("")
        for label in (self.model_label, self.engine_label, self.count_label):
            label.setContentsMargins(6, 0, 6, 0)
        for label in (self.model_label, self.engine_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.addWidget(label)
        self.addPermanentWidget(self.count_label)

    def set_model_text(self, text: str, details: str = "") -> None:
        self.model_label.setText(text)
        self.model_label.setToolTip(details)

    def set_engine_state(self, text: str) -> None:
        self.engine_label.setText(f"· {text}" if text else "")


class WordCounter:
    """Keeps a label showing the editor's counts, recounting shortly after changes."""

    def __init__(self, editor: QPlainTextEdit, label: QLabel) -> None:
        self._editor = editor
        self._label = label
        self._timer = QTimer(label)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COUNT_DELAY_MS)
        self._timer.timeout.connect(self.update_now)
        editor.document().contentsChanged.connect(self._timer.start)
        editor.selectionChanged.connect(self._timer.start)
        self.update_now()

    def update_now(self) -> None:
        self._timer.stop()
        total = count_text(self._editor.toPlainText())
        selection = self._editor.textCursor().selectedText()
        selected = count_text(selection.translate(_SELECTION_BREAKS)) if selection else None
        self._label.setText(describe_count(total, selected))


class NoticeBar(QToolBar):
    """A quiet strip above the text for remarks that need no answer (e.g. encodings)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Notices", parent)
        self.setObjectName("notice_bar")
        self.setMovable(False)
        self.setFloatable(False)
        self.toggleViewAction().setVisible(False)  # not a panel the writer manages
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.label.setContentsMargins(8, 4, 8, 4)
        close = QToolButton()
        close.setText("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        self.addWidget(self.label)
        self.addWidget(close)
        self.hide()

    def show_notice(self, text: str) -> None:
        current = "" if self.isHidden() else self.label.text()
        if text in current:
            return  # the same remark twice in a row says nothing new
        self.label.setText(f"{current}\n{text}" if current else text)
        self.show()
        self._fit_height()

    def dismiss(self) -> None:
        self.label.clear()
        self.hide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_height()

    def _fit_height(self) -> None:
        # A tool bar sizes a word-wrapped label by a guessed width, often far too tall;
        # give the label exactly the height its text needs at the width it really has.
        height = self.label.heightForWidth(max(self.label.width(), 1))
        if height > 0:  # -1 while there is no text to measure
            self.label.setFixedHeight(height)
