"""Offer back the unsaved work a crashed or killed writer-app left behind.

The dialog lists every orphaned recovery copy (title, where it was saved, when it was
last saved and when the copy was taken). The writer can restore one of them into the
window, discard copies they do not want (after a confirmation: this deletes writing),
or decide later; whatever is left is offered again next time, and File > Recover
Unsaved Work opens this dialog again at any time.

As with the other dialogs, the window asks through a seam (`RecoveryChooser`), so
tests answer with `ScriptedRecoveryChooser` (tests/support/scripted.py) and the dialog
itself is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from writer_app.documents.recovery import RecoveryEntry
from writer_app.ui.dialogs import Choice, Messenger


@dataclass(frozen=True)
class RecoveryDecision:
    restore: str | None = None  # doc_id to open in the window
    discard: tuple[str, ...] = ()  # doc_ids whose copies the writer threw away


def describe_entry(entry: RecoveryEntry) -> str:
    where = entry.path or "never saved to a file"
    saved = f"last saved {_when(entry.last_saved)}" if entry.last_saved else "not saved yet"
    words = len(entry.text.split())
    return (
        f"{entry.title}\n{where}\n"
        f"{saved} · copy taken {_when(entry.written_at)} · about {words:,} words"
    )


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%d %b %Y, %H:%M")


class RecoveryDialog(QDialog):
    def __init__(
        self,
        entries: list[RecoveryEntry],
        messenger: Messenger,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Recover unsaved work")
        self._messenger = messenger
        self.restored: str | None = None
        self.discarded: list[str] = []
        intro = QLabel(
            "writer-app did not close properly last time. "
            "This unsaved work was kept; choose what to do with it."
        )
        intro.setWordWrap(True)
        self.list = QListWidget()
        self.list.setAlternatingRowColors(True)
        for entry in entries:
            item = QListWidgetItem(describe_entry(entry))
            item.setData(Qt.ItemDataRole.UserRole, entry.doc_id)
            self.list.addItem(item)
        self.list.setCurrentRow(0)
        self.list.itemDoubleClicked.connect(lambda _item: self.restore_selected())
        buttons = QDialogButtonBox()
        self.restore_button = QPushButton("Restore")
        self.discard_button = QPushButton("Discard…")
        self.later_button = QPushButton("Decide later")
        buttons.addButton(self.restore_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.discard_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        buttons.addButton(self.later_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.restore_button.clicked.connect(self.restore_selected)
        self.discard_button.clicked.connect(self.discard_selected)
        self.later_button.clicked.connect(self.reject)
        self.restore_button.setDefault(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.list)
        layout.addWidget(buttons)
        self.resize(560, 320)

    def decision(self) -> RecoveryDecision:
        return RecoveryDecision(self.restored, tuple(self.discarded))

    def restore_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.restored = item.data(Qt.ItemDataRole.UserRole)
            self.accept()

    def discard_selected(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        title = item.text().split("\n", 1)[0]
        answer = self._messenger.ask(
            "Discard unsaved work?",
            f"The unsaved copy of “{title}” will be deleted for good.",
            [Choice.DISCARD, Choice.CANCEL],
            Choice.CANCEL,
        )
        if answer != Choice.DISCARD:
            return
        self.discarded.append(item.data(Qt.ItemDataRole.UserRole))
        self.list.takeItem(self.list.row(item))
        if self.list.count() == 0:
            self.accept()


class RecoveryChooser:
    """Interface: let the writer decide about the orphaned copies."""

    def choose(
        self, parent: QWidget | None, entries: list[RecoveryEntry], messenger: Messenger
    ) -> RecoveryDecision:
        raise NotImplementedError


class QtRecoveryChooser(RecoveryChooser):
    def choose(
        self, parent: QWidget | None, entries: list[RecoveryEntry], messenger: Messenger
    ) -> RecoveryDecision:
        dialog = RecoveryDialog(entries, messenger, parent)
        dialog.exec()
        return dialog.decision()
