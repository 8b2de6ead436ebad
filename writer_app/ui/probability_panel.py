"""The Token probabilities panel: what the model thinks could come next, and why the
suggestion says what it says.

Two views:
    Next token   the likeliest tokens at the cursor, as horizontal bars, from the
                 NextTokenProbe (services/next_token_probe.py): computed from the model's
                 logits at the current temperature after a short pause in typing or
                 moving; every edit or cursor move cancels the one in flight, so typing
                 never waits.
    Suggestion   the suggestion on screen, token by token, each tinted by how likely the
                 model made it. Selecting one lists the likeliest tokens at that step;
                 clicking another token there makes the suggestion continue from it
                 (SuggestionController.choose_token).

Probes only run while the panel is visible.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from writer_app.engine.protocol import Alternative as TokenChoice
from writer_app.services.inference import InferenceService
from writer_app.services.next_token_probe import NextTokenProbe
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.services.suggestion import TokenStep
from writer_app.services.suggestion_controller import SuggestionController
from writer_app.settings import Settings

PROBABILITY_ROLE = Qt.ItemDataRole.UserRole + 1
TOKEN_ID_ROLE = Qt.ItemDataRole.UserRole + 2


def display_token(text: str) -> str:
    """A token made visible: spaces that start it as ␣, line breaks as ↵, tabs as ⇥."""
    body = text.lstrip(" ")
    shown = "␣" * (len(text) - len(body)) + body
    return shown.replace("\n", "↵").replace("\t", "⇥") or "∅"


def percent_text(probability: float) -> str:
    if 0 < probability < 0.001:
        return "<0.1%"
    return f"{100 * probability:.1f}%"


def probability_color(probability: float) -> QColor:
    """Pale red (unlikely) through amber to pale green (likely); dark text reads on all."""
    hue = 0.33 * max(0.0, min(1.0, probability)) ** 0.5
    return QColor.fromHsvF(hue, 0.38, 1.0)


# ---- views -------------------------------------------------------------------------------------


class BarDelegate(QStyledItemDelegate):
    """Draws a row as: token text | a bar as long as its probability | the percentage."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        self.initStyleOption(option, index)
        widget = option.widget
        style = widget.style() if widget else None
        if style is not None:
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, widget
            )
        probability = float(index.data(PROBABILITY_ROLE) or 0.0)
        rect = option.rect.adjusted(6, 2, -6, -2)
        text_width = int(rect.width() * 0.4)
        bar_area = QRect(
            rect.left() + text_width + 6,
            rect.top() + 2,
            rect.width() - text_width - 6,
            rect.height() - 4,
        )
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = option.palette
        track = palette.color(QPalette.ColorRole.Mid)
        track.setAlpha(50)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(track)
        painter.drawRoundedRect(bar_area, 3, 3)
        bar = QRect(bar_area)
        bar.setWidth(max(2, round(bar_area.width() * probability)))
        painter.setBrush(palette.color(QPalette.ColorRole.Highlight))
        painter.drawRoundedRect(bar, 3, 3)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        painter.setFont(option.font)
        token_rect = QRect(rect.left(), rect.top(), text_width, rect.height())
        elided = option.fontMetrics.elidedText(option.text, Qt.TextElideMode.ElideRight, text_width)
        painter.drawText(
            token_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, elided
        )
        painter.drawText(
            bar_area.adjusted(0, 0, -4, 0),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
            percent_text(probability),
        )
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        size = super().sizeHint(option, index)
        return QSize(size.width(), max(size.height() + 6, 22))


class ProbabilityList(QListWidget):
    """Tokens with their probabilities as horizontal bars; `chosen` when one is clicked."""

    chosen = Signal(int)  # token id

    def __init__(self, clickable: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setItemDelegate(BarDelegate(self))
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        mode = QAbstractItemView.SelectionMode.SingleSelection
        self.setSelectionMode(mode if clickable else QAbstractItemView.SelectionMode.NoSelection)
        if clickable:
            self.itemClicked.connect(lambda item: self.chosen.emit(item.data(TOKEN_ID_ROLE)))

    def show_choices(self, choices: Sequence[TokenChoice], marked: int | None = None) -> None:
        self.clear()
        for choice in choices:
            item = QListWidgetItem(display_token(choice.text))
            item.setData(PROBABILITY_ROLE, choice.probability)
            item.setData(TOKEN_ID_ROLE, choice.token_id)
            item.setToolTip(f"{choice.text!r}: {100 * choice.probability:.2f}%")
            if choice.token_id == marked:
                font = QFont(self.font())
                font.setBold(True)
                item.setFont(font)
            self.addItem(item)

    def rows(self) -> list[tuple[int, str, float]]:
        """(token id, shown text, probability) of every row, top to bottom."""
        return [
            (item.data(TOKEN_ID_ROLE), item.text(), item.data(PROBABILITY_ROLE))
            for item in map(self.item, range(self.count()))
        ]


class ChipDelegate(QStyledItemDelegate):
    """A token as a rounded chip in its probability's tint; the selected one is ringed."""

    PADDING = 5

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        self.initStyleOption(option, index)
        palette = option.palette
        chip = option.rect.adjusted(1, 1, -1, -1)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        brush = index.data(Qt.ItemDataRole.BackgroundRole)
        fill = brush.color() if brush is not None else palette.color(QPalette.ColorRole.Button)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        ring = palette.color(QPalette.ColorRole.Highlight) if selected else fill.darker(115)
        painter.setPen(QPen(ring, 2 if selected else 1))
        painter.setBrush(fill)
        painter.drawRoundedRect(chip, 4, 4)
        painter.setPen(
            QColor("black") if brush is not None else palette.color(QPalette.ColorRole.ButtonText)
        )
        painter.setFont(option.font)
        painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, option.text)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        metrics = option.fontMetrics
        text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        return QSize(
            metrics.horizontalAdvance(text) + 2 * self.PADDING + 2,
            metrics.height() + self.PADDING + 2,
        )


class TokenStrip(QListWidget):
    """The suggestion's tokens as wrapping chips, tinted by probability."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setItemDelegate(ChipDelegate(self))
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSpacing(2)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setMaximumHeight(66)  # two rows of chips; more scroll
        self.setMinimumHeight(36)

    def show_steps(self, steps: Sequence[TokenStep]) -> None:
        selected = self.currentRow()
        self.blockSignals(True)
        self.clear()
        for step in steps:
            item = QListWidgetItem(display_token(step.text))
            if step.probability is not None:
                item.setBackground(probability_color(step.probability))
                item.setForeground(QColor("black"))
                item.setToolTip(f"{step.text!r}: {100 * step.probability:.2f}%")
            self.addItem(item)
        self.blockSignals(False)
        if 0 <= selected < self.count():
            self.setCurrentRow(selected)
        else:
            self.setCurrentRow(-1)
            self.currentRowChanged.emit(-1)


# ---- the panel ---------------------------------------------------------------------------------


class ProbabilityPanel(QWidget):
    def __init__(
        self,
        controller: SuggestionController,
        service: InferenceService,
        keeper: SettingsKeeper,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("probabilityPanel")
        self.setMinimumWidth(300)
        self._controller = controller
        self.probe = NextTokenProbe(controller, service, keeper.current.sampling, parent=self)
        keeper.subscribe(self._settings_changed)  # now and on every change
        self._steps: list[TokenStep] = []

        self.next_title = _heading("Next token at the cursor")
        self.next_list = ProbabilityList(clickable=False)
        self.next_list.setToolTip(
            "The tokens the model thinks likeliest right after the cursor, at the current "
            "temperature."
        )
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.strip = TokenStrip()
        self.strip.setToolTip(
            "The suggestion token by token: green was likely, red was a long shot. "
            "Select one to see what else the model considered there."
        )
        self.choice_title = QLabel()
        self.choice_title.setWordWrap(True)
        self.choice_list = ProbabilityList(clickable=True)
        self.choice_list.setToolTip("Click a token to continue the suggestion from it.")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.addWidget(self.next_title)
        layout.addWidget(self.next_list, 3)
        layout.addWidget(self.note)
        layout.addWidget(_heading("Suggestion"))
        layout.addWidget(self.strip, 0)
        layout.addWidget(self.choice_title)
        layout.addWidget(self.choice_list, 2)

        self.probe.updated.connect(self._show_next)
        self.probe.failed.connect(self.note.setText)
        self.strip.currentRowChanged.connect(self._show_step)
        self.choice_list.chosen.connect(self.choose)
        controller.ghostChanged.connect(self._show_suggestion)
        self._show_suggestion(controller.suggestion)

    def set_active(self, active: bool) -> None:
        self.probe.set_active(active)

    def _settings_changed(self, settings: Settings) -> None:
        self.probe.set_sampling(settings.sampling)

    # ---- next token ---------------------------------------------------------------------

    def _show_next(self, choices: tuple[TokenChoice, ...]) -> None:
        self.next_list.show_choices(choices)
        self.note.setText(f"At temperature {self.probe.temperature:.2f}.")

    # ---- the suggestion -----------------------------------------------------------------

    @property
    def steps(self) -> list[TokenStep]:
        return list(self._steps)

    def _show_suggestion(self, suggestion: object) -> None:
        current = getattr(suggestion, "current", None)
        steps = current.visible_steps() if current is not None else []
        if steps == self._steps:
            return
        self._steps = steps
        self.strip.show_steps(steps)
        if not steps:
            self.choice_title.setText("No suggestion on screen.")

    def select_step(self, index: int) -> None:
        self.strip.setCurrentRow(index)

    def _show_step(self, index: int) -> None:
        if not 0 <= index < len(self._steps):
            self.choice_list.clear()
            if self._steps:
                self.choice_title.setText("Select a token above to see its alternatives.")
            return
        step = self._steps[index]
        self.choice_title.setText(
            f"Instead of “{display_token(step.text)}”: click one to continue from it."
        )
        self.choice_list.show_choices(step.choices, marked=step.token_id)

    def choose(self, token_id: int) -> bool:
        """Continue the suggestion from the selected step with `token_id`."""
        return self._controller.choose_token(self.strip.currentRow(), token_id)


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label
