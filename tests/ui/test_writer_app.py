"""The whole app end to end: real editor, controller, worker thread and engine process,
suggesting from generated phrase models. The keys and rules themselves are tested in
detail with a scripted source in test_ghost_editor.py; here they run for real."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QTextCursor

from benchmarks.probe import StallMonitor, own_lateness
from tests.support.scripted import (
    ScriptedFileChooser,
    ScriptedFontChooser,
    ScriptedMessenger,
    ScriptedRecoveryChooser,
)
from writer_app.app import WriterApp
from writer_app.documents.recovery import RecoveryStore
from writer_app.engine.cores import physical_cores
from writer_app.engine.memory import MIN_CONTEXT
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.services.inference import engine_threads
from writer_app.ui.recovery_dialog import RecoveryDecision

CTRL = Qt.KeyboardModifier.ControlModifier
ALT = Qt.KeyboardModifier.AltModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
# Slightly random, so alternatives differ, yet a phrase model is confident enough that
# the continuation is its phrase.
PHRASES = SamplingSettings(temperature=0.5, top_k=40, max_tokens=32, stop_at=StopAt.SENTENCE)
ENDLESS = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, max_tokens=256,
                           stop_at=StopAt.LENGTH)


def build_app(qtbot, app_home, model, sampling: SamplingSettings = PHRASES,
              debounce_ms: int = 50, cores: int | None = None) -> WriterApp:
    writer = WriterApp.build(
        cores=cores,
        paths=app_home,
        messenger=ScriptedMessenger(),
        file_chooser=ScriptedFileChooser(),
        font_chooser=ScriptedFontChooser(),
        recovery_chooser=ScriptedRecoveryChooser(),
    )
    # Not qtbot.addWidget: pytest-qt would close it before our teardown marks the
    # document saved, and the unsaved-changes prompt would ask the test a question.
    writer.keeper.update(lambda s: replace(
        s, sampling=sampling, editor=replace(s.editor, debounce_ms=debounce_ms)))
    with qtbot.waitSignal(writer.service.modelLoaded, timeout=60_000):
        writer.start(model_path=model)
    writer.editor.setFocus()
    return writer


@pytest.fixture
def cat_app(qtbot, app_home, cat_model):
    writer = build_app(qtbot, app_home, cat_model)
    yield writer
    writer.editor.document().setModified(False)
    writer.window.close()
    writer.shutdown()


def type_text(qtbot, writer: WriterApp, text: str) -> None:
    qtbot.keyClicks(writer.editor, text)


def wait_for_ghost(qtbot, writer: WriterApp, expected: str | None = None) -> str:
    controller = writer.controller
    qtbot.waitUntil(
        lambda: controller.suggestion is not None and controller.suggestion.done
        and not controller.busy,
        timeout=30_000,
    )
    ghost = writer.editor.ghost_text()
    if expected is not None:
        assert ghost == expected
    return ghost


def text(writer: WriterApp) -> str:
    return writer.editor.toPlainText()


def test_the_engine_gets_the_settings_memory_budget_and_spares_a_cpu(cat_app):
    models = cat_app.settings.models
    assert models.memory_budget_mb == 1000 and models.threads == "auto"
    assert cat_app.service.memory_budget_bytes == 10**9
    assert cat_app.service.threads == engine_threads("auto") == max(1, physical_cores() - 1)


def test_a_new_memory_budget_or_thread_count_reloads_the_model_with_it(
    qtbot, app_home, slow_model
):
    writer = build_app(qtbot, app_home, slow_model, cores=8)  # room for more threads
    try:
        service, label = writer.service, writer.window.status.model_label
        assert service.context_tokens == 1024 and "capped" not in label.toolTip()
        assert service.threads == 7  # "auto": all 8 cores but the window's
        loads: list[tuple[str, int, int | None]] = []
        service._load.connect(lambda order: loads.append(
            (order.path, order.threads, order.memory_budget_bytes)))
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            writer.keeper.update(lambda s: replace(
                s, models=replace(s.models, memory_budget_mb=1)))  # far too small: the floor
        assert loads == [(str(slow_model), 7, 1_000_000)]
        assert service.context_tokens == MIN_CONTEXT < 1024
        assert f"reads up to {MIN_CONTEXT} tokens" in label.toolTip()
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            writer.keeper.update(lambda s: replace(s, models=replace(s.models, threads=3)))
        assert loads[-1] == (str(slow_model), 3, 1_000_000) and service.threads == 3
        writer.keeper.update(lambda s: replace(s, editor=replace(s.editor, zoom=120)))
        assert len(loads) == 2  # other settings leave the engine alone
    finally:
        writer.editor.document().setModified(False)
        writer.window.close()
        writer.shutdown()


def test_the_status_bar_names_the_model_loading_while_crashed_work_is_offered(
    qtbot, app_home, cat_model
):
    with RecoveryStore.for_paths(app_home) as crashed:
        crashed.write("a1", "Unsaved words.", path=None, title="Untitled",
                      last_saved=datetime.now(timezone.utc))
    seen: list[str] = []
    chooser = ScriptedRecoveryChooser()
    label = None

    def answer(entries):
        seen.append(label.text())
        return RecoveryDecision()

    chooser.answers.append(answer)
    writer = WriterApp.build(paths=app_home, messenger=ScriptedMessenger(),
                             recovery_chooser=chooser)
    try:
        label = writer.window.status.model_label
        with qtbot.waitSignal(writer.service.modelLoaded, timeout=60_000):
            writer.start(model_path=cat_model)
        assert chooser.offered and seen == [f"loading {cat_model.name}…"]
        assert label.text().startswith(cat_model.name)
    finally:
        writer.window.close()
        writer.shutdown()


def test_what_exists_after_start_up_is_out_of_the_garbage_collectors_way(cat_app):
    # Frozen objects are skipped by a full collection (37-57 ms otherwise, GIL held).
    assert gc.get_freeze_count() > 10_000


def test_a_pause_in_typing_shows_the_models_continuation_as_ghost_text(qtbot, cat_app):
    type_text(qtbot, cat_app, "The cat sat ")
    wait_for_ghost(qtbot, cat_app, "on the mat.")
    assert text(cat_app) == "The cat sat "  # ghost text is never part of the document


def test_tab_accepts_all_and_ctrl_z_restores_then_redo(qtbot, cat_app):
    type_text(qtbot, cat_app, "The cat sat ")
    wait_for_ghost(qtbot, cat_app, "on the mat.")
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Tab)
    assert text(cat_app) == "The cat sat on the mat."
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Z, CTRL)
    assert text(cat_app) == "The cat sat "
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Z, CTRL | SHIFT)
    assert text(cat_app) == "The cat sat on the mat."


def test_ctrl_right_accepts_one_word_at_a_time(qtbot, cat_app):
    type_text(qtbot, cat_app, "The cat sat ")
    wait_for_ghost(qtbot, cat_app, "on the mat.")
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Right, CTRL)
    assert text(cat_app) == "The cat sat on"
    assert cat_app.editor.ghost_text() == " the mat."
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Right, CTRL)
    assert text(cat_app) == "The cat sat on the"


def test_shift_tab_accepts_to_the_end_of_the_sentence(qtbot, app_home, cat_model):
    writer = build_app(qtbot, app_home, cat_model,
                       replace(PHRASES, stop_at=StopAt.PARAGRAPH))
    try:
        type_text(qtbot, writer, "The cat sat ")
        wait_for_ghost(qtbot, writer, "on the mat. Then it slept all day!")
        qtbot.keyClick(writer.editor, Qt.Key.Key_Backtab, SHIFT)
        assert text(writer) == "The cat sat on the mat."
    finally:
        writer.editor.document().setModified(False)
        writer.window.close()
        writer.shutdown()


def test_escape_dismisses(qtbot, cat_app):
    type_text(qtbot, cat_app, "The cat sat ")
    wait_for_ghost(qtbot, cat_app, "on the mat.")
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Escape)
    assert cat_app.editor.ghost_text() == ""
    assert text(cat_app) == "The cat sat "


def test_typing_through_consumes_the_ghost_without_a_new_request(qtbot, cat_app):
    requests = []
    cat_app.service._generate.connect(lambda rid, *_: requests.append(rid))
    type_text(qtbot, cat_app, "The cat sat ")
    wait_for_ghost(qtbot, cat_app, "on the mat.")
    asked = len(requests)
    type_text(qtbot, cat_app, "on t")
    assert cat_app.editor.ghost_text() == "he mat."
    assert len(requests) == asked
    type_text(qtbot, cat_app, "x")  # a mismatch dismisses it
    assert cat_app.editor.ghost_text() == ""


def test_alternatives_cycle_with_a_counter(qtbot, app_home, slow_model):
    writer = build_app(qtbot, app_home, slow_model,
                       replace(PHRASES, temperature=1.0, max_tokens=6, stop_at=StopAt.LENGTH))
    try:
        type_text(qtbot, writer, "Once upon a time ")
        first = wait_for_ghost(qtbot, writer)
        qtbot.keyClick(writer.editor, Qt.Key.Key_BracketRight, ALT)
        second = wait_for_ghost(qtbot, writer)
        assert writer.editor.counter_text() == "2/3"
        assert second != first  # its own seed
        qtbot.keyClick(writer.editor, Qt.Key.Key_BracketLeft, ALT)
        assert writer.editor.ghost_text() == first
        assert writer.editor.counter_text() == "1/3"
    finally:
        writer.editor.document().setModified(False)
        writer.window.close()
        writer.shutdown()


def test_a_stale_suggestion_is_never_shown_after_the_text_changed(qtbot, app_home, slow_model):
    writer = build_app(qtbot, app_home, slow_model, ENDLESS)
    try:
        shown: list[str] = []
        writer.controller.ghostChanged.connect(
            lambda s: shown.append(s.text if s is not None else ""))
        type_text(qtbot, writer, "Once upon a time ")
        qtbot.waitUntil(lambda: bool(writer.editor.ghost_text()), timeout=30_000)
        assert writer.controller.busy  # a long generation is still streaming...
        changed_at = len(shown)
        writer.editor.moveCursor(QTextCursor.MoveOperation.Start)  # ...when the cursor moves
        qtbot.waitUntil(lambda: not writer.controller.busy, timeout=30_000)
        # Whatever the engine still sent for the old position was dropped: nothing but
        # "no suggestion" was shown from the moment the cursor moved.
        assert all(text == "" for text in shown[changed_at:])
        assert writer.editor.ghost_text() == ""
    finally:
        writer.editor.document().setModified(False)
        writer.window.close()
        writer.shutdown()

def wait_past_the_typing_pause(qtbot, writer: WriterApp) -> None:
    """Let the event loop run until well after the pause that triggers a suggestion."""
    pause = QTimer(singleShot=True, interval=4 * writer.controller.preferences.debounce_ms)
    with qtbot.waitSignal(pause.timeout, timeout=10_000):
        pause.start()


def test_ctrl_space_asks_even_with_automatic_suggestions_off(qtbot, cat_app):
    requests = []
    cat_app.service._generate.connect(lambda rid, *_: requests.append(rid))
    cat_app.keeper.update(lambda s: replace(s, editor=replace(s.editor, autosuggest=False)))
    type_text(qtbot, cat_app, "The cat sat ")
    wait_past_the_typing_pause(qtbot, cat_app)
    assert requests == [] and cat_app.editor.ghost_text() == ""  # the pause asked nothing
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Space, CTRL)
    wait_for_ghost(qtbot, cat_app, "on the mat.")
    assert len(requests) == 1


def test_status_bar_shows_model_engine_state_and_word_count(qtbot, cat_app, cat_model):
    type_text(qtbot, cat_app, "The cat sat ")
    wait_for_ghost(qtbot, cat_app)
    bar = cat_app.window.status
    qtbot.waitUntil(lambda: "3 words" in bar.count_label.text(), timeout=5_000)
    assert cat_model.name in bar.model_label.text()
    assert str(cat_model) in bar.model_label.toolTip()
    assert f"{cat_app.service.context_tokens} tokens" in bar.model_label.toolTip()
    assert "tok/s" in bar.engine_label.text()


STALL_LIMIT_MS = 50  # the README's promise for typing; the benchmark's target is 16


def test_the_editor_stays_responsive_while_a_slow_generation_runs(qtbot, app_home, slow_model):
    writer = build_app(qtbot, app_home, slow_model, ENDLESS)
    try:
        pieces: list[str] = []
        writer.service.token.connect(lambda rid, piece: pieces.append(piece))
        type_text(qtbot, writer, "Once upon a time ")
        qtbot.waitUntil(lambda: len(pieces) >= 2, timeout=30_000)
        # The worker keeps generating while the GUI thread runs its event loop: a 1 ms
        # timer, as the benchmark's, finds no gap longer than STALL_LIMIT_MS of the
        # app's own making (the time the GUI thread only waited for a CPU, which other
        # programs on a busy machine take, doesn't count).
        stalls = StallMonitor()
        stalls.start()
        qtbot.waitUntil(lambda: len(pieces) >= 14, timeout=60_000)
        stalls.stop()
        assert len(stalls.ticks) > 50  # it ran all along
        assert max(own_lateness(stalls.ticks)) < STALL_LIMIT_MS
        # ...and typing lands at once, cancelling the generation.
        assert writer.controller.busy
        type_text(qtbot, writer, "Hello")
        assert text(writer) == "Once upon a time Hello"
        qtbot.waitUntil(lambda: not writer.controller.busy, timeout=10_000)
    finally:
        writer.editor.document().setModified(False)
        writer.window.close()
        writer.shutdown()


def test_quitting_with_a_generation_in_flight_neither_hangs_nor_crashes(
    qtbot, app_home, slow_model
):
    writer = build_app(qtbot, app_home, slow_model, ENDLESS)
    pieces: list[str] = []
    writer.service.token.connect(lambda rid, piece: pieces.append(piece))
    type_text(qtbot, writer, "Once upon a time ")
    qtbot.waitUntil(lambda: len(pieces) >= 2, timeout=30_000)
    engine_pid = writer.service._worker.session.client.pid
    writer.editor.document().setModified(False)
    assert writer.window.close()  # closing the window shuts the service down
    assert not writer.service._worker_thread.isRunning()
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(engine_pid, 0)


def test_suggestions_menu_switches_settings_that_persist_and_reach_the_controller(
    qtbot, cat_app, app_home
):
    from writer_app.settings import SettingsStore

    menu = cat_app.suggestion_menu
    assert menu.automatic.isChecked() and cat_app.controller.preferences.auto_trigger
    menu.automatic.trigger()
    menu.pauses[800].trigger()
    menu.ignore_after.trigger()
    prefs = cat_app.controller.preferences
    assert (prefs.auto_trigger, prefs.debounce_ms, prefs.ignore_text_after_cursor) == (
        False, 800, True)
    assert cat_app.window.keeper.save()
    stored = SettingsStore.for_paths(app_home).load().settings.editor
    assert (stored.autosuggest, stored.debounce_ms, stored.ignore_text_after_cursor) == (
        False, 800, True)
    assert menu.pauses[800].isChecked() and not menu.pauses[300].isChecked()


def test_the_help_menu_lists_the_suggestion_keys(qtbot, cat_app):
    cat_app.suggestion_menu.keys_action.trigger()
    kind, title, body = cat_app.window.messenger.log[-1]
    assert (kind, title) == ("info", "Keyboard shortcuts")
    assert "Tab\taccept the whole suggestion" in body
    assert "Ctrl+Right\taccept the next word" in body


def test_text_after_the_cursor_shapes_the_suggestion_unless_ignored(qtbot, cat_app):
    type_text(qtbot, cat_app, "The cat sat  the mat.")
    cursor = cat_app.editor.textCursor()
    cursor.setPosition(len("The cat sat "))
    cat_app.editor.setTextCursor(cursor)
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Space, CTRL)
    wait_for_ghost(qtbot, cat_app, "on")  # " the mat." already follows the cursor
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Escape)
    cat_app.suggestion_menu.ignore_after.trigger()
    qtbot.keyClick(cat_app.editor, Qt.Key.Key_Space, CTRL)
    wait_for_ghost(qtbot, cat_app, "on the mat.")


def test_per_token_probabilities_are_computed_only_while_their_panel_shows(qtbot, cat_app):
    dock = cat_app.sampling_docks.probability_dock
    dock.hide()
    assert not cat_app.service.step_probabilities
    dock.show()
    qtbot.waitUntil(lambda: cat_app.service.step_probabilities, timeout=5_000)

