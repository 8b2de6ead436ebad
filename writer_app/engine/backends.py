"""The engine registry: which backend class opens a model for each engine name.

The engine process opens every model through open_backend(), so an engine plugs in with
one entry here. Backends are imported on first use: each pulls in its native library.
"""

from __future__ import annotations

from collections.abc import Callable

from writer_app.engine.protocol import LoadCommand

DEFAULT_ENGINE = "ctransformers"


def _ctransformers(command: LoadCommand) -> object:
    from writer_app.engine.backend import CTransformersBackend

    return CTransformersBackend.load(
        command.path, threads=command.threads, context_length=command.context_length
    )


def _llama_cpp(command: LoadCommand) -> object:
    from writer_app.engine.llama_backend import LlamaCppBackend

    return LlamaCppBackend.load(
        command.path, threads=command.threads, context_length=command.context_length
    )


ENGINES: dict[str, Callable[[LoadCommand], object]] = {
    "ctransformers": _ctransformers,
    "llama.cpp": _llama_cpp,
}


def open_backend(command: LoadCommand) -> object:
    """Load the command's model in its engine. Raises ValueError for an unknown engine,
    and whatever the backend's load() raises (InvalidModelFile, ModelLoadError, ...)."""
    engine = getattr(command, "engine", DEFAULT_ENGINE)  # LoadCommand.engine: the seam
    try:
        opener = ENGINES[engine]
    except KeyError:
        known = ", ".join(ENGINES)
        raise ValueError(f"Unknown engine {engine!r}; the engines are {known}.") from None
    return opener(command)
