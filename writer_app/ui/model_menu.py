"""The Model menu: choosing, downloading and importing models, and the Model Manager window.

    Model
      ● Demo (Jane Austen, tiny)
      ─────────
      ○ GPT-2 Small (124M), q4_0
      ○ GPT-2 Large (774M), q4_0 — not downloaded (443 MB)
      ─────────
      ○ my-finetune (imported)
      ─────────
        Manage Models…
        Import Model…

Choosing an installed model loads it in the background (the old one keeps suggesting
until the new one is ready) and, once it has loaded, remembers it in the settings.
Choosing one that is not downloaded offers the download and loads the model when it is
done. A failed load leaves the previous model checked; app.py shows the reason.
Every download failure, whoever started it, is told here, with a retry when one may help.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

from writer_app.assets import demo_model_path
from writer_app.engine.ggml import ModelFacts
from writer_app.model_choice import DEMO_MODEL_NAME, chosen_model
from writer_app.models.catalog import DEFAULT_QUANTIZATION, CatalogEntry
from writer_app.models.store import PartialDownload
from writer_app.services.downloads import DownloadManager, FailureKind, JobState
from writer_app.services.inference import InferenceService
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.ui.dialogs import Choice, Messenger
from writer_app.ui.model_manager import (
    ModelChooser,
    ModelManagerWindow,
    QtModelChooser,
    human_size,
    import_chosen_model,
)

MENU_FAMILIES = ("gpt2", "gpt2-large")  # always offered; other families once installed


@dataclass(frozen=True)
class MenuChoice:
    label: str
    path: Path | None = None  # an installed file: choosing it loads it
    entry: CatalogEntry | None = None  # a catalog model not installed: choosing offers it
    enabled: bool = True
    tooltip: str = ""


def _same(a: str | Path | None, b: str | Path | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


class ModelsUi(QObject):
    """The Model menu and the Model Manager window, over the app's download manager."""

    def __init__(
        self,
        *,
        manager: DownloadManager,
        service: InferenceService,
        keeper: SettingsKeeper,
        messenger: Messenger,
        menu: QMenu,
        parent_window: QWidget,
        chooser: ModelChooser | None = None,
        demo_path: Path | None = None,
        total_ram: int | None = None,
        engine_menu: QMenu | None = None,
    ) -> None:
        super().__init__(parent_window)
        self.engine_menu = engine_menu  # Model ▸ Engine (ui/engine_menu.py), kept last
        self.service, self.keeper, self.messenger, self.menu = service, keeper, messenger, menu
        self.parent_window = parent_window
        self.chooser = chooser or QtModelChooser()
        self.demo_path = demo_path or demo_model_path()
        self.total_ram = total_ram
        self.manager = manager
        self.window: ModelManagerWindow | None = None
        self._pending: Path | None = None  # chosen, loading
        self._load_after_download: str | None = None  # catalog id
        self._choices: list[tuple[QAction, MenuChoice]] = []
        self._group = QActionGroup(self)
        self._group.setExclusive(True)
        self.manage_action = QAction("&Manage Models…", self)
        self.manage_action.triggered.connect(self.open_manager)
        self.import_action = QAction("&Import Model…", self)
        self.import_action.triggered.connect(self.import_model)

        menu.aboutToShow.connect(self.refresh_menu)
        service.modelLoaded.connect(self._on_loaded)
        service.modelFailed.connect(self._on_load_failed)
        self.manager.finished.connect(self._on_downloaded)
        self.manager.failed.connect(self._on_download_failed)
        self.manager.jobChanged.connect(self.refresh_menu)
        self.manager.folderChanged.connect(self.refresh_menu)
        self.refresh_menu()

    # ---- the menu ---------------------------------------------------------------------

    def choices(self) -> list[MenuChoice | None]:
        """What the menu offers, in order; None is a separator."""
        store = self.manager.store
        contents = store.scan()
        installed = {m.name: m for m in contents.models}
        partials = {p.name: p for p in contents.partials}
        demo = MenuChoice(DEMO_MODEL_NAME, self.demo_path, enabled=self.demo_path.is_file(),
                          tooltip=str(self.demo_path) if self.demo_path.is_file()
                          else "The demo model is not part of this installation.")
        items: list[MenuChoice | None] = [demo, None]
        for entry in self.manager.catalog.entries():
            model = installed.get(entry.filename)
            if model is not None:
                items.append(MenuChoice(entry.label, model.path, tooltip=str(model.path)))
            elif entry.family in MENU_FAMILIES and entry.quantization == DEFAULT_QUANTIZATION:
                partial = partials.get(entry.filename)
                items.append(MenuChoice(f"{entry.label} — {self._not_installed(entry, partial)}",
                                        entry=entry))
        imported = [m for m in contents.models if m.imported]
        if imported:
            items.append(None)
            items += [MenuChoice(f"{m.display_name} (imported)", m.path, tooltip=str(m.path))
                      for m in imported]
        current = self.current_path()
        if current and not any(c and _same(c.path, current) for c in items):
            items += [None, MenuChoice(current.name, current, tooltip=str(current))]
        return items

    def _not_installed(self, entry: CatalogEntry, partial: PartialDownload | None) -> str:
        job = self.manager.job(entry.id)
        if job is not None and job.state is JobState.QUEUED:
            return "queued for download"
        if job is not None and job.state in (JobState.RUNNING, JobState.STOPPING):
            return f"downloading ({job.percent:.0f} %)"
        if partial is not None and partial.total_bytes:
            done = 100 * partial.bytes_done / partial.total_bytes
            return f"partly downloaded ({done:.0f} %)"
        size = self.manager.catalog.item(entry).size_bytes
        return f"not downloaded ({human_size(size)})"

    def current_path(self) -> Path | None:
        """The model the menu shows as chosen: the one loading, else the one in use."""
        if self._pending is not None:
            return self._pending
        if self.service.facts is not None:
            return Path(self.service.facts.path)
        return chosen_model(self.keeper.current, self.demo_path)  # what the app starts with

    def refresh_menu(self, *_args: object) -> None:
        for action, _choice in self._choices:
            self._group.removeAction(action)
            action.deleteLater()  # it may be the one whose signal we are in
        self._choices.clear()
        self.menu.clear()
        current = self.current_path()
        for choice in self.choices():
            if choice is None:
                self.menu.addSeparator()
                continue
            action = QAction(choice.label.replace("&", "&&"), self._group)
            action.setCheckable(True)
            action.setEnabled(choice.enabled)
            action.setChecked(choice.path is not None and _same(choice.path, current))
            action.setToolTip(choice.tooltip)
            action.setStatusTip(choice.tooltip)
            action.triggered.connect(lambda _=False, c=choice: self.choose(c))
            self.menu.addAction(action)
            self._choices.append((action, choice))
        self.menu.addSeparator()
        self.menu.addAction(self.manage_action)
        self.menu.addAction(self.import_action)
        if self.engine_menu is not None:
            self.menu.addSeparator()
            self.menu.addMenu(self.engine_menu)

    def actions(self) -> list[tuple[QAction, MenuChoice]]:
        return list(self._choices)

    def action(self, label_start: str) -> QAction:
        """The first model action whose label starts with `label_start` (for tests)."""
        return next(a for a, c in self._choices if c.label.startswith(label_start))

    def checked_choice(self) -> MenuChoice | None:
        return next((c for a, c in self._choices if a.isChecked()), None)

    # ---- choosing ---------------------------------------------------------------------

    def choose(self, choice: MenuChoice) -> None:
        if choice.path is not None:
            self.load(choice.path)
        elif choice.entry is not None:
            self.offer_download(choice.entry)
            self.refresh_menu()  # the not-downloaded model is not the chosen one (yet)

    def load(self, path: Path) -> None:
        """Load in the background; remembered once loaded."""
        facts = self.service.facts
        if _same(self._pending, path) or (
                self._pending is None and facts is not None and _same(facts.path, path)):
            self.refresh_menu()
            return
        self._pending = Path(path)
        self.service.load_model(path)
        self.refresh_menu()

    def _on_loaded(self, facts: ModelFacts) -> None:
        if self._pending is not None and _same(facts.path, self._pending):
            chosen = str(self._pending)
            self._pending = None
            self.keeper.update(
                lambda s: replace(s, models=replace(s.models, active_model=chosen)))
        self.refresh_menu()

    def _on_load_failed(self, path: str, _message: str) -> None:
        if _same(path, self._pending):
            self._pending = None  # the previous model stays checked (and in use)
        self.refresh_menu()

    # ---- downloads ------------------------------------------------------------------------

    def offer_download(self, entry: CatalogEntry) -> None:
        job = self.manager.job(entry.id)
        if job is not None and job.state is not JobState.FAILED:
            self._load_after_download = entry.id
            self.messenger.info("Model still downloading",
                                f"{entry.label} is still downloading ({job.percent:.0f} %). "
                                "It will be loaded as soon as it is ready.")
            return
        if self.manager.offline:
            self.messenger.info("Model not downloaded",
                                f"{entry.label} is not on this computer, and offline mode is on, "
                                "so it cannot be downloaded. Turn offline mode off in the "
                                "privacy settings to download it.")
            return
        size = human_size(self.manager.catalog.item(entry).size_bytes)
        host = self.manager.hub_settings().host
        answer = self.messenger.ask(
            "Download model?",
            f"{entry.label} is not on this computer yet. Download it from {host} now ({size})? "
            "You can keep writing meanwhile; it is loaded as soon as it is ready.",
            [Choice.YES, Choice.NO], Choice.YES)
        if answer is Choice.YES:
            self._load_after_download = entry.id
            self.manager.download(entry)

    def _on_downloaded(self, entry_id: str, path: str) -> None:
        self.refresh_menu()
        if entry_id == self._load_after_download:
            self._load_after_download = None
            self.load(Path(path))

    def _on_download_failed(self, entry_id: str, message: str, kind: str) -> None:
        entry = self.manager.catalog.get(entry_id)
        if FailureKind(kind).retryable:
            answer = self.messenger.ask("Download failed", f"{message}\n\nTry again?",
                                        [Choice.RETRY, Choice.CANCEL], Choice.RETRY)
            if answer is Choice.RETRY:
                self.manager.download(entry)
                return
        else:
            self.messenger.warning("Download failed", message)
        if entry_id == self._load_after_download:
            self._load_after_download = None

    # ---- the window and import --------------------------------------------------------------

    def open_manager(self) -> ModelManagerWindow:
        if self.window is None:
            self.window = ModelManagerWindow(
                self.manager, self.keeper, self.messenger, self.chooser,
                total_ram=self.total_ram, parent=self.parent_window,
                in_use=lambda: Path(self.service.facts.path) if self.service.facts else None,
            )
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()
        return self.window

    def import_model(self) -> None:
        """Model › Import Model…: add a GGML file or convert a checkpoint folder, and use it."""
        model = import_chosen_model(self.chooser, self.manager.store, self.messenger,
                                    self.parent_window)
        if model is not None:
            self.manager.update_folder()
            self.load(model.path)
