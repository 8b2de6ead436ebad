# ruff: noqa: F811  (pytest fixtures are imported by name and then requested by name)
"""Autosave to the recovery folder, and getting the work back after a crash: in-process
for the rules, and once for real with a SIGKILLed app in a subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, Qt

from tests.support.dummy_suggestion_source import DummySuggestionSource
from tests.support.scripted import ScriptedMessenger
from tests.ui.window_fixtures import make_window, window_harness  # noqa: F401
from writer_app.documents.recovery import RecoveryError, RecoveryStore
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.services.suggestion_controller import SuggestionController, SuggestionPreferences
from writer_app.settings import Settings, SettingsStore
from writer_app.ui.dialogs import Choice
from writer_app.ui.ghost_editor import GhostTextEditor
from writer_app.ui.keymap import GhostKeymap
from writer_app.ui.recovery_dialog import RecoveryDecision, RecoveryDialog

REPO_ROOT = Path(__file__).resolve().parents[2]


def _settings(interval_s: int = 1, crash_recovery: bool = True) -> Settings:
    defaults = Settings()
    privacy = replace(
        defaults.privacy, recovery_interval_s=interval_s, crash_recovery=crash_recovery
    )
    return replace(defaults, privacy=privacy)


def _entry_files(app_home) -> list[Path]:
    return sorted(app_home.recovery_dir.glob("*.json"))


def _entry_texts(app_home) -> list[str]:
    return [json.loads(f.read_text(encoding="utf-8"))["text"] for f in _entry_files(app_home)]


def _lose_focus(window) -> None:
    QCoreApplication.sendEvent(window, QEvent(QEvent.Type.ActivationChange))


def _settle(window) -> None:
    """Copies are written on a background thread: wait until every one asked for is done."""
    assert window.autosaver.flush(5000)


def test_unsaved_work_lands_in_the_recovery_folder_and_saving_removes_it(
    make_window, app_home, qtbot, tmp_path
):
    h = make_window(settings=_settings(interval_s=1))
    h.type("Words worth keeping.")
    qtbot.waitUntil(lambda: _entry_texts(app_home) == ["Words worth keeping."], timeout=5000)
    target = tmp_path / "kept.txt"
    h.files.answers.append(str(target))
    assert h.window.documents.save()
    assert _entry_files(app_home) == []


def test_losing_focus_takes_a_copy_at_once(make_window, app_home):
    h = make_window(settings=_settings(interval_s=300))
    h.type("before the coffee break")
    assert _entry_files(app_home) == []  # the timer is minutes away
    _lose_focus(h.window)
    _settle(h.window)
    assert _entry_texts(app_home) == ["before the coffee break"]


def test_undoing_back_to_the_saved_text_removes_the_copy(make_window, app_home):
    h = make_window(settings=_settings(interval_s=300))
    h.type("oops")
    _lose_focus(h.window)
    _settle(h.window)
    assert _entry_files(app_home)
    h.editor.undo()
    _settle(h.window)
    assert _entry_files(app_home) == []


def test_discarding_changes_on_close_removes_the_copy(make_window, app_home):
    h = make_window(settings=_settings(interval_s=300))
    h.type("not wanted")
    _lose_focus(h.window)
    _settle(h.window)
    assert _entry_files(app_home)
    h.messenger.answers.append(Choice.DISCARD)
    assert h.window.close()
    assert _entry_files(app_home) == []


def test_no_copies_when_crash_recovery_is_off(make_window, app_home):
    h = make_window(settings=_settings(interval_s=300, crash_recovery=False))
    h.type("private")
    _lose_focus(h.window)
    h.window.autosaver.write_now()
    _settle(h.window)
    assert _entry_files(app_home) == []


def test_a_failing_recovery_folder_is_mentioned_once_without_a_modal(make_window, monkeypatch):
    h = make_window(settings=_settings(interval_s=300))

    def refuse(*args, **kwargs):
        raise RecoveryError("The disk is full; the recovery copy was NOT saved.")

    monkeypatch.setattr(h.recovery, "write", refuse)
    h.type("a")
    _lose_focus(h.window)
    _settle(h.window)  # each failure reported before the next copy is tried
    h.type("b")
    _lose_focus(h.window)
    _settle(h.window)
    assert h.window.notice_bar.label.text().count("disk is full") == 1
    assert h.messenger.log == []


def _orphan(app_home, doc_id: str, text: str, path: str | None, title: str) -> None:
    """A recovery entry whose owner is gone, as a crashed instance leaves it."""
    with RecoveryStore.for_paths(app_home) as crashed:
        crashed.write(doc_id, text, path=path, title=title, last_saved=datetime.now(timezone.utc))


def test_orphaned_work_is_offered_on_start_and_restored_as_unsaved(make_window, app_home, tmp_path):
    path = tmp_path / "chapter.txt"
    path.write_bytes(b"Old text.\r\n")
    _orphan(app_home, "a1", "Old text.\nNew ending, never saved.\n", str(path), "chapter.txt")
    h = make_window(start=False)
    h.recovery_chooser.answers.append(lambda entries: RecoveryDecision(restore="a1"))
    h.window.start()
    (offered,) = h.recovery_chooser.offered
    assert [e.doc_id for e in offered] == ["a1"]
    assert h.editor.toPlainText() == "Old text.\nNew ending, never saved.\n"
    assert h.window.isWindowModified() and "chapter.txt" in h.window.windowTitle()
    assert h.window.documents.save()  # back to its own file, with its own line endings
    assert path.read_bytes() == b"Old text.\r\nNew ending, never saved.\r\n"
    assert _entry_files(app_home) == []


def test_discarded_entries_go_and_undecided_ones_stay_for_next_time(make_window, app_home):
    _orphan(app_home, "keep", "keep me for later", None, "Untitled")
    _orphan(app_home, "drop", "throw me away", None, "Untitled")
    h = make_window(start=False)
    h.recovery_chooser.answers.append(lambda entries: RecoveryDecision(discard=("drop",)))
    h.window.start()
    assert h.editor.toPlainText() == ""
    with RecoveryStore.for_paths(app_home) as later:
        assert [e.text for e in later.list()] == ["keep me for later"]


def test_recover_menu_offers_again_and_says_when_there_is_nothing(make_window, app_home):
    h = make_window()
    h.window.menus.actions["recover"].trigger()
    assert h.recovery_chooser.offered == []
    assert "no unsaved work" in h.window.status.currentMessage()
    _orphan(app_home, "late", "found later", None, "Untitled")
    h.recovery_chooser.answers.append(lambda entries: RecoveryDecision(restore="late"))
    h.window.menus.actions["recover"].trigger()
    assert h.editor.toPlainText() == "found later"


def test_recovery_dialog_restores_or_discards_after_confirming(qtbot, app_home):
    _orphan(app_home, "one", "first text", "/tmp/first.txt", "first.txt")
    _orphan(app_home, "two", "second text", None, "Untitled")
    with RecoveryStore.for_paths(app_home) as store:
        entries = store.list()
    messenger = ScriptedMessenger()
    dialog = RecoveryDialog(entries, messenger)
    qtbot.addWidget(dialog)
    assert dialog.list.count() == 2
    assert "first.txt" in dialog.list.item(0).text() + dialog.list.item(1).text()
    first_id = dialog.list.currentItem().data(Qt.ItemDataRole.UserRole)
    messenger.answers.append(Choice.CANCEL)
    dialog.discard_button.click()
    assert dialog.list.count() == 2 and dialog.decision().discard == ()
    messenger.answers.append(Choice.DISCARD)
    dialog.discard_button.click()
    assert dialog.decision().discard == (first_id,) and dialog.list.count() == 1
    dialog.restore_button.click()
    assert dialog.result() == dialog.DialogCode.Accepted
    assert dialog.decision().restore not in (None, first_id)


def _ghost_editor() -> tuple[GhostTextEditor, DummySuggestionSource]:
    source = DummySuggestionSource(default=[" and the ghost", " walked in."], auto_stream=False)
    controller = SuggestionController(
        source,
        SamplingSettings(stop_at=StopAt.LENGTH),
        SuggestionPreferences(auto_trigger=False),
        rng=random.Random(1),
    )
    return GhostTextEditor(controller, GhostKeymap.for_platform("linux")), source


def test_ghost_text_is_never_saved_autosaved_counted_or_recovered(
    make_window, app_home, qtbot, tmp_path
):
    editor, source = _ghost_editor()
    h = make_window(settings=_settings(interval_s=300), editor=editor)
    h.type("It was late")
    qtbot.keyClick(editor, Qt.Key.Key_Space, Qt.KeyboardModifier.ControlModifier)
    for piece in source.default:
        source.emit_piece(source.last.request_id, piece)
    source.emit_finished(source.last.request_id)
    assert editor.ghost_text() == " and the ghost walked in."
    _lose_focus(h.window)
    _settle(h.window)
    assert _entry_texts(app_home) == ["It was late"]
    h.window.word_counter.update_now()
    assert h.window.status.count_label.text().startswith("3 words")
    target = tmp_path / "ghostless.txt"
    h.files.answers.append(str(target))
    assert h.window.documents.save()
    assert target.read_text(encoding="utf-8") == "It was late"
    assert editor.ghost_text()  # still on screen: saving did not need to remove it


# --- the real thing: a separate app process, killed -------------------------------------

APP_SCRIPT = """
import sys
from PySide6.QtWidgets import QApplication, QPlainTextEdit
from PySide6.QtTest import QTest
from tests.support.scripted import ScriptedMessenger
from writer_app.documents.recovery import RecoveryStore
from writer_app.paths import AppPaths
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import SettingsStore
from writer_app.ui.main_window import MainWindow

app = QApplication([])
editor = QPlainTextEdit()
paths = AppPaths.default()  # WRITER_APP_HOME: the test's folder
store = SettingsStore.for_paths(paths)
keeper = SettingsKeeper(store.load().settings, store)
window = MainWindow(editor, keeper=keeper, recovery=RecoveryStore.for_paths(paths),
                    messenger=ScriptedMessenger())
window.start(sys.argv[1])
QTest.keyClicks(editor, sys.argv[2])  # typed key by key
editor.insertPlainText(sys.argv[3])  # text no keyboard here can type
print("typed", flush=True)
sys.exit(app.exec())
"""


@pytest.mark.slow
def test_work_typed_before_a_sigkill_is_offered_and_restored_exactly(
    make_window, app_home, tmp_path
):
    SettingsStore.for_paths(app_home).save(_settings(interval_s=1))
    document = tmp_path / "diary.txt"
    document.write_bytes(b"Yesterday was quiet.\r\n")
    typed, pasted = "Today the storm came. ", "Caf\u00e9 \u6771\u4eac \U0001f600\n"
    expected = typed + pasted + "Yesterday was quiet.\n"
    script = tmp_path / "run_app.py"
    script.write_text(APP_SCRIPT, encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO_ROOT))
    app = subprocess.Popen(
        [sys.executable, str(script), str(document), typed, pasted],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while _entry_texts(app_home) != [expected]:  # polling a file, not Qt
            assert app.poll() is None, app.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the autosave never landed"
            time.sleep(0.05)
        with RecoveryStore.for_paths(app_home) as other_instance:
            assert other_instance.list() == []  # a live instance's work is not "crashed"
        os.kill(app.pid, signal.SIGKILL)
        app.wait(timeout=30)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode == -signal.SIGKILL
    assert document.read_bytes() == b"Yesterday was quiet.\r\n"  # it was never saved

    h = make_window(start=False)
    h.recovery_chooser.answers.append(lambda entries: RecoveryDecision(restore=entries[0].doc_id))
    h.window.start()
    (offered,) = h.recovery_chooser.offered
    assert [(e.title, e.path) for e in offered] == [("diary.txt", str(document))]
    assert h.editor.toPlainText() == expected
    assert h.window.isWindowModified()
    assert h.window.documents.save()
    assert document.read_bytes() == expected.replace("\n", "\r\n").encode("utf-8")
