"""GhostTextEditor with a scripted source: keys, rendering, undo, stale answers, IME."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import (
    QColor,
    QImage,
    QInputMethodEvent,
    QKeyEvent,
    QPalette,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from tests.engine.test_stopping import SENTENCE_CASES, words
from tests.support.dummy_suggestion_source import DummySuggestionSource
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.services.suggestion_controller import (
    SuggestionController,
    SuggestionPreferences,
)
from writer_app.ui.ghost_editor import INLINE_GHOST_LIMIT, GhostTextEditor, split_at_utf16
from writer_app.ui.keymap import GhostAction, GhostKeymap

LONG = [" over", " the", " lazy", " dog", " and", " then", " it", " runs", " far", " away."]
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
ALT = Qt.KeyboardModifier.AltModifier


class Recorder(QWidget):
    """A parent that records the keys the editor let through."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[int] = []

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        self.keys.append(event.key())


@pytest.fixture
def source() -> DummySuggestionSource:
    return DummySuggestionSource(default=LONG, auto_stream=False)


_alive: list[QWidget] = []  # the parents are owned by Python: keep them until the test ends


@pytest.fixture(autouse=True)
def _release_parents():
    yield
    _alive.clear()


def build(qtbot, source, settings=None, preferences=None, text="The quick brown fox jumps"):
    controller = SuggestionController(
        source,
        settings or SamplingSettings(stop_at=StopAt.LENGTH),
        preferences or SuggestionPreferences(debounce_ms=10),
        rng=random.Random(7),
    )
    parent = Recorder()
    editor = GhostTextEditor(controller, GhostKeymap.for_platform("linux"), parent)
    QVBoxLayout(parent).addWidget(editor)
    qtbot.addWidget(parent)
    _alive.append(parent)
    parent.resize(420, 300)
    parent.show()
    editor.setPlainText(text)
    editor.moveCursor(QTextCursor.MoveOperation.End)
    return editor


@pytest.fixture
def editor(qtbot, source) -> GhostTextEditor:
    return build(qtbot, source)


def show_ghost(qtbot, editor, source, pieces=None) -> None:
    """Ctrl+Space, then stream the whole scripted answer."""
    count = len(source.requests)
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
    assert len(source.requests) == count + 1
    for piece in LONG if pieces is None else pieces:
        source.emit_piece(source.last.request_id, piece)
    source.emit_finished(source.last.request_id)


def ghost_layout(editor):
    return editor.textCursor().block().layout()


# --- showing ---------------------------------------------------------------------------------


def test_ghost_appears_after_a_typing_pause_and_streams_in(qtbot, editor, source):
    qtbot.keyClicks(editor, "x")
    qtbot.keyClick(editor, Qt.Key.Key_Backspace)
    qtbot.waitUntil(lambda: len(source.requests) == 1)
    assert source.last.prompt == "The quick brown fox jumps"
    shown = []
    for piece in [" over", " the", " lazy"]:
        source.emit_piece(source.last.request_id, piece)
        shown.append(editor.ghost_text())
    assert shown == [" over", " over the", " over the lazy"]
    layout = ghost_layout(editor)
    assert layout.preeditAreaText() == " over the lazy"
    assert layout.preeditAreaPosition() == len("The quick brown fox jumps")


def test_ghost_is_never_part_of_the_document(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    assert editor.ghost_text().startswith(" over the lazy")
    assert editor.toPlainText() == "The quick brown fox jumps"
    assert editor.document().firstBlock().text() == "The quick brown fox jumps"
    assert not editor.document().isUndoAvailable()  # nothing to undo: no edit happened
    assert not editor.document().find("lazy").hasSelection()
    assert not editor.find("lazy")
    editor.selectAll()
    editor.copy()
    assert QApplication.clipboard().text() == "The quick brown fox jumps"


def test_ghost_wraps_inline_in_a_narrow_editor(qtbot, source):
    editor = build(qtbot, source)
    editor.parentWidget().resize(170, 240)
    qtbot.waitUntil(lambda: editor.viewport().width() < 170)
    lines_without = ghost_layout(editor).lineCount()
    show_ghost(qtbot, editor, source)
    layout = ghost_layout(editor)
    assert layout.lineCount() > lines_without + 1
    # It survives relayouts: wider means fewer lines, and the ghost is still there.
    narrow_lines = layout.lineCount()
    editor.parentWidget().resize(400, 240)
    qtbot.waitUntil(lambda: ghost_layout(editor).lineCount() < narrow_lines)
    assert ghost_layout(editor).preeditAreaText() == editor.ghost_text()
    editor.parentWidget().resize(170, 240)
    qtbot.waitUntil(lambda: ghost_layout(editor).lineCount() == narrow_lines)


def test_multi_line_ghost_breaks_lines_inside_the_layout(qtbot, editor, source):
    show_ghost(qtbot, editor, source, [" over.\n", "Then"])
    assert editor.ghost_text() == " over.\nThen"
    assert "\u2028" in ghost_layout(editor).preeditAreaText()
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText() == "The quick brown fox jumps over.\nThen"
    assert editor.document().blockCount() == 2


# --- keys ------------------------------------------------------------------------------------


def test_tab_accepts_all(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText() == "The quick brown fox jumps" + "".join(LONG)
    assert editor.ghost_text() == ""
    assert editor.textCursor().position() == len(editor.toPlainText())


def test_tab_without_a_suggestion_inserts_a_tab(qtbot, editor):
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText() == "The quick brown fox jumps\t"


def test_ctrl_right_accepts_one_word(qtbot, editor, source):
    show_ghost(qtbot, editor, source, [" over,", " the", " dog"])
    qtbot.keyClick(editor, Qt.Key.Key_Right, CTRL)
    assert editor.toPlainText() == "The quick brown fox jumps over,"
    assert editor.ghost_text() == " the dog"
    qtbot.keyClick(editor, Qt.Key.Key_Right, CTRL)
    assert editor.toPlainText() == "The quick brown fox jumps over, the"


def test_ctrl_right_without_a_suggestion_moves_by_word(qtbot, editor):
    editor.moveCursor(QTextCursor.MoveOperation.Start)
    qtbot.keyClick(editor, Qt.Key.Key_Right, CTRL)
    assert editor.textCursor().position() == len("The ")
    assert editor.toPlainText() == "The quick brown fox jumps"


def test_shift_tab_accepts_to_the_end_of_the_sentence(qtbot, editor, source):
    show_ghost(qtbot, editor, source, [" over", " it.", " Then", " more"])
    qtbot.keyClick(editor, Qt.Key.Key_Backtab, SHIFT)
    assert editor.toPlainText() == "The quick brown fox jumps over it."
    assert editor.ghost_text() == " Then more"


@pytest.mark.parametrize(("generated", "expected"), SENTENCE_CASES)
def test_shift_tab_uses_the_engines_sentence_rule(qtbot, editor, source, generated, expected):
    show_ghost(qtbot, editor, source, words(generated))
    qtbot.keyClick(editor, Qt.Key.Key_Backtab, SHIFT)
    assert editor.toPlainText() == "The quick brown fox jumps" + expected


def test_escape_dismisses_and_otherwise_passes_through(qtbot, editor, source):
    parent = editor.parentWidget()

    def escapes_passed_on() -> int:
        return parent.keys.count(Qt.Key.Key_Escape)

    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert escapes_passed_on() == 1  # nothing to dismiss: the window gets it
    show_ghost(qtbot, editor, source)
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert editor.ghost_text() == "" and editor.controller.suggestion is None
    assert escapes_passed_on() == 1
    assert ghost_layout(editor).preeditAreaText() == ""
    assert editor.toPlainText() == "The quick brown fox jumps"


def test_alternatives_cycle_with_a_counter(qtbot, editor, source):
    counters: list[str] = []
    editor.counterChanged.connect(counters.append)
    show_ghost(qtbot, editor, source, [" over"])
    first_seed = source.last.seed
    qtbot.keyClick(editor, Qt.Key.Key_BracketRight, ALT)
    assert len(source.requests) == 2 and source.last.seed != first_seed
    source.emit_piece(source.last.request_id, " under")
    assert editor.ghost_text() == " under"
    assert editor.counter_text() == "2/3"
    label = editor.findChild(QWidget, "ghostCounter")
    assert label.isVisible() and label.text() == "2/3"
    qtbot.keyClick(editor, Qt.Key.Key_BracketLeft, ALT)
    assert editor.ghost_text() == " over" and editor.counter_text() == "1/3"
    assert counters == ["2/3", "1/3"]
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert not label.isVisible() and counters[-1] == ""
    assert editor.toPlainText() == "The quick brown fox jumps"


def test_ctrl_space_works_with_auto_suggest_off(qtbot, source):
    editor = build(qtbot, source, preferences=SuggestionPreferences(auto_trigger=False))
    qtbot.keyClicks(editor, " over")
    assert not editor.controller.debounce_pending and source.requests == []
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
    assert len(source.requests) == 1
    assert editor.toPlainText() == "The quick brown fox jumps over"  # no space typed


def test_ctrl_shift_space_retries_with_a_fresh_seed(qtbot, source):
    editor = build(qtbot, source, settings=SamplingSettings(seed=3, stop_at=StopAt.LENGTH))
    show_ghost(qtbot, editor, source, [" over"])
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL | SHIFT)
    assert [r.seed for r in source.requests][0] == 3
    assert source.last.seed != 3 and source.cancelled == []
    assert editor.ghost_text() == ""  # the old one is gone until the new one streams
    source.emit_piece(source.last.request_id, " around")
    assert editor.ghost_text() == " around"


# --- type-through ------------------------------------------------------------------------------


def test_typing_the_ghost_consumes_it_without_asking_again(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    qtbot.keyClicks(editor, " ov")
    assert editor.ghost_text().startswith("er the lazy")
    assert ghost_layout(editor).preeditAreaPosition() == len("The quick brown fox jumps ov")
    assert len(source.requests) == 1 and not editor.controller.debounce_pending


def test_typing_something_else_dismisses_and_asks_again(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    qtbot.keyClicks(editor, " ox")
    assert editor.ghost_text() == ""
    assert ghost_layout(editor).preeditAreaText() == ""
    qtbot.waitUntil(lambda: len(source.requests) == 2)
    assert source.last.prompt == "The quick brown fox jumps ox"


def test_a_stale_suggestion_is_never_shown_after_the_text_changed(qtbot, editor, source):
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
    stale = source.last.request_id
    qtbot.keyClicks(editor, "!")
    source.emit_piece(stale, " STALE")
    source.emit_finished(stale)
    assert editor.ghost_text() == ""
    qtbot.waitUntil(lambda: len(source.requests) == 2)
    source.emit_piece(stale, " STALE AGAIN")
    assert editor.ghost_text() == ""
    source.emit_piece(source.last.request_id, " Yes")
    assert editor.ghost_text() == " Yes"


# --- undo ----------------------------------------------------------------------------------------


def test_accept_is_one_undo_step(qtbot, editor, source):
    qtbot.keyClicks(editor, " and")  # typing just before: must not merge with the accept
    show_ghost(qtbot, editor, source, [" over", " the", " dog"])
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText() == "The quick brown fox jumps and over the dog"
    qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL)
    assert editor.toPlainText() == "The quick brown fox jumps and"
    qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL | SHIFT)
    assert editor.toPlainText() == "The quick brown fox jumps and over the dog"
    qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL)
    qtbot.keyClick(editor, Qt.Key.Key_Y, CTRL)
    assert editor.toPlainText() == "The quick brown fox jumps and over the dog"
    qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL)
    qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL)
    assert editor.toPlainText() == "The quick brown fox jumps"


def test_undo_never_sees_the_ghost(qtbot, editor, source):
    qtbot.keyClicks(editor, "!")
    show_ghost(qtbot, editor, source)
    qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL)
    assert editor.toPlainText() == "The quick brown fox jumps"
    assert editor.ghost_text() == ""
    assert not editor.document().isUndoAvailable()


# --- layout honesty: Qt's own keys and clicks see document positions ----------------------------


def test_end_key_with_a_ghost_goes_to_the_end_of_the_text(qtbot, source):
    editor = build(qtbot, source, text="Hello world")
    cursor = editor.textCursor()
    cursor.setPosition(len("Hello"))
    editor.setTextCursor(cursor)
    show_ghost(qtbot, editor, source, [" there"])
    assert editor.ghost_text() == " there"
    qtbot.keyClick(editor, Qt.Key.Key_End)
    assert editor.textCursor().position() == len("Hello world")
    assert editor.ghost_text() == ""


def test_a_click_lands_on_the_document_position_despite_the_ghost(qtbot, source):
    editor = build(qtbot, source, text="Hello world")
    probe = QTextCursor(editor.document())
    probe.setPosition(len("Hello wor"))
    target = editor.cursorRect(probe).center()  # measured without a ghost
    cursor = editor.textCursor()
    cursor.setPosition(len("Hello"))
    editor.setTextCursor(cursor)
    show_ghost(qtbot, editor, source, [" there"])
    assert editor.ghost_text() == " there"
    qtbot.mouseClick(
        editor.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(target.x() + 1, target.y())
    )
    assert editor.textCursor().position() == len("Hello wor")
    assert editor.ghost_text() == ""


# --- selections, input methods, non-ASCII ------------------------------------------------------------


def test_selecting_text_dismisses_and_blocks_suggestions(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    qtbot.keyClick(editor, Qt.Key.Key_Left, SHIFT)
    assert editor.ghost_text() == ""
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
    assert len(source.requests) == 1


def send_ime(editor, preedit: str = "", commit: str = "") -> None:
    event = QInputMethodEvent(preedit, [])
    if commit:
        event.setCommitString(commit)
    QApplication.sendEvent(editor, event)


def test_input_method_composition_dismisses_the_ghost(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    send_ime(editor, preedit="ka")
    assert editor.ghost_text() == ""
    assert ghost_layout(editor).preeditAreaText() == "ka"  # the input method's, intact
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
    assert len(source.requests) == 1  # nothing while composing
    send_ime(editor, commit="か")
    assert editor.toPlainText() == "The quick brown fox jumpsか"
    assert ghost_layout(editor).preeditAreaText() == ""
    qtbot.waitUntil(lambda: len(source.requests) == 2)


def test_non_ascii_text_keeps_positions_right(qtbot, source):
    editor = build(qtbot, source, text="Smile 😀 and")
    show_ghost(qtbot, editor, source, [" wave"])
    assert source.last.prompt == "Smile 😀 and"
    assert ghost_layout(editor).preeditAreaPosition() == len("Smile 😀 and") + 1  # UTF-16
    qtbot.keyClicks(editor, " w")
    assert editor.ghost_text() == "ave"
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText() == "Smile 😀 and wave"


def test_split_at_utf16():
    assert split_at_utf16("a😀b", 3) == ("a😀", "b")
    assert split_at_utf16("abc", 1) == ("a", "bc")


def test_replacing_the_document_drops_the_ghost(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    editor.setPlainText("Something else")
    assert editor.ghost_text() == "" and editor.controller.suggestion is None
    assert all(
        editor.document().findBlockByNumber(i).layout().preeditAreaText() == ""
        for i in range(editor.document().blockCount())
    )
    new_document = QTextDocument("Fresh")
    new_document.setDocumentLayout(editor.document().documentLayout().__class__(new_document))
    editor.setDocument(new_document)
    editor.moveCursor(QTextCursor.MoveOperation.End)
    show_ghost(qtbot, editor, source, [" start"])
    assert editor.ghost_text() == " start"


def test_window_shortcuts_do_not_steal_our_keys_when_they_apply(qtbot, editor, source):
    show_ghost(qtbot, editor, source)
    override = QKeyEvent(
        QEvent.Type.ShortcutOverride, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(editor, override)
    assert override.isAccepted()
    editor.controller.dismiss()
    override = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_BracketRight, ALT)
    override.ignore()
    QApplication.sendEvent(editor, override)
    assert not override.isAccepted()


# --- keymap ----------------------------------------------------------------------------------------


def test_mac_keymap_uses_option_for_words_and_control_for_space():
    mac = GhostKeymap.for_platform("darwin")
    assert mac.action_for(Qt.Key.Key_Right, ALT) is GhostAction.ACCEPT_WORD
    assert mac.action_for(Qt.Key.Key_Right, CTRL) is None  # Cmd+Right: end of line
    assert mac.action_for(Qt.Key.Key_Space, Qt.KeyboardModifier.MetaModifier) is GhostAction.TRIGGER
    assert mac.action_for(Qt.Key.Key_Space, CTRL) is None  # Cmd+Space is Spotlight
    linux = GhostKeymap.for_platform("linux")
    assert linux.action_for(Qt.Key.Key_Right, CTRL) is GhostAction.ACCEPT_WORD
    assert (
        linux.action_for(Qt.Key.Key_Right, CTRL | Qt.KeyboardModifier.KeypadModifier)
        is GhostAction.ACCEPT_WORD
    )
    assert linux.shortcut_text(GhostAction.RETRY) == "Ctrl+Shift+Space"


def test_counter_follows_the_ghost_when_it_rewraps(qtbot, source):
    editor = build(qtbot, source)
    editor.parentWidget().resize(400, 240)
    show_ghost(qtbot, editor, source, [" over"])
    qtbot.keyClick(editor, Qt.Key.Key_BracketRight, ALT)
    for piece in [" under", " the", " big", " old", " bridge"]:
        source.emit_piece(source.last.request_id, piece)
    label = editor.findChild(QWidget, "ghostCounter")
    wide_position = label.pos()
    editor.parentWidget().resize(170, 240)
    qtbot.waitUntil(lambda: label.pos().y() > wide_position.y())
    assert label.isVisible() and label.geometry().right() <= editor.viewport().width()


def test_ghost_takes_its_grey_from_the_palette_and_follows_a_theme_switch(qtbot, editor, source):
    show_ghost(qtbot, editor, source)

    def ghost_colour():
        (ghost_range,) = [r for r in ghost_layout(editor).formats() if r.length > 0]
        return ghost_range.format.foreground().color()

    placeholder = editor.palette().color(QPalette.ColorRole.PlaceholderText)
    assert ghost_colour() == placeholder
    assert ghost_colour() != editor.palette().color(QPalette.ColorRole.Text)
    palette = editor.palette()
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor("#3366aa"))
    editor.setPalette(palette)
    assert ghost_colour() == QColor("#3366aa")
    assert editor.ghost_text().startswith(" over")


def test_a_read_only_editor_takes_no_suggestions(qtbot, editor, source):
    editor.setReadOnly(True)
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
    assert source.requests == []
    editor.setReadOnly(False)
    qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
    assert len(source.requests) == 1


# --- keys the editor owns, and undo after an accept -------------------------------------------------


def test_alt_brackets_never_type_a_bracket_without_a_suggestion(qtbot, editor, source):
    for key in (Qt.Key.Key_BracketRight, Qt.Key.Key_BracketLeft):
        qtbot.keyClick(editor, key, ALT)
    assert editor.toPlainText() == "The quick brown fox jumps"
    assert source.requests == []  # nothing to cycle: nothing happens
    assert Qt.Key.Key_BracketRight not in editor.parentWidget().keys  # not passed on either


def test_alt_brackets_never_type_a_bracket_after_a_partial_accept(qtbot, editor, source):
    show_ghost(qtbot, editor, source, [" over,", " the", " dog"])
    qtbot.keyClick(editor, Qt.Key.Key_Right, CTRL)
    assert editor.toPlainText() == "The quick brown fox jumps over,"
    for key in (Qt.Key.Key_BracketRight, Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight):
        qtbot.keyClick(editor, key, ALT)
    assert editor.toPlainText() == "The quick brown fox jumps over,"
    assert editor.ghost_text() == " the dog"


def test_plain_brackets_still_type(qtbot, editor):
    qtbot.keyClicks(editor, "[]")
    assert editor.toPlainText() == "The quick brown fox jumps[]"


def undo_redo_texts(qtbot, editor, steps: int) -> tuple[list[str], list[str]]:
    undone, redone = [], []
    for _ in range(steps):
        qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL)
        undone.append(editor.toPlainText())
    for _ in range(steps):
        qtbot.keyClick(editor, Qt.Key.Key_Z, CTRL | SHIFT)
        redone.append(editor.toPlainText())
    return undone, redone


def test_typing_after_tab_is_its_own_undo_step(qtbot, editor, source):
    show_ghost(qtbot, editor, source, [" over", " the", " dog"])
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    qtbot.keyClicks(editor, " ZZZ")
    base = "The quick brown fox jumps"
    assert editor.toPlainText() == base + " over the dog ZZZ"
    undone, redone = undo_redo_texts(qtbot, editor, 2)
    assert undone == [base + " over the dog", base]
    assert redone == [base + " over the dog", base + " over the dog ZZZ"]


def test_typing_after_ctrl_right_is_its_own_undo_step(qtbot, editor, source):
    show_ghost(qtbot, editor, source, [" over,", " the", " dog"])
    qtbot.keyClick(editor, Qt.Key.Key_Right, CTRL)
    qtbot.keyClicks(editor, "qq")
    base = "The quick brown fox jumps"
    assert editor.toPlainText() == base + " over,qq"
    undone, redone = undo_redo_texts(qtbot, editor, 2)
    assert undone == [base + " over,", base]
    assert redone == [base + " over,", base + " over,qq"]


# --- a huge paragraph: the ghost is painted over it, its layout is never touched ----------------


def viewport_pixels(editor) -> np.ndarray:
    image = editor.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    return np.array(image.constBits(), dtype=np.uint8).reshape(
        image.height(), image.bytesPerLine() // 4, 4
    )[:, : image.width()]


def test_a_huge_paragraphs_ghost_is_painted_over_it_not_laid_out_in_it(qtbot, source):
    words = INLINE_GHOST_LIMIT // 5 + 10
    editor = build(qtbot, source, text=("word " * words).rstrip())
    editor.setCursorWidth(0)  # a blinking cursor would change the pictures
    editor.ensureCursorVisible()
    qtbot.waitUntil(lambda: editor.cursorRect().bottom() < editor.viewport().height())
    plain = viewport_pixels(editor)
    relayouts = []
    editor.document().documentLayout().updateBlock.connect(relayouts.append)
    show_ghost(qtbot, editor, source, [" over", " the", " lazy"])
    assert editor.ghost_text() == " over the lazy"
    assert ghost_layout(editor).preeditAreaText() == ""
    assert relayouts == []  # the paragraph was never laid out again
    with_ghost = viewport_pixels(editor)
    rows, columns = np.nonzero((with_ghost != plain).any(axis=2))
    cursor = editor.cursorRect()
    assert rows.size > 0  # the grey text is on screen...
    assert rows.min() >= cursor.top() - 2 and columns[rows < cursor.bottom()].min() >= cursor.left() - 2
    qtbot.keyClick(editor, Qt.Key.Key_Escape)  # ...after the cursor, and gone when dismissed
    assert editor.ghost_text() == ""
    assert (viewport_pixels(editor) == plain).all()
    show_ghost(qtbot, editor, source, [" over", " the", " lazy"])
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText().endswith("word over the lazy")


def test_a_huge_paragraphs_ghost_shows_its_counter_after_its_end(qtbot, source):
    editor = build(qtbot, source, text=("word " * (INLINE_GHOST_LIMIT // 5 + 10)).rstrip())
    show_ghost(qtbot, editor, source, [" over"])
    qtbot.keyClick(editor, Qt.Key.Key_BracketRight, ALT)
    source.emit_piece(source.last.request_id, " under")
    label = editor.findChild(QWidget, "ghostCounter")
    assert label.isVisible() and label.text() == "2/3"
    assert label.x() > editor.cursorRect().left() and abs(label.y() - editor.cursorRect().top()) < 4
