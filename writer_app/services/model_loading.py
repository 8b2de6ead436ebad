"""Loading a model for the inference service: beside the current one, or in its place.

A model normally loads on the loader's own thread, in a new engine process, while the
current model keeps suggesting; the worker then swaps the two and closes the old one.
Two engines at once cost memory, though (gpt2 beside gpt2-large: 1,080 MiB measured,
over the 954 MiB default budget), so when the memory model (engine/memory.py:
loads_beside) says the two together would not fit the writer's memory budget, the
loader hands the order to the inference worker instead (`needsRoom`). The worker closes
the current engine, loads the new model in its place, and reopens the old one if the new
one fails; suggestions asked for meanwhile wait on the worker and are answered by
whichever model it then holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from writer_app.engine.ggml import InvalidModelFile, ModelLayout, read_layout
from writer_app.engine.memory import loads_beside
from writer_app.engine.process import EngineError
from writer_app.engine.session import OpenedSession, open_with_fallback
from writer_app.engine.tokenizer import TokenizerCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOrder:
    """One model to load, with the engine settings the writer has now."""

    path: str
    threads: int
    memory_budget_bytes: int | None
    engine: str
    gpu_layers: int
    # The engine process in use holds about this much (engine/memory.py), None: none is.
    current_engine_bytes: int | None = None

    def fits_beside_current(self, layout: ModelLayout) -> bool:
        return loads_beside(
            self.current_engine_bytes, layout.facts, self.memory_budget_bytes, self.engine
        )

    def open(
        self,
        tokenizers: TokenizerCache,
        on_preparing: Callable[[], None],
        layout: ModelLayout | None = None,
    ) -> OpenedSession:
        """Raises InvalidModelFile, EngineError, OSError (and, for a bug, anything)."""
        return open_with_fallback(
            self.path,
            engine=self.engine,
            threads=self.threads,
            gpu_layers=self.gpu_layers,
            memory_budget_bytes=self.memory_budget_bytes,
            tokenizers=tokenizers,
            on_preparing=on_preparing,
            layout=layout,
        )


def load_failure(path: str | Path, error: Exception) -> str:
    """The one sentence the writer reads when `path` could not be loaded."""
    if isinstance(error, InvalidModelFile):
        return str(error)
    if isinstance(error, (EngineError, OSError)):
        return f"The model {Path(path).name} could not be loaded: {error}"
    # A bug: say so rather than stay "loading…" for ever.
    logger.error("Loading %s failed", path, exc_info=error)
    return f"The model {Path(path).name} could not be loaded ({error!r})."


class ModelLoader(QObject):
    """Loads a model in a fresh engine process on its own thread, beside the current one,
    or hands the order on (`needsRoom`) when both would not fit the memory budget."""

    loaded = Signal(object)  # OpenedSession: the session, and a fallback notice or None
    failed = Signal(str, str)  # path, message
    preparing = Signal(str)  # path: converting it for llama.cpp (its first use)
    needsRoom = Signal(object, object)  # LoadOrder, ModelLayout: load it in place

    def __init__(self, tokenizers: TokenizerCache) -> None:
        super().__init__()
        self._tokenizers = tokenizers

    @Slot(object)
    def load(self, order: LoadOrder) -> None:
        try:
            layout = read_layout(order.path)
            if not order.fits_beside_current(layout):
                self.needsRoom.emit(order, layout)
                return
            opened = order.open(
                self._tokenizers, lambda: self.preparing.emit(order.path), layout
            )
        except Exception as error:
            self.failed.emit(order.path, load_failure(order.path, error))
        else:
            self.loaded.emit(opened)
