"""EngineWatchdog on its own, with a plain counter standing in for the engine's progress
(the real engine, stopped with SIGSTOP, is in test_inference.py)."""

from __future__ import annotations

import pytest

from writer_app.services.engine_watchdog import EngineWatchdog


class Counter:
    def __init__(self) -> None:
        self.value = 0


@pytest.fixture
def setup(qtbot):
    counter = Counter()
    watchdog = EngineWatchdog(lambda: counter.value, seconds=0.3)
    events: list[str] = []
    watchdog.stalled.connect(lambda: events.append("stalled"))
    watchdog.recovered.connect(lambda: events.append("recovered"))
    yield counter, watchdog, events
    watchdog.stop()


def test_work_without_progress_stalls_once_then_recovers(qtbot, setup):
    counter, watchdog, events = setup
    watchdog.sent()
    watchdog.started()
    with qtbot.waitSignal(watchdog.stalled, timeout=5_000):
        pass
    qtbot.wait(400)  # longer than the limit again: still one report
    assert events == ["stalled"] and watchdog.is_stalled
    counter.value += 1
    with qtbot.waitSignal(watchdog.recovered, timeout=5_000):
        pass
    assert events == ["stalled", "recovered"] and not watchdog.is_stalled


def test_steady_progress_never_stalls(qtbot, setup):
    counter, watchdog, events = setup
    watchdog.sent()
    watchdog.started()
    for _ in range(10):
        counter.value += 1
        qtbot.wait(100)  # ten times a third of the limit: 1 s of work in all
    assert events == []


def test_no_work_is_never_a_stall_and_excused_work_neither(qtbot, setup):
    counter, watchdog, events = setup
    qtbot.wait(500)  # idle: nothing to watch
    watchdog.sent()
    watchdog.started()
    with watchdog.excused():  # e.g. reloading a model after a crash
        qtbot.wait(500)
    watchdog.done()
    qtbot.wait(500)
    assert events == []


def test_the_end_of_the_stalled_work_is_a_recovery(qtbot, setup):
    _counter, watchdog, events = setup
    watchdog.sent()
    watchdog.started()
    with qtbot.waitSignal(watchdog.stalled, timeout=5_000):
        pass
    watchdog.done()  # e.g. the engine was killed and the command ended
    with qtbot.waitSignal(watchdog.recovered, timeout=5_000):
        pass


def test_while_progress_cannot_be_judged_there_is_no_stall(qtbot):
    judged = False  # e.g. False while the engine loads a model
    watchdog = EngineWatchdog(lambda: 0 if judged else None, seconds=0.3)
    events: list[str] = []
    watchdog.stalled.connect(lambda: events.append("stalled"))
    try:
        watchdog.sent()
        watchdog.started()
        qtbot.wait(700)
        assert events == []
        judged = True
        with qtbot.waitSignal(watchdog.stalled, timeout=5_000):
            pass
    finally:
        watchdog.stop()
