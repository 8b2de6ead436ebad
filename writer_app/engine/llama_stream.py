"""One streaming llama.cpp completion, consumed as an iterator (llama_backend.py's).

xllamacpp's handle_completions(request, callback) blocks until the request is done and
calls back once per chunk; generate() wants to yield tokens as they come. So the request
runs on a thread of its own and hands its entries over through a queue. This module
never imports xllamacpp: it is given the Server.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from writer_app.engine.protocol import CancelCheck

_DONE = object()


class CompletionStream:
    """One streaming request on a thread of its own, its chunks handed over through a
    queue so generate() can yield them. The callback ends the request (returns True) as
    soon as the consumer stops or should_cancel() says so, so at most one token is
    computed for nothing."""

    def __init__(self, server: object, body: dict[str, object]) -> None:
        self._server, self._body = server, body
        self._chunks: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timings: dict | None = None
        self.finish_reason: str | None = None
        self.error: str | None = None

    def start(self, should_cancel: CancelCheck) -> None:
        self._should_cancel = should_cancel
        self._thread = threading.Thread(target=self._run, name="llama.cpp stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server.handle_completions(self._body, self._on_chunk)  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001  # reported on the generating thread
            self.error = str(error) or type(error).__name__
        finally:
            self._chunks.put(_DONE)

    def _on_chunk(self, chunk: dict) -> bool:
        error = error_of(chunk)
        if error:
            self.error = error
            return True
        if "timings" in chunk:
            self.timings = chunk["timings"]
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            for entry in (choice.get("logprobs") or {}).get("content") or ():
                self._chunks.put(entry)
        return self._stop.is_set() or self._should_cancel()

    def __iter__(self) -> Iterator[dict]:
        while True:
            entry = self._chunks.get()
            if entry is _DONE:
                return
            yield entry  # type: ignore[misc]

    def close(self) -> None:
        """Stop the request and wait for it (at most one token's time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def error_of(chunk: object) -> str | None:
    """The error in one of llama.cpp's replies (a final JSON or a streamed chunk), or None."""
    if not isinstance(chunk, dict):
        return "an unreadable reply"
    if "error" in chunk:
        error = chunk["error"]
        return str(error.get("message", error) if isinstance(error, dict) else error)
    if "code" in chunk and "message" in chunk:
        return str(chunk["message"])
    return None
