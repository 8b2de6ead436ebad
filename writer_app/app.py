"""The composition root: the one place that builds the app's objects and wires them.

Nothing else creates services, stores or windows: the settings keeper, the recovery
store, the download manager, the inference service and every window part are made here,
and each object gets what it needs passed in (never the WriterApp), so tests can build
the same graph with test doubles (e.g. a ScriptedMessenger, tests/support/scripted.py).
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from writer_app import __version__
from writer_app.assets import demo_model_path, resources_dir
from writer_app.documents.recovery import RecoveryError, RecoveryStore
from writer_app.engine.ggml import ModelFacts
from writer_app.engine.session import DEFAULT_ENGINE
from writer_app.model_choice import DEMO_MODEL_NAME, chosen_model, memory_budget_bytes
from writer_app.models.catalog import Catalog
from writer_app.paths import AppPaths
from writer_app.services.downloads import DownloaderFactory, DownloadManager
from writer_app.services.inference import EngineState, InferenceService, engine_threads
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.services.suggestion_controller import (
    SuggestionController,
    SuggestionPreferences,
)
from writer_app.settings import Settings, SettingsStore
from writer_app.ui.choosers import FileChooser, FontChooser
from writer_app.ui.dialogs import Messenger, QtMessenger
from writer_app.ui.engine_menu import EngineMenu
from writer_app.ui.engine_notice import EngineNotice
from writer_app.ui.ghost_editor import GhostTextEditor
from writer_app.ui.main_window import MainWindow
from writer_app.ui.model_manager import ModelChooser
from writer_app.ui.model_menu import ModelsUi
from writer_app.ui.recovery_dialog import RecoveryChooser
from writer_app.ui.remote_engine import RemoteEngineUi, install_remote_engine
from writer_app.ui.sampling_panel import NameAsker, SamplingDocks, install_sampling
from writer_app.ui.suggestion_menu import SuggestionMenu


def preferences_from(settings: Settings) -> SuggestionPreferences:
    editor = settings.editor
    return SuggestionPreferences(
        auto_trigger=editor.autosuggest,
        debounce_ms=editor.debounce_ms,
        suggest_mid_word=editor.suggest_mid_word,
        ignore_text_after_cursor=editor.ignore_text_after_cursor,
    )


def model_name(path: Path, catalog: Catalog | None = None, demo: Path | None = None) -> str:
    """What the app calls a model file before it is loaded: the demo, its catalog name,
    else its file name."""
    if path == (demo or demo_model_path()):
        return DEMO_MODEL_NAME
    entry = catalog.by_filename(path.name) if catalog is not None else None
    return entry.label if entry is not None else path.name


def model_label(facts: ModelFacts, catalog: Catalog | None = None) -> str:
    """What the status bar calls a loaded model: its catalog name (which names the
    quantization) if it has one, else its name and quantization."""
    path = Path(facts.path)
    entry = catalog.by_filename(path.name) if catalog is not None else None
    if entry is not None and path != demo_model_path():
        return entry.label
    return f"{model_name(path)} · {facts.quantization}"


def model_details(facts: ModelFacts, context_tokens: int) -> str:
    """The status bar's tooltip: the file, and the context the app gives the model."""
    context = f"reads up to {context_tokens} tokens before the cursor"
    if context_tokens < facts.n_ctx:
        context += f" (of {facts.n_ctx}: capped to the memory budget)"
    return f"{facts.path}\n{context}"


def engine_settings(
    settings: Settings, cores: int | None = None
) -> tuple[int, int | None, str, int]:
    """The engine's threads ("auto" resolved for `cores` physical cores, this machine's by
    default), the app's memory budget in bytes (None: no budget), the engine's name and
    its layers on a GPU."""
    return (engine_threads(settings.models.threads, cores), memory_budget_bytes(settings),
            settings.models.engine, settings.models.gpu_layers)


def model_status(facts: ModelFacts, engine: str | None, catalog: Catalog | None = None) -> str:
    """The status bar's model text: the model, and the engine when it is not the default."""
    label = model_label(facts, catalog)
    return f"{label} · {engine}" if engine and engine != DEFAULT_ENGINE else label


@dataclass
class WriterApp:
    """Everything the running editor is made of."""

    paths: AppPaths
    keeper: SettingsKeeper  # the one live Settings; everything subscribes to it
    recovery: RecoveryStore | None  # None: crash recovery is off (or its folder failed)
    downloads: DownloadManager
    service: InferenceService
    controller: SuggestionController
    editor: GhostTextEditor
    window: MainWindow
    models_ui: ModelsUi  # the Model menu and the Model Manager
    sampling_docks: SamplingDocks  # sampling sliders, token probabilities
    suggestion_menu: SuggestionMenu  # Edit ▸ Suggestions
    demo_path: Path
    engine_menu: EngineMenu  # Model ▸ Engine: ctransformers / llama.cpp, Threads
    remote_ui: RemoteEngineUi  # Model ▸ Engine ▸ Remote server…
    cores: int | None = None  # physical cores "auto" counts (None: this machine's)

    @classmethod
    def build(
        cls,
        *,
        paths: AppPaths | None = None,
        messenger: Messenger | None = None,
        file_chooser: FileChooser | None = None,
        font_chooser: FontChooser | None = None,
        recovery_chooser: RecoveryChooser | None = None,
        model_chooser: ModelChooser | None = None,
        preset_file_chooser: FileChooser | None = None,
        name_asker: NameAsker | None = None,
        demo_path: Path | None = None,
        total_ram: int | None = None,
        make_downloader: DownloaderFactory | None = None,
        cores: int | None = None,
    ) -> WriterApp:
        """The app with the real settings file, recovery folder and models folder; every
        dialog is a seam (Qt's by default; tests pass scripted ones)."""
        paths = paths or AppPaths.default()
        messenger = messenger or QtMessenger()
        demo_path = demo_path or demo_model_path()
        store = SettingsStore.for_paths(paths)
        loaded = store.load()
        notices = [loaded.notice] if loaded.notice else []
        keeper = SettingsKeeper(loaded.settings, store)
        recovery: RecoveryStore | None = None
        if loaded.settings.privacy.crash_recovery:
            try:
                recovery = RecoveryStore.for_paths(paths)
            except RecoveryError as error:
                notices.append(str(error))
        downloads = DownloadManager(paths, keeper, make_downloader=make_downloader)
        service = InferenceService()
        controller = SuggestionController(service, loaded.settings.sampling,
                                          preferences_from(loaded.settings))
        editor = GhostTextEditor(controller)
        window = MainWindow(
            editor,
            keeper=keeper,
            recovery=recovery,
            messenger=messenger,
            file_chooser=file_chooser,
            font_chooser=font_chooser,
            recovery_chooser=recovery_chooser,
            startup_notices=tuple(notices),
        )
        for helper in (keeper, downloads):
            helper.setParent(window)  # they live and die with the window
        if isinstance(messenger, QtMessenger):
            messenger.set_parent(window)
        engine_menu = EngineMenu(keeper, window, cores=cores)
        models_ui = ModelsUi(
            manager=downloads,
            service=service,
            keeper=keeper,
            messenger=messenger,
            menu=window.model_menu,
            parent_window=window,
            chooser=model_chooser,
            demo_path=demo_path,
            total_ram=total_ram,
            engine_menu=engine_menu.menu,
        )
        sampling_docks = install_sampling(
            window,
            keeper=keeper,
            service=service,
            controller=controller,
            messenger=messenger,
            file_chooser=preset_file_chooser,
            name_asker=name_asker,
        )
        suggestion_menu = SuggestionMenu(
            keeper,
            messenger,
            suggest_now=controller.trigger,
            keymap=editor.keymap,
            edit_menu=window.menus.edit,
            help_menu=window.menus.help,
        )
        remote_ui = install_remote_engine(
            engine_menu.menu, controller, service, paths, window,
            sampling_controls=sampling_docks.sampling.controls,
        )
        app = cls(paths, keeper, recovery, downloads, service, controller, editor, window,
                  models_ui, sampling_docks, suggestion_menu, demo_path, engine_menu, remote_ui,
                  cores)
        app._wire()
        return app

    @property
    def settings(self) -> Settings:
        return self.keeper.current

    def _wire(self) -> None:
        self._engine_stale = False  # settings changed while a model was loading
        self._remote_status = ""  # "Remote: host" while a server makes the suggestions
        self._wire_engine_menu()
        self.keeper.subscribe(self._apply_settings)
        self.keeper.subscribe(self._apply_engine_settings)
        self.service.stateChanged.connect(self._show_engine_state)
        self.service.modelLoaded.connect(self._on_model_loaded)
        self.service.modelLoaded.connect(freeze_long_lived_objects)
        self.service.modelFailed.connect(self._on_model_failed)
        self.service.engineFallback.connect(self.window.notice_bar.show_notice)
        # A fallback while running changes the engine (and context) in the status bar.
        self.service.engineFallback.connect(
            lambda _notice: self.service.facts and self._show_model(self.service.facts))
        self.controller.errorOccurred.connect(self.window.notice_bar.show_notice)
        EngineNotice(self.window.notice_bar, self.service)  # "isn't responding" + Restart
        self.window.closed.connect(self.shutdown)
        if self.recovery is not None:
            self.window.closed.connect(self.recovery.close)
        self.window.set_model_text("no model")

    def _wire_engine_menu(self) -> None:
        """One Engine menu: the remote server's item joins the local engines' (its own
        "Local model" item is what choosing ctransformers or llama.cpp means here)."""
        remote, menu = self.remote_ui, self.engine_menu
        remote.local_action.setVisible(False)
        menu.place_before_threads(remote.local_action, remote.remote_action)
        for action in menu.engine_actions.values():
            action.triggered.connect(lambda _=False: remote.remote and remote.use_local())
        remote.sourceChanged.connect(
            lambda source: menu.set_local_in_use(source is self.service))
        remote.statusChanged.connect(self._show_remote_status)

    def _show_remote_status(self, text: str) -> None:
        self._remote_status = text
        if text:
            self.window.set_model_text(text, "Suggestions come from this server.")
        elif self.service.facts is not None:
            self._show_model(self.service.facts)

    def _show_model(self, facts: ModelFacts) -> None:
        if self._remote_status:
            return  # the local model is loaded, but the server is the one suggesting
        self.window.set_model_text(
            model_status(facts, self.service.loaded_engine, self.downloads.catalog),
            model_details(facts, self.service.context_tokens),
        )

    def _apply_settings(self, settings: Settings) -> None:
        self.controller.set_settings(settings.sampling)
        self.controller.set_preferences(preferences_from(settings))

    def _apply_engine_settings(self, settings: Settings) -> None:
        """The engine, its threads, the memory budget and the GPU layers are fixed when the
        engine process starts, so a change reloads the model in use (it keeps suggesting
        until the reload is done)."""
        wanted = engine_settings(settings, self.cores)
        service = self.service
        if wanted == (service.threads, service.memory_budget_bytes, service.engine,
                      service.gpu_layers):
            return
        service.threads, service.memory_budget_bytes, service.engine, service.gpu_layers = wanted
        if service.loading:
            self._engine_stale = True  # that load started with the old values
        elif service.facts is not None:
            service.load_model(service.facts.path)

    def _on_model_loaded(self, facts: ModelFacts) -> None:
        if self._engine_stale:
            self._engine_stale = False
            self.service.load_model(facts.path)
        self._show_model(facts)

    def _on_model_failed(self, _path: str, message: str) -> None:
        self._engine_stale = False
        if self.service.facts is None:
            self.window.set_model_text("no model")
        self.window.messenger.warning("Model not loaded", message)

    def _show_engine_state(self, state: str, detail: str) -> None:
        text = {
            EngineState.LOADING.value: "loading…",
            EngineState.THINKING.value: "thinking…",
            EngineState.RESTARTING.value: "restarting the engine…",
            EngineState.PREPARING.value: "preparing the model for llama.cpp…",
        }.get(state, state)
        self.window.set_engine_state(f"{text} · {detail}" if detail else text)

    def start(self, open_path: str | None = None, *, model_path: Path | None = None) -> None:
        """Start loading the model, then show the window (which may offer crashed work
        back in a dialog: the model loads meanwhile, and the status bar says which)."""
        path = model_path or chosen_model(self.settings, self.demo_path)
        self.window.set_model_text(
            f"loading {model_name(path, self.downloads.catalog, self.demo_path)}…", str(path))
        self.service.load_model(path)
        self.window.start(open_path)
        freeze_long_lived_objects()

    def shutdown(self) -> None:
        self.downloads.shutdown()  # a running download pauses; it resumes next time
        self.service.shutdown()


def freeze_long_lived_objects(*_: object) -> None:
    """Take what exists now out of Python's garbage collection for good.

    A full collection walks every object (37-57 ms here, with Qt's wrappers and the
    tokenizer's tables) while holding the GIL, so it stalls typing whichever thread
    triggers it. What exists after start-up or a model load lives as long as the app;
    frozen, a full collection takes ~0 ms. (Garbage caught in it stays: a few objects.)
    """
    gc.freeze()


def create_qapplication() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("writer-app")
    app.setApplicationDisplayName("writer-app")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("writer-app")
    app.setDesktopFileName("io.github.writerapp.WriterApp")
    icon = QIcon()
    for png in sorted((resources_dir() / "icons").glob("writer-app-*.png")):
        icon.addFile(str(png))
    app.setWindowIcon(icon)
    return app


def run_gui(open_path: str | None = None) -> int:
    qt_app = create_qapplication()
    writer = WriterApp.build()
    writer.start(open_path)
    return qt_app.exec()
