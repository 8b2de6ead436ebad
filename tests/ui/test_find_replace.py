"""Find and replace: next/previous with wrap-around, case and whole words, replace, and
replace all as a single undo step."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from writer_app.ui.find_replace import FindReplaceBar

TEXT = "The cat sat. A Cat ran.\nconcatenate the cat\n"


@pytest.fixture
def bar(qtbot) -> FindReplaceBar:
    editor = QPlainTextEdit()
    editor.setPlainText(TEXT)
    qtbot.addWidget(editor)
    bar = FindReplaceBar(editor)
    qtbot.addWidget(bar)
    return bar


def _selection(bar: FindReplaceBar) -> tuple[int, int]:
    cursor = bar.editor.textCursor()
    return cursor.selectionStart(), cursor.selectionEnd()


def _matches(bar: FindReplaceBar, query: str, **options: bool) -> list[int]:
    """Starts of every match found by pressing Next until it comes back around."""
    bar.find_edit.setText(query)
    bar.case_box.setChecked(options.get("case", False))
    bar.words_box.setChecked(options.get("words", False))
    bar.editor.moveCursor(QTextCursor.MoveOperation.Start)
    starts: list[int] = []
    while bar.find_next():
        start = _selection(bar)[0]
        if start in starts:
            break
        starts.append(start)
    return starts


def test_find_next_visits_every_match_and_wraps(bar):
    assert _matches(bar, "cat") == [4, 15, 27, 40]
    assert bar.result_label.text() == "Wrapped around"


def test_match_case_and_whole_words_narrow_the_search(bar):
    assert _matches(bar, "cat", case=True) == [4, 27, 40]
    assert _matches(bar, "cat", words=True) == [4, 15, 40]
    assert _matches(bar, "cat", case=True, words=True) == [4, 40]


def test_find_previous_goes_backwards_and_wraps_to_the_end(bar):
    bar.find_edit.setText("cat")
    bar.editor.moveCursor(QTextCursor.MoveOperation.Start)
    assert bar.find_previous()
    assert _selection(bar) == (40, 43)
    assert bar.find_previous()
    assert _selection(bar) == (27, 30)


def test_no_match_is_reported_and_the_cursor_stays(bar):
    bar.find_edit.setText("dog")
    bar.editor.moveCursor(QTextCursor.MoveOperation.End)
    assert not bar.find_next()
    assert bar.result_label.text() == "No matches"
    assert bar.editor.textCursor().position() == len(TEXT)


def test_replace_replaces_the_selected_match_then_selects_the_next(bar):
    bar.find_edit.setText("cat")
    bar.replace_edit.setText("dog")
    bar.editor.moveCursor(QTextCursor.MoveOperation.Start)
    bar.replace_one()  # nothing selected yet: only finds
    assert bar.editor.toPlainText() == TEXT
    bar.replace_one()
    assert bar.editor.toPlainText().startswith("The dog sat. A Cat")
    assert bar.editor.textCursor().selectedText() == "Cat"


def test_replace_all_is_one_undo_step(bar):
    bar.find_edit.setText("cat")
    bar.replace_edit.setText("dog")
    bar.words_box.setChecked(True)
    assert bar.replace_all() == 3
    assert bar.editor.toPlainText() == "The dog sat. A dog ran.\nconcatenate the dog\n"
    assert bar.result_label.text() == "Replaced 3"
    bar.editor.undo()
    assert bar.editor.toPlainText() == TEXT
    bar.editor.redo()
    assert bar.editor.toPlainText().count("dog") == 3


def test_replace_all_with_a_replacement_containing_the_query_ends(bar):
    bar.find_edit.setText("a")
    bar.replace_edit.setText("aa")
    bar.case_box.setChecked(True)
    count = bar.replace_all()
    assert count == TEXT.count("a")
    assert bar.editor.toPlainText() == TEXT.replace("a", "aa")


def test_replace_all_with_nothing_to_find_changes_nothing(bar):
    bar.find_edit.setText("")
    assert bar.replace_all() == 0
    bar.find_edit.setText("zebra")
    assert bar.replace_all() == 0
    assert bar.editor.toPlainText() == TEXT
    assert not bar.editor.document().isUndoAvailable()


def test_opening_seeds_the_search_with_a_one_line_selection(bar, qtbot):
    cursor = bar.editor.textCursor()
    cursor.setPosition(4)
    cursor.setPosition(7, QTextCursor.MoveMode.KeepAnchor)
    bar.editor.setTextCursor(cursor)
    bar.show_find()
    assert bar.find_edit.text() == "cat"
    assert bar.replace_edit.isHidden()
    bar.show_replace()
    assert not bar.replace_edit.isHidden()


def test_enter_searches_and_escape_closes(bar, qtbot):
    bar.show_find()
    bar.find_edit.setText("ran")
    qtbot.keyClick(bar.find_edit, Qt.Key.Key_Return)
    assert bar.editor.textCursor().selectedText() == "ran"
    qtbot.keyClick(bar.find_edit, Qt.Key.Key_Escape)
    assert bar.isHidden()
