"""Which requests of one kind are current: the newest id, the cancelled ones, the one
running. The inference service keeps one ledger each for suggestions, probes and
prewarms.

The GUI thread notes and cancels ids; the worker thread skips stale ones and marks the
one it runs. Everything is under one lock, so "is it running? then interrupt it" is one
step: the worker can't move on to another command in between.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Interrupt = Callable[[], None]


class RequestLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest = 0
        self._cancelled_upto = 0
        self._active: int | None = None

    @property
    def active(self) -> int | None:
        """The id the worker is running now, if any."""
        with self._lock:
            return self._active

    def note(self, request_id: int) -> None:
        """A request with this id went out: older ones are stale."""
        with self._lock:
            self._latest = max(self._latest, request_id)

    def issue(self, interrupt: Interrupt | None = None) -> int:
        """A new id, newer than all before; interrupt() the one still running, if any."""
        with self._lock:
            self._latest += 1
            if interrupt is not None and self._active is not None:
                interrupt()
            return self._latest

    def cancel(self, request_id: int, interrupt: Interrupt | None = None) -> None:
        """Cancel this id and older ones; interrupt() if one of them is running."""
        with self._lock:
            self._cancelled_upto = max(self._cancelled_upto, request_id)
            running = self._active
            if interrupt is not None and running is not None and running <= request_id:
                interrupt()

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled_upto = max(self._cancelled_upto, self._latest)

    def is_stale(self, request_id: int) -> bool:
        """Cancelled, or superseded by a newer id."""
        with self._lock:
            return request_id <= self._cancelled_upto or request_id < self._latest

    @contextmanager
    def running(self, request_id: int) -> Iterator[None]:
        """Marks the id as the one running, so cancel() knows whether to interrupt it."""
        with self._lock:
            self._active = request_id
        try:
            yield
        finally:
            with self._lock:
                if self._active == request_id:
                    self._active = None
