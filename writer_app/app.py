"""The composition root: the one place that builds the app's objects and wires them.

Nothing else creates services or windows; every object gets what it needs passed in,
so tests can build the same graph with test doubles (e.g. a ScriptedMessenger).
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
from writer_app.engine.ggml import ModelFacts
from writer_app.models.catalog import Catalog
from writer_app.paths import AppPaths
from writer_app.services.inference import EngineState, InferenceService, engine_threads
from writer_app.services.suggestion_controller import (
    SuggestionController,
    SuggestionPreferences,
)
from writer_app.settings import Settings
from writer_app.ui.dialogs import Messenger
from writer_app.ui.engine_notice import EngineNotice
from writer_app.ui.ghost_editor import GhostTextEditor
from writer_app.ui.main_window import MainWindow, build_main_window
from writer_app.ui.model_menu import ModelsUi, install_models
from writer_app.ui.sampling_panel import SamplingDocks, install_sampling
from writer_app.ui.suggestion_menu import SuggestionMenu


def preferences_from(settings: Settings) -> SuggestionPreferences:
    editor = settings.editor
    return SuggestionPreferences(
        auto_trigger=editor.autosuggest,
        debounce_ms=editor.debounce_ms,
        suggest_mid_word=editor.suggest_mid_word,
        ignore_text_after_cursor=editor.ignore_text_after_cursor,
    )


def model_label(facts: ModelFacts, catalog: Catalog | None = None) -> str:
    """What the status bar calls a model: its catalog name if it has one."""
    path = Path(facts.path)
    if path == demo_model_path():
        return f"Demo (Jane Austen) · {facts.quantization}"
    entry = catalog.by_filename(path.name) if catalog is not None else None
    return entry.label if entry is not None else f"{path.name} · {facts.quantization}"


def model_details(facts: ModelFacts, context_tokens: int) -> str:
    """The status bar's tooltip: the file, and the context the app gives the model."""
    context = f"reads up to {context_tokens} tokens before the cursor"
    if context_tokens < facts.n_ctx:
        context += f" (of {facts.n_ctx}: capped to the memory budget)"
    return f"{facts.path}\n{context}"


@dataclass
class WriterApp:
    """Everything the running editor is made of."""

    paths: AppPaths
    service: InferenceService
    controller: SuggestionController
    editor: GhostTextEditor
    window: MainWindow
    models_ui: ModelsUi | None = None  # the Model menu, Model Manager and downloads
    sampling_docks: SamplingDocks | None = None  # sampling sliders, token probabilities
    suggestion_menu: SuggestionMenu | None = None  # Edit ▸ Suggestions

    @classmethod
    def build(cls, *, paths: AppPaths | None = None, messenger: Messenger | None = None,
              **window_seams) -> WriterApp:
        paths = paths or AppPaths.default()
        service = InferenceService()
        controller = SuggestionController(service, Settings().sampling, SuggestionPreferences())
        editor = GhostTextEditor(controller)
        window = build_main_window(editor, paths=paths, messenger=messenger, **window_seams)
        app = cls(paths, service, controller, editor, window)
        app._wire()
        return app

    @property
    def settings(self) -> Settings:
        return self.window.keeper.current

    def _wire(self) -> None:
        models = self.settings.models
        self.service.threads = engine_threads(models.threads)
        self.service.memory_budget_bytes = models.memory_budget_mb * 1_000_000 or None
        self._apply_settings(self.settings)
        self.window.keeper.changed.connect(self._apply_settings)
        self.service.stateChanged.connect(self._show_engine_state)
        self.service.modelLoaded.connect(self._show_model)
        self.service.modelLoaded.connect(freeze_long_lived_objects)
        self.service.modelFailed.connect(
            lambda path, message: self.window.messenger.warning("Model not loaded", message)
        )
        self.controller.errorOccurred.connect(self.window.notice_bar.show_notice)
        EngineNotice(self.window.notice_bar, self.service)  # "isn't responding" + Restart
        self.window.closed.connect(self.shutdown)
        self.window.set_model_text("no model")
        self.models_ui = install_models(self)
        self.sampling_docks = install_sampling(self)
        self.suggestion_menu = SuggestionMenu(self)

    def _show_model(self, facts: ModelFacts) -> None:
        catalog = self.models_ui.manager.catalog if self.models_ui is not None else None
        self.window.set_model_text(
            model_label(facts, catalog), model_details(facts, self.service.context_tokens)
        )

    def _apply_settings(self, settings: Settings) -> None:
        self.controller.set_settings(settings.sampling)
        self.controller.set_preferences(preferences_from(settings))

    def _show_engine_state(self, state: str, detail: str) -> None:
        text = {
            EngineState.LOADING.value: "loading…",
            EngineState.THINKING.value: "thinking…",
            EngineState.RESTARTING.value: "restarting the engine…",
        }.get(state, state)
        self.window.set_engine_state(f"{text} · {detail}" if detail else text)

    def active_model_path(self) -> Path:
        """The model the writer last chose, if it is still there; else the demo model."""
        chosen = self.settings.models.active_model
        if chosen and Path(chosen).is_file():
            return Path(chosen)
        return demo_model_path()

    def start(self, open_path: str | None = None, *, model_path: Path | None = None) -> None:
        self.window.start(open_path)
        self.service.load_model(model_path or self.active_model_path())
        freeze_long_lived_objects()

    def shutdown(self) -> None:
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
