"""Instruments for measuring the running app from the outside, in the GUI process.

EngineProbe wraps TextSession (the one door between the app and its engine process) at
class level, so every session the app opens is seen without changing the app: when it
opened (engine pid, load time), and per request what the engine reports in its
FinishEvent (prompt tokens, how many had to be evaluated, timings) plus when the worker
thread saw the first token. StallMonitor is a 1 ms precise timer on the GUI thread
whose lateness is the event-loop stall. The wait helpers spin a local event loop (never
time.sleep), so Qt keeps delivering signals, timers and paints meanwhile.
"""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, SignalInstance

from writer_app.engine.protocol import FinishEvent, TokenEvent
from writer_app.engine.session import TextSession


def now_ms() -> float:
    return time.perf_counter() * 1000


def wait_ms(ms: float) -> None:
    """Let the event loop run for `ms` milliseconds."""
    loop = QEventLoop()
    timer = QTimer()
    timer.setSingleShot(True)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(loop.quit)
    timer.start(max(0, round(ms)))
    loop.exec()


def wait_for(
    signal: SignalInstance, condition: Callable[..., bool], timeout_ms: float
) -> bool:
    """Run the event loop until `signal` fires with arguments satisfying `condition`
    (also checked once first, with no arguments, if it takes none); False on timeout."""
    loop = QEventLoop()
    met = False

    def check(*args: object) -> None:
        nonlocal met
        if not met and condition(*args):
            met = True
            loop.quit()

    signal.connect(check)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(loop.quit)
    timer.start(max(1, round(timeout_ms)))
    try:
        loop.exec()
    finally:
        timer.stop()
        signal.disconnect(check)
    return met


def wait_until(condition: Callable[[], bool], timeout_ms: float, poll_ms: int = 5) -> bool:
    """Poll `condition` every poll_ms while the event loop runs; False on timeout."""
    deadline = now_ms() + timeout_ms
    while not condition():
        if now_ms() >= deadline:
            return False
        wait_ms(poll_ms)
    return True


# ---- the engine side, seen through TextSession ------------------------------------------


@dataclass
class RequestRecord:
    request_id: int
    started_ms: float  # the worker thread called TextSession.generate
    first_token_ms: float | None = None  # the worker received the first TokenEvent
    finished_ms: float | None = None
    finish: FinishEvent | None = None


@dataclass
class SessionRecord:
    pid: int | None
    path: str
    threads: int
    open_ms: float  # TextSession.open took this long (process start + load + tokenizer)
    opened_at_ms: float
    engine: str = ""  # the engine that runs it
    n_ctx: int = 0  # the context the engine uses (the app's memory budget may cap it)


@dataclass
class EngineProbe:
    """Records every TextSession opened and every generation run in this process."""

    sessions: list[SessionRecord] = field(default_factory=list)
    # Every generation in start order (ids repeat across InferenceService instances).
    requests: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _originals: tuple | None = None

    def install(self) -> EngineProbe:
        if self._originals is not None:
            return self
        open_function = TextSession.__dict__["open"].__func__
        generate_function = TextSession.generate
        probe = self

        def open_session(cls, path, *, threads: int = 1, **options):  # type: ignore[no-untyped-def]
            started = now_ms()
            session = open_function(cls, path, threads=threads, **options)
            finished = now_ms()
            with probe._lock:
                probe.sessions.append(
                    SessionRecord(session.client.pid, str(path), threads, finished - started, finished,
                                  session.engine, session.n_ctx)
                )
            return session

        def generate(self_, request_id, text, settings, **options):  # type: ignore[no-untyped-def]
            record = RequestRecord(request_id, now_ms())
            with probe._lock:
                probe.requests.append(record)
            return probe._watch(record, generate_function(self_, request_id, text, settings, **options))

        self._originals = (open_function, generate_function)
        TextSession.open = classmethod(open_session)  # type: ignore[method-assign]
        TextSession.generate = generate  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        if self._originals is None:
            return
        open_function, generate_function = self._originals
        TextSession.open = classmethod(open_function)  # type: ignore[method-assign]
        TextSession.generate = generate_function  # type: ignore[method-assign]
        self._originals = None

    @staticmethod
    def _watch(
        record: RequestRecord, events: Iterator[TokenEvent | FinishEvent]
    ) -> Iterator[TokenEvent | FinishEvent]:
        for event in events:
            if isinstance(event, FinishEvent):
                record.finished_ms, record.finish = now_ms(), event
            elif record.first_token_ms is None:
                record.first_token_ms = now_ms()
            yield event

    def request(self, request_id: int) -> RequestRecord | None:
        """The latest generation with this id."""
        with self._lock:
            return next((r for r in reversed(self.requests) if r.request_id == request_id), None)

    def first_request_after(self, since_ms: float) -> RequestRecord | None:
        with self._lock:
            return next((r for r in self.requests if r.started_ms >= since_ms), None)

    def latest_session(self) -> SessionRecord | None:
        with self._lock:
            return self.sessions[-1] if self.sessions else None


# ---- the GUI side -------------------------------------------------------------------------


class StallMonitor(QObject):
    """A 1 ms precise timer: every gap between its firings beyond 1 ms is time the GUI
    thread's event loop could not run. The thread's scheduler counters (Linux
    /proc/.../schedstat) split each gap into time the GUI thread itself was running
    (our own work on the GUI thread), time it was runnable but waiting for a CPU (other
    processes, e.g. the engine, or other users of the machine) and the rest, time it
    slept although it had work (blocked on the GIL or a lock)."""

    INTERVAL_MS = 1

    def __init__(self) -> None:
        super().__init__()
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(self.INTERVAL_MS)
        self._timer.timeout.connect(self._tick)
        self._last: tuple[float, int, int] | None = None
        self._schedstat: int | None = None
        # Flat (time of tick, lateness, ms running, ms waiting for a CPU) per tick, in ms:
        # compact, so a minute of ticks does not inflate the GUI process being measured.
        self._data = array("d")

    @property
    def ticks(self) -> list[tuple[float, float, float, float]]:
        data = self._data
        return [tuple(data[i : i + 4]) for i in range(0, len(data), 4)]  # type: ignore[misc]

    @ticks.setter
    def ticks(self, ticks: list[tuple[float, float, float, float]]) -> None:
        self._data = array("d", [value for tick in ticks for value in tick])

    def clear(self) -> None:
        self._data = array("d")

    def start(self) -> None:
        if self._schedstat is None:
            try:
                path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
                self._schedstat = os.open(path, os.O_RDONLY)
            except OSError:
                self._schedstat = -1  # not Linux: lateness only
        self._last = None
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._last = None

    def _counters(self) -> tuple[int, int]:
        if self._schedstat is None or self._schedstat < 0:
            return 0, 0
        ran, waited, _slices = os.pread(self._schedstat, 128, 0).split()
        return int(ran), int(waited)

    def _tick(self) -> None:
        now = now_ms()
        ran, waited = self._counters()
        if self._last is not None:
            last, last_ran, last_waited = self._last
            self._data.extend(
                (
                    now,
                    max(0.0, now - last - self.INTERVAL_MS),
                    (ran - last_ran) / 1e6,
                    (waited - last_waited) / 1e6,
                )
            )
        self._last = (now, ran, waited)

    def ticks_within(self, spans: list[tuple[float, float]]) -> list[tuple[float, float, float, float]]:
        """Ticks that ended inside any of the (start, end) spans."""
        spans = sorted(spans)
        chosen, index = [], 0
        for tick in self.ticks:
            while index < len(spans) and spans[index][1] < tick[0]:
                index += 1
            if index < len(spans) and spans[index][0] <= tick[0]:
                chosen.append(tick)
        return chosen

    def lateness_within(self, spans: list[tuple[float, float]]) -> list[float]:
        return [tick[1] for tick in self.ticks_within(spans)]


def own_lateness(ticks: list[tuple[float, float, float, float]]) -> list[float]:
    """Lateness minus the time the GUI thread waited for a CPU: the part of each stall
    the app itself caused (its GUI-thread work, or the GIL held by its other threads)."""
    return [max(0.0, late - waited) for _at, late, _ran, waited in ticks]


def worst_stalls(
    ticks: list[tuple[float, float, float, float]],
    events: dict[str, list[float]],
    count: int = 5,
) -> list[dict]:
    """The longest stalls, each with what else happened during it (e.g. a key press, a
    token arriving, a crash-recovery copy written), to tell their causes apart."""
    worst = sorted(ticks, key=lambda tick: tick[1], reverse=True)[:count]
    described = []
    for at, late, ran, waited in worst:
        began = at - late - StallMonitor.INTERVAL_MS
        during = {
            name: sum(1 for t in times if began - 1 <= t <= at + 1) for name, times in events.items()
        }
        described.append(
            {"at_ms": at, "late_ms": late, "running_ms": ran, "waiting_for_cpu_ms": waited,
             **{f"{name}_during": n for name, n in during.items()}}
        )
    return described


def stall_causes(ticks: list[tuple[float, float, float, float]], over_ms: float = 4.0) -> dict:
    """Where the time of the stalls longer than over_ms went, as fractions of it."""
    stalls = [t for t in ticks if t[1] > over_ms]
    gap = sum(t[1] + StallMonitor.INTERVAL_MS for t in stalls)
    if not stalls or gap <= 0:
        return {"stalls": 0}
    running = sum(min(t[2], t[1] + 1) for t in stalls)
    waiting = sum(min(t[3], t[1] + 1) for t in stalls)
    return {
        "stalls": len(stalls),
        "over_ms": over_ms,
        "gui_thread_running": running / gap,
        "waiting_for_cpu": waiting / gap,
        "blocked": max(0.0, 1 - (running + waiting) / gap),
    }


class BusySpans:
    """When the suggestion controller was generating (busyChanged true .. false)."""

    def __init__(self, busy_changed: SignalInstance) -> None:
        self.spans: list[tuple[float, float]] = []
        self._since: float | None = None
        busy_changed.connect(self._changed)

    def _changed(self, busy: bool) -> None:
        if busy and self._since is None:
            self._since = now_ms()
        elif not busy and self._since is not None:
            self.spans.append((self._since, now_ms()))
            self._since = None
