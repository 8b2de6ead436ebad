# ruff: noqa: F811  (pytest fixtures are imported by name and then requested by name)
"""Recovery copies are written off the GUI thread: in order, coalesced, and drained when
the window closes. A gate around the store's write holds a copy "on the disk" for as long
as a test needs, so every interleaving here is certain, not a race."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QEvent

from tests.ui.window_fixtures import Harness, make_window  # noqa: F401
from writer_app.documents.recovery import RecoveryError, RecoveryStore
from writer_app.settings import Settings
from writer_app.ui.dialogs import Choice


def _settings() -> Settings:
    defaults = Settings()
    # Minutes between timed copies: every copy in these tests is asked for explicitly.
    privacy = replace(defaults.privacy, recovery_interval_s=300, crash_recovery=True)
    return replace(defaults, privacy=privacy)


def _entry_texts(app_home) -> list[str]:
    files = sorted(Path(app_home.recovery_dir).glob("*.json"))
    return [json.loads(f.read_text(encoding="utf-8"))["text"] for f in files]


class Gate:
    """Stands in for RecoveryStore.write: records each call and its thread, and can hold
    the write (as a busy disk would) until the test releases it."""

    def __init__(self, store: RecoveryStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real_write = store.write
        self._open = threading.Event()
        self._open.set()
        self.entered = threading.Event()  # a write has started
        self.texts: list[str] = []
        self.threads: list[threading.Thread] = []
        monkeypatch.setattr(store, "write", self.write)

    def hold(self) -> None:
        self._open.clear()
        self.entered.clear()

    def release(self) -> None:
        self._open.set()

    def write(self, doc_id: str, text: str, **info) -> bool:
        self.texts.append(text)
        self.threads.append(threading.current_thread())
        self.entered.set()
        if not self._open.wait(timeout=30):
            raise RuntimeError("the test never released the write")
        return self._real_write(doc_id, text, **info)


@pytest.fixture
def window(make_window) -> Harness:
    return make_window(settings=_settings())


@pytest.fixture
def gate(window: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    gate = Gate(window.recovery, monkeypatch)
    yield gate
    gate.release()  # never leave the writer thread blocked for the window's teardown



def start_held_write(window, gate, text: str) -> None:
    """Type `text` and ask for a copy; returns once its write is in progress and held."""
    gate.hold()
    window.type(text)
    window.window.autosaver.write_now()
    assert gate.entered.wait(timeout=10)

def test_the_copy_is_written_off_the_gui_thread_and_write_now_does_not_wait(
    window, gate, app_home, qtbot
):
    autosaver = window.window.autosaver
    heard_on: list[int] = []
    autosaver.written.connect(lambda doc_id: heard_on.append(threading.get_ident()))
    start_held_write(window, gate, "a busy disk")
    assert _entry_texts(app_home) == []  # write_now returned; the write is still held
    with qtbot.waitSignal(autosaver.written, timeout=10_000) as blocker:
        gate.release()
    assert blocker.args == [window.window.documents.info.doc_id]
    assert _entry_texts(app_home) == ["a busy disk"]
    assert [t.ident for t in gate.threads] != [threading.get_ident()]
    assert heard_on == [threading.get_ident()]  # `written` arrives on the GUI thread


def test_saving_while_a_copy_is_being_written_leaves_no_copy(window, gate, app_home, tmp_path):
    autosaver = window.window.autosaver
    start_held_write(window, gate, "draft")
    window.files.answers.append(str(tmp_path / "saved.txt"))
    assert window.window.documents.save()  # asks for the discard while the write is held
    gate.release()
    assert autosaver.flush(10_000)
    assert gate.texts == ["draft"]  # the write did happen, before the discard
    assert _entry_texts(app_home) == []  # so a next start offers no stale "crashed" work


def test_copies_asked_for_while_one_is_being_written_collapse_into_the_newest(
    window, gate, app_home
):
    autosaver = window.window.autosaver
    start_held_write(window, gate, "one")
    for more in (" two", " three", " four"):
        window.type(more)
        autosaver.write_now()
    gate.release()
    assert autosaver.flush(10_000)
    assert gate.texts == ["one", "one two three four"]  # not one write per request
    assert _entry_texts(app_home) == ["one two three four"]


def test_a_failing_write_is_reported_once_per_reason_on_the_gui_thread(
    window, monkeypatch, qtbot
):
    autosaver = window.window.autosaver
    reason = ["The disk is full; the recovery copy was NOT saved."]
    tried_on: list[int] = []

    def refuse(*args, **kwargs):
        tried_on.append(threading.get_ident())
        raise RecoveryError(reason[0])

    monkeypatch.setattr(window.recovery, "write", refuse)
    problems: list[tuple[str, int]] = []
    autosaver.problem.connect(lambda text: problems.append((text, threading.get_ident())))
    window.type("a")
    with qtbot.waitSignal(autosaver.problem, timeout=10_000):
        autosaver.write_now()
    for more in ("b", "c"):  # the same failure again: the writer was told already
        window.type(more)
        autosaver.write_now()
        assert autosaver.flush(10_000)
    reason[0] = "The recovery folder is read-only."
    window.type("d")
    autosaver.write_now()
    assert autosaver.flush(10_000)
    QCoreApplication.processEvents()  # any queued delivery would show up now
    gui = threading.get_ident()
    assert [text for text, _ in problems] == [
        "Unsaved work could not be backed up: The disk is full; the recovery copy was NOT saved.",
        "Unsaved work could not be backed up: The recovery folder is read-only.",
    ]
    assert {thread for _, thread in problems} == {gui}
    assert len(tried_on) == 4 and gui not in tried_on
    assert window.messenger.log == []  # no modal dialog


def test_stop_waits_for_queued_copies_and_leaves_no_thread_running(window, gate, app_home):
    autosaver = window.window.autosaver
    start_held_write(window, gate, "first")
    window.type(" and last")
    autosaver.write_now()  # queued behind the held write
    gate.release()
    assert autosaver.stop()
    assert _entry_texts(app_home) == ["first and last"]
    assert gate.threads and not any(thread.is_alive() for thread in gate.threads)


def test_stop_gives_up_on_a_stuck_disk_instead_of_hanging(window, gate, app_home):
    autosaver = window.window.autosaver
    start_held_write(window, gate, "stuck")
    assert autosaver.stop(timeout_ms=50) is False  # the window may close; the copy waits
    gate.release()
    assert autosaver.flush(10_000)  # the copy still lands once the disk answers
    assert _entry_texts(app_home) == ["stuck"]
    assert not any(thread.is_alive() for thread in gate.threads)


def test_closing_the_window_drains_the_queue(window, gate, app_home):
    start_held_write(window, gate, "not wanted")
    window.messenger.answers.append(Choice.DISCARD)
    gate.release()
    assert window.window.close()  # discard queued behind the write, then stop() drains
    assert _entry_texts(app_home) == []
    assert not any(thread.is_alive() for thread in gate.threads)


def test_no_copy_after_closing_even_when_closing_saves_settings_and_focus_goes(
    window, app_home
):
    # Closing saves the window's settings (which re-applies crash_recovery=True), and the
    # window loses focus as it goes: neither may bring back the work just discarded.
    window.type("thrown away")
    window.messenger.answers.append(Choice.DISCARD)
    assert window.window.close()
    QCoreApplication.sendEvent(window.window, QEvent(QEvent.Type.ActivationChange))
    window.window.autosaver.write_now()
    assert window.window.autosaver.flush(10_000)
    assert _entry_texts(app_home) == []
