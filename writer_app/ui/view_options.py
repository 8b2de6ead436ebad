"""How the text looks: prose font, zoom, line wrap, theme and a centred text column.

Every choice goes through the SettingsKeeper, and the look is re-applied from the
settings it emits, so what is on screen and what is saved can never disagree.

The text column: long lines are tiring to read, so the text never gets wider than about
COLUMN_CHARS average characters; on a wide window the rest becomes even side margins
(viewport margins, so the scroll bar stays at the window's edge).
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QFont, QFontDatabase, QFontInfo, QPalette
from PySide6.QtWidgets import QFrame, QPlainTextEdit

from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import EditorSettings, Settings, Theme
from writer_app.ui.themes import apply_theme

# Book-like serifs, best first; the first one installed is the default prose font.
PROSE_FONTS = (
    "Charter",
    "Iowan Old Style",
    "Source Serif 4",
    "Source Serif Pro",
    "Georgia",
    "Palatino Linotype",
    "Cambria",
    "Noto Serif",
    "Liberation Serif",
    "DejaVu Serif",
)
COLUMN_CHARS = 72
SIDE_MARGIN_MIN = 24  # px; text never touches the window edge
TOP_MARGIN = 16
TOP_MARGIN_FOCUS = 64  # focus mode: a calm band above the first line
ZOOM_STEPS = (50, 67, 80, 90, 100, 110, 125, 150, 175, 200, 250, 300, 400)


def default_prose_family() -> str:
    installed = set(QFontDatabase.families())
    for family in PROSE_FONTS:
        if family in installed:
            return family
    serif = QFont()
    serif.setStyleHint(QFont.StyleHint.Serif)
    return QFontInfo(serif).family()


def next_zoom(zoom: int, direction: int) -> int:
    """The next step up (direction 1) or down (-1) from `zoom`, staying in range."""
    if direction > 0:
        return next((step for step in ZOOM_STEPS if step > zoom), ZOOM_STEPS[-1])
    return next((step for step in reversed(ZOOM_STEPS) if step < zoom), ZOOM_STEPS[0])


class EditorLook(QObject):
    def __init__(self, editor: QPlainTextEdit, keeper: SettingsKeeper) -> None:
        super().__init__(editor)
        self.editor = editor
        self._keeper = keeper
        self._theme: Theme | None = None
        self._top_margin = TOP_MARGIN
        self._column_px = 0
        # The margins beside the column must look like the page, not like the window.
        editor.setBackgroundRole(QPalette.ColorRole.Base)
        editor.setAutoFillBackground(True)
        editor.setFrameShape(QFrame.Shape.NoFrame)
        editor.installEventFilter(self)
        keeper.subscribe(self.apply)

    # ----- what the menus call -------------------------------------------------------

    def zoom_in(self) -> None:
        self._set_editor(zoom=next_zoom(self._keeper.current.editor.zoom, 1))

    def zoom_out(self) -> None:
        self._set_editor(zoom=next_zoom(self._keeper.current.editor.zoom, -1))

    def reset_zoom(self) -> None:
        self._set_editor(zoom=100)

    def set_font(self, font: QFont) -> None:
        low, high = EditorSettings.LIMITS["font_size"]
        size = round(font.pointSizeF()) if font.pointSizeF() > 0 else EditorSettings.font_size
        self._set_editor(font_family=font.family(), font_size=min(max(size, low), high))

    def set_line_wrap(self, wrap: bool) -> None:
        self._set_editor(line_wrap=wrap)

    def set_theme(self, theme: Theme) -> None:
        self._set_editor(theme=theme)

    def set_focus_layout(self, focused: bool) -> None:
        self._top_margin = TOP_MARGIN_FOCUS if focused else TOP_MARGIN
        self._update_margins()

    def base_font(self) -> QFont:
        """The chosen font at its chosen size, without zoom (what the font dialog edits)."""
        editor = self._keeper.current.editor
        font = QFont(editor.font_family or default_prose_family())
        font.setPointSize(editor.font_size)
        return font

    # ----- applying settings ---------------------------------------------------------

    def apply(self, settings: Settings) -> None:
        editor = settings.editor
        font = self.base_font()
        font.setPointSizeF(editor.font_size * editor.zoom / 100)
        font.setStyleHint(QFont.StyleHint.Serif)
        self.editor.setFont(font)
        wrap = QPlainTextEdit.LineWrapMode
        self.editor.setLineWrapMode(wrap.WidgetWidth if editor.line_wrap else wrap.NoWrap)
        if editor.theme != self._theme:  # the palette is app-wide; only touch it on change
            self._theme = editor.theme
            apply_theme(editor.theme)
        self._column_px = self.editor.fontMetrics().averageCharWidth() * COLUMN_CHARS
        self._update_margins()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.editor and event.type() == QEvent.Type.Resize:
            self._update_margins()
        return False

    def _update_margins(self) -> None:
        available = self.editor.width() - 2 * self.editor.frameWidth()
        side = max(SIDE_MARGIN_MIN, (available - self._column_px) // 2)
        self.editor.setViewportMargins(side, self._top_margin, side, 0)

    def _set_editor(self, **changes: object) -> None:
        self._keeper.update(
            lambda settings: replace(settings, editor=replace(settings.editor, **changes))
        )
