"""GhostTextEditor: a plain-text editor that shows a suggestion as grey text at the cursor.

The grey text is never part of the QTextDocument. It lives in the pre-edit area of the
cursor's block layout (QTextLayout.setPreeditArea, the slot input methods use for text
being composed), with a grey format range over it. Qt then lays it out inline: it wraps
and reflows with the paragraph on every relayout, while toPlainText(), saving, copying,
word counts, find and undo only ever see the document.

A paragraph longer than INLINE_GHOST_LIMIT is the exception. Qt lays out a whole
paragraph at once, so with 100,000 characters every streamed token would cost 40 ms
(prose) to almost a second (one endless word) of relayout. There the grey text is
painted over the viewport from the cursor on instead, wrapped to the editor's width on
an opaque background, and the paragraph's layout is never touched. The text after the
cursor in that paragraph is covered while the suggestion shows, not pushed aside.

Two things follow from borrowing the pre-edit slot:
    - layout positions after the ghost are shifted by its length, so before Qt handles a
      key or mouse press itself (cursor moves, hit tests, edits) the ghost is taken out
      of the layout, and put back afterwards if the controller still wants it;
    - input methods use the same slot, so when one starts composing the ghost goes
      first and none is shown until composing ends.

The widget knows nothing about the engine. It reports edits and cursor moves to a
SuggestionController, turns keys into controller calls (see keymap.py) and draws what
the controller says.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QInputMethodEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
    QTextLayout,
    QTextOption,
)
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QWidget

from writer_app.services.suggestion import Suggestion, utf16_length
from writer_app.services.suggestion_controller import AcceptPart, SuggestionController
from writer_app.ui.keymap import GhostAction, GhostKeymap

# Marks our format range, so formats set by others (a highlighter) are left alone.
GHOST_FORMAT_PROPERTY = QTextFormat.Property.UserProperty + 0x6F57
LINE_SEPARATOR = "\u2028"  # a line break inside one layout (a "\n" would not break)
# Longer paragraphs (UTF-16 units) get the ghost painted over them, not in their layout:
# relaying out 5,000 characters stays within ~10-20 ms even for the slowest text to lay
# out (one endless word, combining accents); 100,000 take up to a second.
INLINE_GHOST_LIMIT = 5_000

_ACCEPT_PARTS = {
    GhostAction.ACCEPT_ALL: AcceptPart.ALL,
    GhostAction.ACCEPT_WORD: AcceptPart.WORD,
    GhostAction.ACCEPT_SENTENCE: AcceptPart.SENTENCE,
}
# Keys that mean nothing but "cycle the suggestion": when there is nothing to cycle they
# do nothing, rather than fall through and type their character ("]" from Alt+]).
_ALWAYS_OWNED = frozenset({GhostAction.NEXT_ALTERNATIVE, GhostAction.PREVIOUS_ALTERNATIVE})


def split_at_utf16(text: str, position: int) -> tuple[str, str]:
    """Split `text` at a QTextDocument position (UTF-16 units, not Python characters)."""
    if text.isascii():
        return text[:position], text[position:]
    encoded = text.encode("utf-16-le", "surrogatepass")
    cut = 2 * position
    return (
        encoded[:cut].decode("utf-16-le", "surrogatepass"),
        encoded[cut:].decode("utf-16-le", "surrogatepass"),
    )


@dataclass
class _PlacedGhost:
    anchor: QTextCursor  # follows edits, so the block can be found again after them
    position: int
    display: str  # the text as placed in the layout
    inline: bool = True  # in the block's layout; else painted over it (a huge paragraph)


@dataclass
class _Overlay:
    """The ghost of a huge paragraph as painted: its own small layout, in viewport
    coordinates, and the lines it covers (to the right edge, so no document text shows
    through beside it)."""

    layout: QTextLayout
    lines: list[QRectF]

    @property
    def bounds(self) -> QRect:
        united = QRectF()
        for rect in self.lines:
            united = united.united(rect)
        return united.toAlignedRect().adjusted(-2, -2, 2, 2)


class GhostTextEditor(QPlainTextEdit):
    counterChanged = Signal(str)  # "2/3" while cycling alternatives, "" otherwise

    def __init__(
        self,
        controller: SuggestionController,
        keymap: GhostKeymap | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._keymap = keymap or GhostKeymap.for_platform()
        self._edits = 0  # the revision the controller sees; counts every text change
        self._text_cache: tuple[int, str] = (-1, "")
        # Set by an accept until the next edit: that edit must start its own undo step.
        self._accept_ends_undo_step = False
        self._placed: _PlacedGhost | None = None
        self._overlay_area = QRect()  # where a painted ghost was last drawn (viewport)
        self._counter_text = ""
        self._counter = QLabel(self.viewport())
        self._counter.setObjectName("ghostCounter")
        self._counter.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self._counter.hide()
        controller.ghostChanged.connect(self._on_ghost_changed)
        self.cursorPositionChanged.connect(self._report)
        self.selectionChanged.connect(self._report)
        # Scrolling and relayouts (a resize rewraps the ghost) move where the counter goes.
        self.updateRequest.connect(self._keep_counter_in_place)
        self._watch_document(self.document())

    # --- public --------------------------------------------------------------------

    @property
    def controller(self) -> SuggestionController:
        return self._controller

    @property
    def keymap(self) -> GhostKeymap:
        return self._keymap

    def ghost_text(self) -> str:
        """The grey text on screen now ("" for none); never part of toPlainText()."""
        return self._placed.display.replace(LINE_SEPARATOR, "\n") if self._placed else ""

    def counter_text(self) -> str:
        return self._counter_text

    def setDocument(self, document: QTextDocument) -> None:  # noqa: N802 (Qt API)
        self._remove_ghost()
        super().setDocument(document)
        self._watch_document(document)
        self._report()

    # --- reporting to the controller ---------------------------------------------------

    def _watch_document(self, document: QTextDocument) -> None:
        # contentsChange comes before cursorPositionChanged, so the edit is counted first.
        document.contentsChange.connect(self._on_contents_change)

    def _on_contents_change(self, _position: int, _removed: int, _added: int) -> None:
        self._edits += 1
        self._accept_ends_undo_step = False
        self._report()

    def _plain_text(self) -> str:
        edits, text = self._text_cache
        if edits != self._edits:
            text = self.toPlainText()
            self._text_cache = (self._edits, text)
        return text

    def _report(self) -> None:
        cursor = self.textCursor()
        before, after = split_at_utf16(self._plain_text(), cursor.position())
        # A read-only editor takes no suggestions, just as one with a selection does.
        blocked = cursor.hasSelection() or self.isReadOnly()
        self._controller.update_context(before, after, cursor.position(), self._edits, blocked)
        self._render(self._controller.suggestion)

    # --- drawing ---------------------------------------------------------------------

    def _on_ghost_changed(self, suggestion: Suggestion | None) -> None:
        self._render(suggestion)

    def _render(self, suggestion: Suggestion | None) -> None:
        wanted: tuple[int, str] | None = None
        cursor = self.textCursor()
        if (
            suggestion is not None
            and suggestion.text
            and not self._controller.composing
            and not cursor.hasSelection()
            and cursor.position() == suggestion.position
        ):
            wanted = (suggestion.position, suggestion.text.replace("\n", LINE_SEPARATOR))
        placed = self._placed
        if placed is None or (placed.position, placed.display) != wanted:
            self._remove_ghost()
            if wanted is not None:
                self._place_ghost(*wanted)
        self._update_counter(suggestion if wanted is not None else None)

    def _place_ghost(self, position: int, display: str) -> None:
        document = self.document()
        block = document.findBlock(position)
        if not block.isValid():
            return
        anchor = QTextCursor(document)
        if block.length() > INLINE_GHOST_LIMIT:
            anchor.setPosition(position)
            self._placed = _PlacedGhost(anchor, position, display, inline=False)
            self._repaint_overlay()
            return
        in_block = position - block.position()
        ghost_range = QTextLayout.FormatRange()
        ghost_range.start = in_block
        ghost_range.length = utf16_length(display)
        ghost_range.format = self._ghost_format()
        layout = block.layout()
        layout.setPreeditArea(in_block, display)
        layout.setFormats(_without_ghost(layout.formats()) + [ghost_range])
        document.markContentsDirty(block.position(), block.length())
        anchor.setPosition(position)  # (this also lays the block out again, ghost and all)
        self._placed = _PlacedGhost(anchor, position, display)

    def _remove_ghost(self) -> None:
        placed, self._placed = self._placed, None
        if placed is None:
            return
        if not placed.inline:
            self._repaint_overlay()
            return
        document = self.document()
        block = placed.anchor.block()
        # An edit may have split or merged the block since: look at its neighbours too.
        for candidate in (block, block.previous(), block.next()):
            if not candidate.isValid():
                continue
            layout = candidate.layout()
            if layout is None or layout.preeditAreaText() != placed.display:
                continue  # not ours (an input method's, or none at all)
            layout.setPreeditArea(-1, "")
            layout.setFormats(_without_ghost(layout.formats()))
            document.markContentsDirty(candidate.position(), candidate.length())

    # --- the ghost of a huge paragraph, painted over it ------------------------------

    def _overlay(self) -> _Overlay | None:
        """The ghost laid out on its own from the cursor on: the first line from the
        cursor to the right edge, the next ones across the whole text width."""
        placed = self._placed
        if placed is None or placed.inline:
            return None
        start = self.cursorRect(placed.anchor)
        margin = self.document().documentMargin()
        left = self.contentOffset().x() + margin
        right = self.viewport().width() - margin
        layout = QTextLayout(placed.display, self.document().defaultFont())
        option = QTextOption(self.document().defaultTextOption())
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        layout.setTextOption(option)
        ghost_range = QTextLayout.FormatRange()
        ghost_range.start = 0
        ghost_range.length = utf16_length(placed.display)
        ghost_range.format = self._ghost_format()
        layout.setFormats([ghost_range])
        lines: list[QRectF] = []
        x, y = float(start.left()), float(start.top())
        layout.beginLayout()
        while (line := layout.createLine()).isValid():
            line.setLineWidth(max(1.0, right - x))
            line.setPosition(QPointF(x, y))
            lines.append(QRectF(x, y, right - x, line.height()))
            x, y = left, y + line.height()
        layout.endLayout()
        return _Overlay(layout, lines)

    def _repaint_overlay(self) -> None:
        """Repaint where the overlay was and where it is now: only that part."""
        overlay = self._overlay()
        area = self._overlay_area
        if overlay is not None:
            area = area.united(overlay.bounds)
        self._overlay_area = overlay.bounds if overlay is not None else QRect()
        if not area.isEmpty():
            self.viewport().update(area)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        super().paintEvent(event)
        overlay = self._overlay()
        if overlay is None:
            return
        self._overlay_area = self._overlay_area.united(overlay.bounds)
        painter = QPainter(self.viewport())
        background = self.palette().color(QPalette.ColorRole.Base)
        for index, rect in enumerate(overlay.lines):
            if index == 0:  # leave the text cursor showing
                rect = rect.adjusted(self.cursorWidth(), 0, 0, 0)
            painter.fillRect(rect, background)
        overlay.layout.draw(painter, QPointF(0, 0))
        painter.end()

    def _ghost_format(self) -> QTextCharFormat:
        ghost_format = QTextCharFormat()
        ghost_format.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        ghost_format.setProperty(GHOST_FORMAT_PROPERTY, True)
        return ghost_format

    def _update_counter(self, suggestion: Suggestion | None) -> None:
        text = suggestion.counter_text if suggestion is not None else ""
        if text != self._counter_text:
            self._counter_text = text
            self.counterChanged.emit(text)
        if not text or self._placed is None:
            self._counter.hide()
            return
        self._counter.setText(text)
        self._counter.adjustSize()
        self._counter.move(self._counter_spot())
        self._counter.show()

    def _keep_counter_in_place(self, *_: object) -> None:
        if self._counter.isVisible() and self._placed is not None:
            spot = self._counter_spot()
            if spot != self._counter.pos():
                self._counter.move(spot)

    def _counter_spot(self) -> QPoint:
        """Just after the end of the grey text, kept inside the viewport."""
        placed = self._placed
        overlay = self._overlay()
        if overlay is not None:
            layout = overlay.layout
            last = layout.lineAt(layout.lineCount() - 1) if layout.lineCount() else None
            end = last.x() + last.naturalTextWidth() if last is not None else 0
            top = last.y() if last is not None else 0
            x = max(0, min(int(end) + 6, self.viewport().width() - self._counter.width()))
            return QPoint(x, int(top))
        block = placed.anchor.block()
        layout = block.layout()
        end = placed.position - block.position() + utf16_length(placed.display)
        line = layout.lineForTextPosition(end)
        top_left = self.blockBoundingGeometry(block).translated(self.contentOffset()).topLeft()
        x = top_left.x() + (line.cursorToX(end)[0] if line.isValid() else 0) + 6
        y = top_left.y() + (line.y() if line.isValid() else 0)
        x = max(0, min(int(x), self.viewport().width() - self._counter.width()))
        return QPoint(x, int(y))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt API)
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self._placed is not None:
            # A theme switch: the grey was taken from the old palette.
            self._remove_ghost()
            self._render(self._controller.suggestion)

    # --- keys, mouse, input methods ------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        # Claim our keys before window shortcuts see them, but only when they apply.
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            action = self._keymap.action_for_event(event)
            if action is not None and self._applies(action):
                event.accept()
                return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        action = self._keymap.action_for_event(event)
        if action is not None and self._applies(action) and self._perform(action):
            event.accept()
            return
        if action in _ALWAYS_OWNED and not self.isReadOnly():
            event.accept()
            return
        if self._accept_ends_undo_step and _types_text(event):
            self._with_plain_layout(self._key_press_as_new_undo_step, event)
        else:
            self._with_plain_layout(super().keyPressEvent, event)

    def _key_press_as_new_undo_step(self, event: QKeyEvent) -> None:
        """Qt merges typing into the insert before it, even into an edit block (an
        accept). Typing inside an edit block of its own is not merged backwards, and
        the typing after it merges into it as usual: one undo step for the accept, the
        next for what was typed after it."""
        cursor = self.textCursor()
        cursor.beginEditBlock()
        try:
            super().keyPressEvent(event)
        finally:
            cursor.endEditBlock()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        self._with_plain_layout(super().mousePressEvent, event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        self._with_plain_layout(super().mouseDoubleClickEvent, event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        if event.buttons() == Qt.MouseButton.NoButton:
            super().mouseMoveEvent(event)
        else:
            self._with_plain_layout(super().mouseMoveEvent, event)

    def inputMethodEvent(self, event: QInputMethodEvent) -> None:  # noqa: N802 (Qt API)
        composing = bool(event.preeditString())
        if composing:
            self._remove_ghost()  # the input method needs the pre-edit area now
        self._controller.set_composing(composing)
        super().inputMethodEvent(event)
        if not composing:
            self._report()

    def _with_plain_layout(self, handler, event) -> None:
        """Let Qt handle an event with the ghost out of the layout (hit tests and cursor
        moves must see document positions), then show it again if it still applies."""
        self._remove_ghost()
        try:
            handler(event)
        finally:
            self._render(self._controller.suggestion)

    def _applies(self, action: GhostAction) -> bool:
        if self.isReadOnly():
            return False
        if action in _ACCEPT_PARTS:
            return self._placed is not None
        if action is GhostAction.DISMISS:
            controller = self._controller
            return controller.suggestion is not None or controller.debounce_pending
        if action in (GhostAction.NEXT_ALTERNATIVE, GhostAction.PREVIOUS_ALTERNATIVE):
            return self._controller.suggestion is not None
        return True  # suggest now / retry always mean something

    def _perform(self, action: GhostAction) -> bool:
        controller = self._controller
        if action in _ACCEPT_PARTS:
            text = controller.accept(_ACCEPT_PARTS[action])
            if not text:
                return False
            self._insert_accepted(text)
            return True
        if action is GhostAction.DISMISS:
            return controller.dismiss()
        if action is GhostAction.NEXT_ALTERNATIVE:
            return controller.cycle(+1)
        if action is GhostAction.PREVIOUS_ALTERNATIVE:
            return controller.cycle(-1)
        if action is GhostAction.TRIGGER:
            controller.trigger()
            return True
        controller.retry()
        return True

    def _insert_accepted(self, text: str) -> None:
        """One edit block, so one Ctrl+Z takes the whole accepted text back (and it never
        merges with the typing before it)."""
        self._remove_ghost()
        cursor = self.textCursor()
        cursor.beginEditBlock()
        cursor.insertText(text)
        cursor.endEditBlock()
        self.setTextCursor(cursor)
        self.ensureCursorVisible()
        self._accept_ends_undo_step = True


def _types_text(event: QKeyEvent) -> bool:
    text = event.text()
    return bool(text) and (text.isprintable() or text == "\t")


def _without_ghost(ranges: list[QTextLayout.FormatRange]) -> list[QTextLayout.FormatRange]:
    return [r for r in ranges if not r.format.boolProperty(GHOST_FORMAT_PROPERTY)]
