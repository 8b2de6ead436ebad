"""Which engines exist: the engine process opens a backend by the name in its LoadCommand.

Each entry imports its native library only when it is opened, inside the engine process,
so the app process never loads one. A new engine adds one line to _OPENERS.
"""

from __future__ import annotations

from collections.abc import Callable

from writer_app.engine.protocol import Backend, EngineError, LoadCommand


def _ctransformers(command: LoadCommand) -> Backend:
    # gpu_layers is not passed: ctransformers has no GPU path for GPT-2 models.
    from writer_app.engine.backend import CTransformersBackend

    return CTransformersBackend.load(
        command.path, threads=command.threads, context_length=command.context_length
    )


def _llama_cpp(command: LoadCommand) -> Backend:
    from writer_app.engine.llama_backend import LlamaCppBackend

    return LlamaCppBackend.load(
        command.path,
        threads=command.threads,
        context_length=command.context_length,
        gpu_layers=command.gpu_layers,
    )


_OPENERS: dict[str, Callable[[LoadCommand], Backend]] = {
    "ctransformers": _ctransformers,
    "llama.cpp": _llama_cpp,
}
ENGINES: tuple[str, ...] = tuple(_OPENERS)
# gpu_layers meaning "every layer" (llama.cpp's own -ngl 999): any model has fewer.
GPU_ALL_LAYERS = 999


def check_engine(name: str) -> None:
    """EngineError unless an engine of this name is registered (checked before the model
    in use is let go, so a typo never leaves the engine without one)."""
    if name not in _OPENERS:
        known = ", ".join(ENGINES)
        raise EngineError(f"There is no engine called {name!r} (known: {known}).")


def open_backend(command: LoadCommand) -> Backend:
    """Load command.path with the engine named command.engine. Raises InvalidModelFile,
    ModelLoadError, or EngineError for an engine name nobody registered."""
    check_engine(command.engine)
    return _OPENERS[command.engine](command)
