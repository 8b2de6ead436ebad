"""Notices an engine process that has work but stopped making progress.

An engine that is stopped (SIGSTOP) or hangs in native code sends nothing and does not
die, so the worker thread waits for it for ever and the writer would see "thinking…"
for ever. The engine bumps a progress counter between prompt chunks and between tokens
(EngineClient.progress, at most one chunk's time apart, well under a second); while a
command is out, a timer on the GUI thread reads it, and after NOT_RESPONDING_SECONDS
without a change `stalled` fires (once), then `recovered` if it moves again.

The GUI thread counts commands as it sends them (sent()); the worker marks when it
starts one (started(), so a long idle time before does not count) and ends it (done()).
excused(), or progress() answering None, covers work that legitimately shows no progress
(starting an engine process and loading a model into it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject, QTimer, Signal

NOT_RESPONDING_SECONDS = 5.0


class EngineWatchdog(QObject):
    stalled = Signal()
    recovered = Signal()

    def __init__(
        self,
        progress: Callable[[], int | None],  # None: nothing to judge now (no engine, loading)
        seconds: float = NOT_RESPONDING_SECONDS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._progress = progress
        self.seconds = seconds
        self._lock = threading.Lock()
        self._pending = 0
        self._excused = 0
        self._last: int | None = None
        self._moved_at = time.monotonic()
        self.is_stalled = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._check)

    # ---- GUI thread ---------------------------------------------------------------------

    def sent(self) -> None:
        """A command went to the worker."""
        with self._lock:
            self._pending += 1
        if not self._timer.isActive():
            self._timer.start(max(20, min(500, int(self.seconds * 1000 / 5))))

    def stop(self) -> None:
        """Watch no more (shutting down): commands still queued will never run."""
        with self._lock:
            self._pending = 0
        self._timer.stop()

    def _check(self) -> None:
        now = time.monotonic()
        value = self._progress()
        with self._lock:
            idle = self._pending <= 0
            if idle or self._excused or value is None or value != self._last:
                self._last, self._moved_at = value, now
                moved = True
            else:
                moved = False
            silent_for = now - self._moved_at
        if idle:
            self._timer.stop()
        if moved:
            if self.is_stalled:
                self.is_stalled = False
                self.recovered.emit()
        elif not self.is_stalled and silent_for >= self.seconds:
            self.is_stalled = True
            self.stalled.emit()

    # ---- worker thread ------------------------------------------------------------------

    def started(self) -> None:
        """The worker starts a command now: silence counts from here."""
        with self._lock:
            self._moved_at = time.monotonic()

    def done(self) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)

    @contextmanager
    def excused(self) -> Iterator[None]:
        with self._lock:
            self._excused += 1
        try:
            yield
        finally:
            with self._lock:
                self._excused -= 1
                self._moved_at = time.monotonic()
