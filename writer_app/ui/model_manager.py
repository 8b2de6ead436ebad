"""The Model Manager window: what can be downloaded, what is installed, and the folder.

A non-modal dialog over the DownloadManager. Each catalog row shows size, the memory it
needs against this computer's, and its status with a live progress bar and the buttons
that fit (download / pause / resume / cancel / delete). Imported files get rows too.
Download failures are told to the writer by ModelsUi (model_menu.py), not here, so a
download started from the Model menu is reported the same way.

The window opens no connection by itself: only "Download" and "Refresh from hub" do.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from PySide6.QtCore import QEvent, QEventLoop, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QProgressDialog,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from writer_app.model_choice import MemoryQuote, memory_quote
from writer_app.models.catalog import (
    LICENSE,
    REPO_ID,
    Catalog,
    CatalogEntry,
    system_memory_bytes,
)
from writer_app.models.checkpoint import checkpoint_folder
from writer_app.models.downloader import DownloadPhase, Progress
from writer_app.models.errors import ImportCancelled, ModelsError
from writer_app.models.hf_import import import_checkpoint
from writer_app.models.store import InstalledModel, ModelStore, StoreContents
from writer_app.services.downloads import DownloadJob, DownloadManager, JobState
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.ui.dialogs import Choice, Messenger

MODEL_FILTERS = ("Models (*.bin *.ggml *.safetensors config.json);;GGML models (*.bin *.ggml);;"
                 "Hugging Face checkpoint folder (config.json *.safetensors);;All files (*)")
WONT_FIT = QColor("#c62828")  # needs more memory than the computer has
TIGHT = QColor("#b26a00")  # fits, but leaves little room for anything else
TIGHT_SHARE = 0.6


def human_size(size: int) -> str:
    """Sizes as a writer reads them: "850 kB", "73.6 MB", "1.55 GB"."""
    for unit, scale, digits in (("GB", 1e9, 2), ("MB", 1e6, 1)):
        if size >= scale:
            return f"{size / scale:,.{digits}f} {unit}"
    return f"{size / 1e3:,.0f} kB"


def progress_text(progress: Progress | None) -> str:
    if progress is None or progress.phase is DownloadPhase.CONNECTING:
        return "Connecting…"
    if progress.phase is DownloadPhase.RESUMING:
        return f"Checking the partial download… {progress.percent:.0f} %"
    if progress.phase is DownloadPhase.RETRYING:
        wait = progress.retry_in_seconds or 0
        return f"Connection trouble; trying again in {wait:.0f} s"
    if progress.phase in (DownloadPhase.VERIFYING, DownloadPhase.DONE):
        return "Verifying…"
    parts = [f"{progress.percent:.0f} %"]
    if progress.speed_bytes_per_second > 0:
        parts.append(f"{human_size(int(progress.speed_bytes_per_second))}/s")
    if progress.eta_seconds is not None:
        eta = math.ceil(progress.eta_seconds)
        parts.append(f"{eta} s left" if eta < 90 else f"{math.ceil(eta / 60)} min left")
    return " · ".join(parts)


# The longest status a download shows in its row; the status column is made wide enough
# for it in the window's font (longer waits and larger fonts are elided, see FittingBar).
LONGEST_STATUS = "Connection trouble; trying again in 16 s"


class FittingBar(QProgressBar):
    """A progress bar whose text stays on one line inside the bar: too long a text is
    elided ("Connection trouble; trying ag…") and the full text becomes its tooltip."""

    TEXT_PADDING = 8  # the style's margin around the label, both sides together

    def text(self) -> str:  # Qt's paint asks this virtual for the label
        full = super().text()
        room = self.contentsRect().width() - self.TEXT_PADDING
        shown = self.fontMetrics().elidedText(full, Qt.TextElideMode.ElideRight, max(0, room))
        tooltip = full if shown != full else ""
        if self.toolTip() != tooltip:
            self.setToolTip(tooltip)
        return shown

    def full_text(self) -> str:
        return super().text()


def status_column_width(widget: QWidget) -> int:
    """Wide enough for the longest status (plus the bar's frame and the cell's margins)."""
    return max(230, widget.fontMetrics().horizontalAdvance(LONGEST_STATUS)
               + FittingBar.TEXT_PADDING + 24)


# ---- the file and folder pickers (a seam, like ui/choosers.py) ------------------------


class ModelChooser:
    """Interface: ask the writer for a model file to import, or for a models folder."""

    def model_file(self, parent: QWidget | None, start_dir: str) -> str | None:
        raise NotImplementedError

    def folder(self, parent: QWidget | None, start_dir: str) -> str | None:
        raise NotImplementedError


class QtModelChooser(ModelChooser):
    def model_file(self, parent: QWidget | None, start_dir: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(parent, "Import Model", start_dir, MODEL_FILTERS)
        return path or None

    def folder(self, parent: QWidget | None, start_dir: str) -> str | None:
        return QFileDialog.getExistingDirectory(parent, "Models Folder", start_dir) or None


def import_chosen_model(chooser: ModelChooser, store: ModelStore, messenger: Messenger,
                        parent: QWidget | None) -> InstalledModel | None:
    """Ask for a GGML file, or a Hugging Face checkpoint folder (or any file in one), and
    add it to the models folder; the engine's validator or the checkpoint importer decides
    whether it is a usable model, and a rejected one is explained to the writer."""
    chosen = chooser.model_file(parent, str(Path.home()))
    if not chosen:
        return None
    try:
        if checkpoint_folder(Path(chosen)) is not None:
            return convert_with_progress(store, Path(chosen), parent)
        return import_with_progress(store, Path(chosen), parent)
    except ImportCancelled:
        return None  # the writer's own choice: nothing to explain
    except ModelsError as error:
        messenger.warning("Model not imported", str(error))
        return None


class _ImportRelay(QObject):
    progressed = Signal(str, int, int)  # phase ("" for a plain copy), done, total
    finished = Signal(object, object)  # InstalledModel or None, ModelsError or None


# A job gets a progress callback (phase, done, total) and a cancel check, and returns the
# model it added; the store's import_file and the checkpoint importer both fit this.
ImportJob = Callable[[Callable[[str, int, int], None], Callable[[], bool]], InstalledModel]


def _run_with_progress(job: ImportJob, *, title: str, label: Callable[[str], str],
                       name: str, parent: QWidget | None) -> InstalledModel:
    """Run an import on a worker thread, so the window keeps painting while hundreds of MB
    are read; a progress dialog with Cancel appears if it takes more than a moment, and
    names the phase. Raises what the job raises (OSError as a ModelsError)."""
    relay = _ImportRelay()
    cancelled = threading.Event()
    outcome: list[tuple[InstalledModel | None, ModelsError | None]] = []
    dialog = QProgressDialog(label(""), "Cancel", 0, 1000, parent)
    dialog.setWindowTitle(title)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(400)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.canceled.connect(cancelled.set)
    waiting = QEventLoop()

    def show(phase: str, done: int, total: int) -> None:
        dialog.setLabelText(label(phase))
        dialog.setValue(done * 1000 // max(1, total))

    relay.progressed.connect(show)
    relay.finished.connect(lambda model, error: (outcome.append((model, error)), waiting.quit()))

    def work() -> None:
        try:
            model = job(relay.progressed.emit, cancelled.is_set)
        except ModelsError as error:
            relay.finished.emit(None, error)
        except OSError as error:
            relay.finished.emit(None, ModelsError(f"Could not import {name}: {error}."))
        else:
            relay.finished.emit(model, None)

    worker = threading.Thread(target=work, name="model-import", daemon=True)
    worker.start()
    waiting.exec()  # the finished signal is queued to this thread, so it can't be missed
    worker.join()
    dialog.close()
    dialog.deleteLater()
    [(model, error)] = outcome
    if error is not None:
        raise error
    assert model is not None
    return model


def import_with_progress(store: ModelStore, source: Path,
                         parent: QWidget | None) -> InstalledModel:
    """store.import_file (a GGML file, checked and copied) with a progress dialog."""
    return _run_with_progress(
        lambda progress, cancel: store.import_file(
            source, progress=lambda done, total: progress("", done, total), should_cancel=cancel
        ),
        title="Import Model File", label=lambda phase: f"Importing {source.name}…",
        name=source.name, parent=parent,
    )


CONVERT_PHASES = {"converting": "Converting {name}…", "checking": "Checking the converted model…",
                  "adding": "Adding it to your models…"}


def convert_with_progress(store: ModelStore, source: Path,
                          parent: QWidget | None) -> InstalledModel:
    """import_checkpoint with a progress dialog that names the phase; Cancel stops the
    conversion between tensors, keeping nothing."""
    name = (source if source.is_dir() else source.parent).name
    return _run_with_progress(
        lambda progress, cancel: import_checkpoint(
            source, store, progress=progress, should_cancel=cancel
        ),
        title="Import Model", name=name, parent=parent,
        label=lambda phase: CONVERT_PHASES.get(phase or "converting", phase).format(name=name),
    )


# ---- what each row shows ----------------------------------------------------------------


class RowStatus(str, Enum):
    NOT_INSTALLED = "Not downloaded"
    QUEUED = "Queued"
    DOWNLOADING = "Downloading"
    STOPPING = "Stopping…"
    PARTIAL = "Partial"
    FAILED = "Failed"
    INSTALLED = "Installed"


ACTIONS: dict[RowStatus, tuple[str, ...]] = {
    RowStatus.NOT_INSTALLED: ("download",),
    RowStatus.QUEUED: ("cancel",),
    RowStatus.DOWNLOADING: ("pause", "cancel"),
    RowStatus.STOPPING: (),
    RowStatus.PARTIAL: ("resume", "cancel"),
    RowStatus.FAILED: ("retry", "cancel"),
    RowStatus.INSTALLED: ("delete",),
}
ACTION_LABELS = {"download": "Download", "pause": "Pause", "resume": "Resume",
                 "cancel": "Cancel", "retry": "Retry", "delete": "Delete"}
NETWORK_ACTIONS = frozenset({"download", "resume", "retry"})


@dataclass(frozen=True)
class ManagerRow:
    key: str  # catalog id, or the file name of an imported model
    model: str
    quantization: str
    size_bytes: int
    ram_bytes: int
    status: RowStatus
    percent: float | None = None  # how much of a partial or running download is there
    detail: str = ""  # why it failed, or where the file is
    entry: CatalogEntry | None = None
    path: Path | None = None

    @property
    def actions(self) -> tuple[str, ...]:
        return ACTIONS[self.status]


def build_rows(contents: StoreContents, catalog: Catalog, jobs: dict[str, DownloadJob],
               *, include_extras: bool, quote: MemoryQuote) -> list[ManagerRow]:
    """Catalog rows (extras only when asked for or present), then imported models; the
    memory each needs is `quote`'s (the chosen engine, the memory budget)."""
    installed = {m.name: m for m in contents.models}
    partials = {p.name: p for p in contents.partials}
    rows = []
    for item in catalog.items():
        entry = item.entry
        model, partial, job = installed.get(entry.filename), partials.get(entry.filename), \
            jobs.get(entry.id)
        if entry.extra and not include_extras and not (model or partial or job):
            continue
        row = ManagerRow(entry.id, entry.display_name, entry.quantization, item.size_bytes,
                         quote.entry_ram_bytes(entry), RowStatus.NOT_INSTALLED,
                         entry=entry)
        if model is not None:
            row = replace(row, status=RowStatus.INSTALLED, size_bytes=model.size_bytes,
                          ram_bytes=quote.ram_bytes(model.facts),
                          path=model.path,
                          detail=str(model.path))
        elif job is not None:
            status = {JobState.QUEUED: RowStatus.QUEUED, JobState.RUNNING: RowStatus.DOWNLOADING,
                      JobState.STOPPING: RowStatus.STOPPING, JobState.FAILED: RowStatus.FAILED}
            moving = job.state in (JobState.RUNNING, JobState.STOPPING)
            row = replace(row, status=status[job.state], detail=job.message,
                          percent=job.percent if moving else None)
        elif partial is not None:
            total = partial.total_bytes or item.size_bytes
            row = replace(row, status=RowStatus.PARTIAL,
                          percent=100.0 * partial.bytes_done / total if total else 0.0)
        rows.append(row)
    for model in contents.models:
        if model.imported:
            facts = model.facts
            rows.append(ManagerRow(model.name, f"{model.display_name} (imported)",
                                   facts.quantization, model.size_bytes,
                                   quote.ram_bytes(facts),
                                   RowStatus.INSTALLED, detail=str(model.path), path=model.path))
    return rows


# ---- the window ------------------------------------------------------------------------

COLUMNS = ("Model", "Quantization", "Size", "RAM needed", "Status", "")
SIZE_COLUMN, RAM_COLUMN, STATUS_COLUMN, ACTIONS_COLUMN = 2, 3, 4, 5


class ModelManagerWindow(QDialog):
    def __init__(
        self,
        manager: DownloadManager,
        keeper: SettingsKeeper,
        messenger: Messenger,
        chooser: ModelChooser,
        *,
        total_ram: int | None = None,
        in_use: Callable[[], Path | None] = lambda: None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model Manager")
        self.setModal(False)
        self.manager, self.keeper, self.messenger, self.chooser = manager, keeper, messenger, chooser
        self.total_ram = total_ram if total_ram is not None else system_memory_bytes()
        self._in_use = in_use
        self.rows: list[ManagerRow] = []
        self._buttons: dict[tuple[str, str], QPushButton] = {}
        self._bars: dict[str, QProgressBar] = {}
        self._refresh_soon = QTimer(self, singleShot=True, interval=0)
        self._refresh_soon.timeout.connect(self.refresh)
        self._build()
        for signal in (manager.jobChanged, manager.folderChanged, manager.catalogRefreshed,
                       keeper.changed, manager.cancelled, manager.finished):
            signal.connect(self._schedule_refresh)
        manager.progressed.connect(self._show_progress)
        manager.catalogRefreshed.connect(self._on_catalog_refreshed)
        manager.catalogRefreshFailed.connect(self._on_catalog_refresh_failed)
        self.resize(900, 560)
        self.refresh()

    def _build(self) -> None:
        self.intro = QLabel(wordWrap=True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the row buttons take the focus
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(STATUS_COLUMN, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(STATUS_COLUMN, status_column_width(self.table))
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.more = QCheckBox("Show more models (GPT-2 Medium and XL)")
        self.more.toggled.connect(self._schedule_refresh)
        self.refresh_button = QPushButton("Refresh from Hub")
        self.refresh_button.clicked.connect(self.refresh_from_hub)
        self.folder_label = QLabel(textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.change_folder_button = QPushButton("Change…")
        self.change_folder_button.clicked.connect(self.change_folder)
        self.usage_label = QLabel()
        self.notice = QLabel(wordWrap=True)
        self.import_button = QPushButton("Import…")
        self.import_button.clicked.connect(self.import_model)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        for button in (self.refresh_button, self.change_folder_button, self.import_button):
            button.setAutoDefault(False)  # Enter closes the window, it never downloads
        close.setDefault(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.table, 1)
        layout.addLayout(_row(self.more, None, self.refresh_button))
        layout.addLayout(_row(QLabel("Models folder:"), self.folder_label, None,
                              self.change_folder_button))
        layout.addLayout(_row(self.usage_label, None, self.import_button, close))
        layout.addWidget(self.notice)

    # ---- for tests and the composition root ----------------------------------------------

    def row(self, key: str) -> ManagerRow | None:
        return next((r for r in self.rows if r.key == key), None)

    def button(self, key: str, action: str) -> QPushButton | None:
        return self._buttons.get((key, action))

    def progress_bar(self, key: str) -> QProgressBar | None:
        return self._bars.get(key)

    def ram_colour(self, key: str) -> QColor | None:
        index = next((i for i, r in enumerate(self.rows) if r.key == key), None)
        item = self.table.item(index, RAM_COLUMN) if index is not None else None
        return item.foreground().color() if item and item.data(Qt.ItemDataRole.UserRole) else None

    # ---- filling the table ---------------------------------------------------------------

    def _schedule_refresh(self, *_args: object) -> None:
        self._refresh_soon.start()  # after the current signal: a button may be mid-click

    def refresh(self) -> None:
        self.manager.update_folder()  # e.g. watch a folder a download or import just created
        store = self.manager.store
        contents = store.scan()
        jobs = {job.id: job for job in self.manager.jobs()}
        self.rows = build_rows(contents, self.manager.catalog, jobs,
                               include_extras=self.more.isChecked(),
                               quote=memory_quote(self.keeper.current))
        self._buttons.clear()
        self._bars.clear()
        self.table.setRowCount(len(self.rows))
        for index, row in enumerate(self.rows):
            self._fill(index, row)
        self._show_surroundings(contents)

    def _fill(self, index: int, row: ManagerRow) -> None:
        cells = (row.model, row.quantization, human_size(row.size_bytes),
                 f"~{human_size(row.ram_bytes)}")
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if column in (SIZE_COLUMN, RAM_COLUMN):  # numbers line up on the right
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if row.detail:
                item.setToolTip(row.detail)
            self.table.setItem(index, column, item)
        self._colour_ram(self.table.item(index, RAM_COLUMN), row.ram_bytes)
        self.table.setCellWidget(index, STATUS_COLUMN, self._status_widget(row))
        self.table.setCellWidget(index, ACTIONS_COLUMN, self._action_widget(row))

    def _colour_ram(self, item: QTableWidgetItem, ram: int) -> None:
        total = self.total_ram
        if not total or ram <= total * TIGHT_SHARE:
            return
        wont_fit = ram > total
        item.setForeground(WONT_FIT if wont_fit else TIGHT)
        item.setData(Qt.ItemDataRole.UserRole, "wont_fit" if wont_fit else "tight")
        item.setToolTip(
            f"Needs more memory than this computer's {human_size(total)}; it will not run here."
            if wont_fit else f"Uses most of this computer's {human_size(total)} of memory."
        )

    def _status_widget(self, row: ManagerRow) -> QWidget:
        if row.percent is None or row.status is RowStatus.FAILED:
            label = QLabel(row.status.value)
            label.setContentsMargins(6, 0, 6, 0)
            if row.status is RowStatus.FAILED:
                label.setStyleSheet(f"color: {WONT_FIT.name()}")
                label.setToolTip(row.detail)
            return label
        holder = QWidget()
        layout = QHBoxLayout(holder)
        layout.setContentsMargins(4, 3, 4, 3)
        bar = FittingBar()
        layout.addWidget(bar)
        bar.setRange(0, 1000)
        bar.setValue(int(row.percent * 10))
        if row.status is RowStatus.DOWNLOADING:
            job = self.manager.job(row.key)
            bar.setFormat(progress_text(job.progress if job else None))
        else:
            bar.setFormat(f"{row.status.value} · {row.percent:.0f} %")
        self._bars[row.key] = bar
        return holder

    def _action_widget(self, row: ManagerRow) -> QWidget:
        holder = QWidget()
        layout = QHBoxLayout(holder)
        layout.setContentsMargins(4, 1, 4, 1)
        layout.setSpacing(4)
        offline = self.manager.offline
        for action in row.actions:
            button = QPushButton(ACTION_LABELS[action])
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, r=row, a=action: self.act(r.key, a))
            if offline and action in NETWORK_ACTIONS:
                button.setEnabled(False)
                button.setToolTip("Offline mode is on (privacy settings).")
            layout.addWidget(button)
            self._buttons[(row.key, action)] = button
        layout.addStretch(1)
        return holder

    def _show_surroundings(self, contents: StoreContents) -> None:
        offline = self.manager.offline
        host = self.manager.hub_settings().host
        memory = f" This computer has {human_size(self.total_ram)} of memory." \
            if self.total_ram else ""
        # The engines hold a model differently (engine/memory.py): say whose figures these are.
        memory += f" RAM needed is the whole app's with {memory_quote(self.keeper.current).engine}."
        source = f"Models come from {host} ({REPO_ID}, {LICENSE} licence), only when you ask."
        if offline:
            source = "Offline mode is on: nothing is downloaded and the hub is never contacted."
        self.intro.setText(source + memory)
        self.refresh_button.setEnabled(not offline and not self.manager.refreshing)
        folder = self.manager.models_dir
        self.folder_label.setText(str(folder))
        self.folder_label.setToolTip(str(folder))
        usage = self.manager.store.usage()
        parts = [f"Models use {human_size(usage.models_bytes)}" if usage.models_bytes
                 else "No models downloaded yet"]
        if usage.partial_bytes:
            parts.append(f"partial downloads {human_size(usage.partial_bytes)}")
        parts.append(f"{human_size(usage.free_bytes)} free on disk")
        self.usage_label.setText(" · ".join(parts))
        if contents.rejected:
            names = ", ".join(r.path.name for r in contents.rejected)
            self.notice.setToolTip("\n".join(r.reason for r in contents.rejected))
            self.notice.setText(f"Not usable as models (hover for why): {names}")

    def _show_progress(self, key: str, progress: Progress) -> None:
        bar = self._bars.get(key)
        if bar is None:
            self._schedule_refresh()  # the row has no bar yet: it just started
            return
        bar.setValue(int(progress.percent * 10))
        bar.setFormat(progress_text(progress))

    # ---- what the buttons do -------------------------------------------------------------

    def act(self, key: str, action: str) -> None:
        row = self.row(key)
        if row is None:
            return
        if action == "delete":
            self.delete(row)
        elif action in ("download", "resume", "retry") and row.entry is not None:
            self.manager.download(row.entry)
        elif action == "pause":
            self.manager.pause(key)
        elif action == "cancel":
            self.manager.cancel(key)

    def delete(self, row: ManagerRow) -> None:
        if row.path is None:
            return
        in_use = self._in_use()
        using = " It is the model in use; it keeps working until you choose another." \
            if in_use and Path(in_use) == row.path else ""
        question = (f"Delete {row.path.name} ({human_size(row.size_bytes)}) from "
                    f"{row.path.parent}?{using}")
        if row.entry is not None:
            question += " You can download it again later."
        if self.messenger.ask("Delete model", question, [Choice.YES, Choice.NO],
                              Choice.NO) is not Choice.YES:
            return
        try:
            freed = self.manager.store.delete(row.path.name)
        except ModelsError as error:
            self.messenger.warning("Model not deleted", str(error))
            return
        self.notice.setText(f"Deleted {row.path.name}; {human_size(freed)} freed.")
        self.refresh()

    def import_model(self) -> Path | None:
        model = import_chosen_model(self.chooser, self.manager.store, self.messenger, self)
        if model is None:
            return None
        self.manager.update_folder()
        self.notice.setText(f"Imported {model.name}.")
        self.refresh()
        return model.path

    def change_folder(self) -> None:
        chosen = self.chooser.folder(self, str(self.manager.models_dir))
        if not chosen:
            return
        self.keeper.update(lambda s: replace(s, models=replace(s.models, models_dir=chosen)))
        self.manager.update_folder()
        self.refresh()

    def refresh_from_hub(self) -> None:
        if self.manager.refresh_catalog(include_extras=self.more.isChecked()):
            self.refresh_button.setEnabled(False)
            self.notice.setText("Asking the hub for the latest sizes and checksums…")

    def _on_catalog_refreshed(self) -> None:
        self.notice.setText(f"Sizes and checksums are up to date with "
                            f"{self.manager.hub_settings().host}.")

    def _on_catalog_refresh_failed(self, message: str) -> None:
        self.refresh_button.setEnabled(not self.manager.offline)
        self.notice.setText("")
        self.messenger.warning("Catalog not refreshed", message)

    # ---- rescans: files dropped into the folder while the window was away -------------------

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.WindowActivate:
            self._schedule_refresh()
        return super().event(event)

    def showEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        self.refresh()
        super().showEvent(event)


def _row(*widgets: QWidget | None) -> QHBoxLayout:
    """A horizontal line of widgets; None is a stretch."""
    layout = QHBoxLayout()
    for widget in widgets:
        if widget is None:
            layout.addStretch(1)
        else:
            layout.addWidget(widget)
    return layout
