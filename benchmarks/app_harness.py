"""The real app, built by its composition root and driven like a writer would drive it.

AppHarness builds WriterApp offscreen (its own WRITER_APP_HOME, a ScriptedMessenger so
no dialog ever blocks), then types with QTest key events and watches what the writer
would see: when a request went out (the debounce fired), when grey text appeared, when
the engine reported a request finished.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtTest import QTest

from benchmarks.probe import BusySpans, EngineProbe, now_ms, wait_for, wait_until
from benchmarks.procfs import Memory
from tests.support.scripted import ScriptedMessenger
from writer_app.app import WriterApp
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.session import DEFAULT_ENGINE
from writer_app.services.suggestion_controller import SuggestionPreferences
from writer_app.ui.keymap import GhostAction


class ModelLoadFailed(RuntimeError):
    """The app did not load a model the benchmark asked for."""


@dataclass
class Timeline:
    """Timestamps (ms, perf_counter) of what the app did, appended by signal handlers."""

    requests: list[float] = field(default_factory=list)  # busyChanged(True): a request went out
    ghosts: list[tuple[float, str]] = field(default_factory=list)  # grey text after a change
    finished: dict[int, tuple[float, str]] = field(default_factory=dict)  # id -> (time, reason)
    keys: list[tuple[float, float]] = field(default_factory=list)  # (sent at, handling ms)
    tokens: list[float] = field(default_factory=list)  # a piece of text reached the GUI
    autosaves: list[float] = field(default_factory=list)  # a crash-recovery copy was written
    # Python garbage collections (any thread) that took over 1 ms: (start, ms, generation).
    # A collection holds the GIL, so every other thread waits, the GUI thread included.
    collections: list[tuple[float, float, int]] = field(default_factory=list)

    def first_ghost_after(self, since: float) -> float | None:
        for at, text in self.ghosts:
            if at >= since and text:
                return at
        return None

    def first_request_after(self, since: float) -> float | None:
        return next((at for at in self.requests if at >= since), None)


class AppHarness:
    def __init__(self, probe: EngineProbe, engine: str = DEFAULT_ENGINE) -> None:
        self.probe = probe
        self.engine = engine
        self.messenger = ScriptedMessenger()
        self.writer = WriterApp.build(messenger=self.messenger)
        self.editor = self.writer.editor
        self.controller = self.writer.controller
        self.service = self.writer.service
        self.timeline = Timeline()
        self.busy = BusySpans(self.controller.busyChanged)
        # Connected after the editor's own handler, so the ghost is placed when we look.
        self.controller.ghostChanged.connect(self._ghost_changed)
        self.controller.busyChanged.connect(self._busy_changed)
        self.service.finished.connect(self._finished)
        self.service.token.connect(lambda _rid, _text: self.timeline.tokens.append(now_ms()))
        self.writer.window.autosaver.written.connect(
            lambda _doc: self.timeline.autosaves.append(now_ms())
        )
        self.load_failures: list[str] = []
        self.service.modelFailed.connect(lambda _path, message: self.load_failures.append(message))
        self._gc_started = 0.0
        gc.callbacks.append(self._gc_event)
        # The engine setting, as the writer picks it in Model > Engine (saved, applied to
        # the service before the first load).
        self.writer.keeper.update(lambda settings: settings.with_models(engine=engine))
        self.writer.window.resize(1000, 700)
        self.writer.window.start()
        self.editor.setFocus()
        self.model_path: str | None = None

    # ---- what the app did -------------------------------------------------------------

    def _ghost_changed(self, _suggestion: object) -> None:
        self.timeline.ghosts.append((now_ms(), self.editor.ghost_text()))

    def _busy_changed(self, busy: bool) -> None:
        if busy:
            self.timeline.requests.append(now_ms())

    def _gc_event(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = now_ms()
            return
        took = now_ms() - self._gc_started
        if took > 1.0:
            self.timeline.collections.append((self._gc_started, took, info["generation"]))

    def _finished(self, request_id: int, reason: str) -> None:
        self.timeline.finished[request_id] = (now_ms(), reason)

    # ---- models ---------------------------------------------------------------------------

    def load(self, path: str | Path, *, threads: int = 1, timeout_s: float = 120.0) -> float:
        """Load (or switch to) a model through InferenceService.load_model: milliseconds
        until modelLoaded."""
        self.service.threads = threads
        started = now_ms()
        self.load_failures.clear()
        self.service.load_model(path)
        loaded = wait_until(lambda: not self.service.loading, timeout_s * 1000, poll_ms=1)
        elapsed = now_ms() - started
        if not loaded or self.load_failures or self.service.facts is None:
            failure = self.load_failures[0] if self.load_failures else "it did not load in time"
            raise ModelLoadFailed(f"{Path(path).name}: {failure}")
        if self.service.loaded_engine != self.engine:  # a fallback would measure the wrong engine
            raise ModelLoadFailed(
                f"{Path(path).name}: loaded with {self.service.loaded_engine}, not {self.engine}"
            )
        self.model_path = str(path)
        return elapsed

    def engine_pid(self) -> int | None:
        session = self.probe.latest_session()
        return session.pid if session is not None else None

    def renice_engine(self, niceness: int) -> None:
        pid = self.engine_pid()
        if pid is not None:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)

    def memory(self) -> dict[str, float | None]:
        gui = Memory.of()
        pid = self.engine_pid()
        engine = Memory.of(pid) if pid is not None else None
        return {
            "gui_rss_mib": gui.rss_mib if gui else None,
            "gui_hwm_mib": gui.hwm_mib if gui else None,
            "engine_rss_mib": engine.rss_mib if engine else None,
            "engine_hwm_mib": engine.hwm_mib if engine else None,
        }

    # ---- what the writer does ---------------------------------------------------------

    def set_document(self, text: str) -> None:
        self.editor.setPlainText(text)
        self.editor.moveCursor(QTextCursor.MoveOperation.End)
        self.escape()  # setPlainText is an edit: no suggestion for it

    def set_sampling(self, **changes: object) -> None:
        self.controller.set_settings(SamplingSettings().with_changes(**changes))

    def set_auto_suggest(self, enabled: bool) -> None:
        self.controller.set_preferences(SuggestionPreferences(auto_trigger=enabled))

    def type_char(self, char: str) -> float:
        """One key press as the keyboard sends it; returns the ms the GUI thread spent."""
        started = now_ms()
        if char == "\n":
            QTest.keyClick(self.editor, Qt.Key.Key_Return)
        else:
            QTest.keyClicks(self.editor, char)
        handled = now_ms() - started
        self.timeline.keys.append((started, handled))
        return handled

    def trigger(self) -> None:
        """Ctrl+Space (the platform's suggest-now chord), through the key map."""
        keymap = self.editor.keymap
        modifier = Qt.KeyboardModifier.ControlModifier
        if keymap.action_for(Qt.Key.Key_Space, modifier) is not GhostAction.TRIGGER:
            modifier = Qt.KeyboardModifier.MetaModifier
        QTest.keyClick(self.editor, Qt.Key.Key_Space, modifier)

    def escape(self) -> None:
        QTest.keyClick(self.editor, Qt.Key.Key_Escape)

    def wait_request_finished(self, since: float, timeout_ms: float) -> int | None:
        """The id of the first generation the worker started after `since`, once the
        engine has reported its end; None on timeout."""
        record = None

        def done() -> bool:
            nonlocal record
            record = self.probe.first_request_after(since)
            return record is not None and record.finish is not None

        return record.request_id if wait_until(done, timeout_ms) and record else None

    def wait_finished_signal(self, request_id: int, timeout_ms: float) -> tuple[float, str] | None:
        if request_id not in self.timeline.finished:
            wait_for(self.service.finished, lambda rid, _reason: rid == request_id, timeout_ms)
        return self.timeline.finished.get(request_id)

    def shutdown(self) -> None:
        if self._gc_event in gc.callbacks:
            gc.callbacks.remove(self._gc_event)
        self.writer.shutdown()
