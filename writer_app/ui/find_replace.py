"""A small, non-modal find and replace bar that sits under the text.

Searching uses QTextDocument.find, so "match case" and "whole words" mean exactly what
Qt means by them, and the search wraps around the end of the document. "Replace all"
runs inside one edit block, so a single Undo brings the whole document back.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QToolBar,
    QWidget,
)

FindFlag = QTextDocument.FindFlag


class _Field(QLineEdit):
    """A line edit where Enter searches forwards and Shift+Enter backwards."""

    def __init__(self, bar: FindReplaceBar, placeholder: str) -> None:
        super().__init__()
        self._bar = bar
        self.setPlaceholderText(placeholder)
        self.setClearButtonEnabled(True)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self._bar.find_previous()
            else:
                self._bar.find_next()
            return
        if event.key() == Qt.Key.Key_Escape:
            self._bar.close_bar()
            return
        super().keyPressEvent(event)


class FindReplaceBar(QToolBar):
    def __init__(self, editor: QPlainTextEdit, parent: QWidget | None = None) -> None:
        super().__init__("Find and replace", parent)
        self.setObjectName("find_replace_bar")
        self.setMovable(False)
        self.setFloatable(False)
        self.toggleViewAction().setVisible(False)  # opened with Find/Replace, not View
        self.editor = editor
        self.find_edit = _Field(self, "Find")
        self.replace_edit = _Field(self, "Replace with")
        self.case_box = QCheckBox("Match case")
        self.words_box = QCheckBox("Whole words")
        self.result_label = QLabel()
        self._replace_widgets: list[QWidget] = [self.replace_edit]
        self.addWidget(self._build())
        self.hide()

    # ----- opening and closing -------------------------------------------------------

    def show_find(self) -> None:
        self._open(replacing=False)

    def show_replace(self) -> None:
        self._open(replacing=True)

    def close_bar(self) -> None:
        self.hide()
        self.editor.setFocus()

    # ----- commands ------------------------------------------------------------------

    def find_next(self) -> bool:
        return self._find(backward=False)

    def find_previous(self) -> bool:
        return self._find(backward=True)

    def replace_one(self) -> bool:
        """Replace the current match (if one is selected), then find the next one."""
        if self._selection_is_match():
            self.editor.textCursor().insertText(self.replace_edit.text())
        return self.find_next()

    def replace_all(self) -> int:
        query = self.find_edit.text()
        if not query:
            return 0
        document = self.editor.document()
        replacement = self.replace_edit.text()
        count = 0
        block = QTextCursor(document)
        block.beginEditBlock()  # one undo step for the lot
        position = 0
        while True:
            found = document.find(query, position, self._flags())
            if found.isNull():
                break
            found.insertText(replacement)
            position = found.position()  # after the replacement: it is never searched again
            count += 1
        block.endEditBlock()
        self._report(f"Replaced {count:,}" if count else "No matches")
        return count

    # ----- internals -----------------------------------------------------------------

    def _flags(self, backward: bool = False) -> QTextDocument.FindFlag:
        flags = QTextDocument.FindFlag(0)
        if self.case_box.isChecked():
            flags |= FindFlag.FindCaseSensitively
        if self.words_box.isChecked():
            flags |= FindFlag.FindWholeWords
        if backward:
            flags |= FindFlag.FindBackward
        return flags

    def _find(self, *, backward: bool) -> bool:
        query = self.find_edit.text()
        if not query:
            return False
        document = self.editor.document()
        found = document.find(query, self.editor.textCursor(), self._flags(backward))
        wrapped = found.isNull()
        if wrapped:  # carry on from the other end of the document
            start = QTextCursor(document)
            if backward:
                start.movePosition(QTextCursor.MoveOperation.End)
            found = document.find(query, start, self._flags(backward))
        if found.isNull():
            self._report("No matches")
            return False
        self.editor.setTextCursor(found)
        self.editor.ensureCursorVisible()
        self._report("Wrapped around" if wrapped else "")
        return True

    def _selection_is_match(self) -> bool:
        cursor = self.editor.textCursor()
        if not cursor.hasSelection():
            return False
        found = self.editor.document().find(
            self.find_edit.text(), cursor.selectionStart(), self._flags()
        )
        return (found.selectionStart(), found.selectionEnd()) == (
            cursor.selectionStart(),
            cursor.selectionEnd(),
        )

    def _report(self, text: str) -> None:
        self.result_label.setText(text)

    def _open(self, *, replacing: bool) -> None:
        for widget in self._replace_widgets:
            widget.setVisible(replacing)
        selected = self.editor.textCursor().selectedText()
        if selected and "\u2029" not in selected:  # a one-line selection seeds the search
            self.find_edit.setText(selected)
        self.show()
        self.find_edit.setFocus()
        self.find_edit.selectAll()

    def _build(self) -> QWidget:
        panel = QWidget()
        grid = QGridLayout(panel)
        grid.setContentsMargins(6, 4, 6, 4)
        previous = QPushButton("Previous")
        following = QPushButton("Next")
        replace = QPushButton("Replace")
        replace_all = QPushButton("Replace all")
        done = QPushButton("Done")
        previous.clicked.connect(self.find_previous)
        following.clicked.connect(self.find_next)
        replace.clicked.connect(self.replace_one)
        replace_all.clicked.connect(self.replace_all)
        done.clicked.connect(self.close_bar)
        for button in (previous, following, replace, replace_all, done):
            button.setAutoDefault(False)
        grid.addWidget(self.find_edit, 0, 0)
        grid.addWidget(previous, 0, 1)
        grid.addWidget(following, 0, 2)
        grid.addWidget(self.case_box, 0, 3)
        grid.addWidget(self.words_box, 0, 4)
        grid.addWidget(self.result_label, 0, 5)
        grid.addWidget(done, 0, 6)
        grid.addWidget(self.replace_edit, 1, 0)
        grid.addWidget(replace, 1, 1)
        grid.addWidget(replace_all, 1, 2)
        for field in (self.find_edit, self.replace_edit):
            field.setMinimumWidth(180)
            field.setMaximumWidth(420)
        grid.setColumnStretch(5, 1)
        self._replace_widgets += [replace, replace_all]
        return panel
