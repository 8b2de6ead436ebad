"""Which model, models folder and memory budget the settings choose, and the memory a
model is quoted as needing: the rules, stated once.

The app, the Model menu and the command line all ask here, so they always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from writer_app.assets import demo_model_path
from writer_app.engine.ggml import ModelFacts
from writer_app.engine.memory import DEFAULT_ENGINE, app_resident_within_budget
from writer_app.models.catalog import CatalogEntry, ram_bytes_within
from writer_app.paths import AppPaths
from writer_app.settings import Settings

DEMO_MODEL_NAME = "Demo (Jane Austen, tiny)"  # what menus and the status bar call it


def models_folder(settings: Settings, paths: AppPaths) -> Path:
    """The folder the writer chose for models, else the app's own."""
    chosen = settings.models.models_dir
    return Path(chosen).expanduser() if chosen else paths.models_dir


def chosen_model(settings: Settings, demo: Path | None = None) -> Path:
    """The model the writer last chose, if it is still there; else the demo model."""
    demo = demo or demo_model_path()
    chosen = settings.models.active_model
    if not chosen:
        return demo
    try:
        return Path(chosen) if Path(chosen).is_file() else demo
    except OSError:  # a folder we may not enter, a name too long: not usable either
        return demo


def memory_budget_bytes(settings: Settings) -> int | None:
    """The whole app's memory budget the model's context is capped to fit (None: no cap)."""
    return settings.models.memory_budget_mb * 1_000_000 or None


@dataclass(frozen=True)
class MemoryQuote:
    """The RAM the Model Manager, `models list` and `info` quote for a model: the whole
    app with it loaded on the chosen engine (their footprints differ: engine/memory.py)
    at the context the memory budget allows."""

    budget_bytes: int | None
    engine: str = DEFAULT_ENGINE

    def ram_bytes(self, facts: ModelFacts) -> int:
        return app_resident_within_budget(facts, self.budget_bytes, self.engine)

    def entry_ram_bytes(self, entry: CatalogEntry) -> int:
        """The same for a catalog model not downloaded yet (from its expected facts)."""
        return ram_bytes_within(entry, self.budget_bytes, self.engine)


def memory_quote(settings: Settings) -> MemoryQuote:
    return MemoryQuote(memory_budget_bytes(settings), settings.models.engine)
