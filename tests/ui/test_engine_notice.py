"""The writer's side of an engine that stops answering: the notice and its Restart button,
in the real app with a really stopped (SIGSTOP) engine process."""

from __future__ import annotations

import contextlib
import os
import signal

from tests.ui.test_writer_app import ENDLESS, build_app, text, type_text
from writer_app.services.inference import NOT_RESPONDING_NOTICE


def test_a_stopped_engine_says_it_isnt_responding_and_restart_brings_it_back(
    qtbot, app_home, slow_model
):
    writer = build_app(qtbot, app_home, slow_model, ENDLESS)
    writer.service.watchdog.seconds = 1.0  # the app waits 5 s
    bar = writer.window.notice_bar
    pid = None
    try:
        qtbot.waitUntil(lambda: writer.service._worker.session is not None, timeout=10_000)
        pid = writer.service._worker.session.client.pid
        pieces: list[str] = []
        writer.service.token.connect(lambda rid, piece: pieces.append(piece))
        type_text(qtbot, writer, "Once upon a time ")
        qtbot.waitUntil(lambda: len(pieces) >= 2, timeout=30_000)
        os.kill(pid, signal.SIGSTOP)
        qtbot.waitUntil(lambda: bar.isVisible() and bar.label.text() == NOT_RESPONDING_NOTICE,
                        timeout=10_000)
        restart = [a for a in bar.actions() if a.text() == "Restart the engine"]
        assert len(restart) == 1 and restart[0].isVisible()
        assert "not responding" in writer.window.status.engine_label.text()
        type_text(qtbot, writer, "and")  # typing still works meanwhile
        restart[0].trigger()
        qtbot.waitUntil(lambda: writer.service._worker.session.client.pid != pid
                        and writer.service.engine_state == "idle", timeout=30_000)
        assert not restart[0].isVisible()
        assert NOT_RESPONDING_NOTICE not in bar.label.text()
        assert text(writer) == "Once upon a time and"
        # The restarted engine suggests again.
        pieces.clear()
        type_text(qtbot, writer, " then")
        qtbot.waitUntil(lambda: len(pieces) >= 2, timeout=30_000)
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        writer.editor.document().setModified(False)
        writer.window.close()
        writer.shutdown()
