"""A suggestion streaming onto a 100,000-character paragraph, through the real window
and engine: the GUI thread never stalls for long (issue 15, item 11).

Measured the way the benchmark measures stalls (benchmarks/probe.py's StallMonitor: how
late a 1 ms timer fires). The target is 50 ms. This machine is shared, so the test
asserts it on the GUI thread's own part of each stall (the lateness minus the time the
thread was waiting for a CPU the engine or other programs had) and allows 100 ms for the
plain lateness. Before the fix a single stall took 0.4 s (prose), 0.9 s (combining
accents) and 27 s (one endless word).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from benchmarks.probe import StallMonitor, own_lateness
from benchmarks.texts import HUGE_PARAGRAPH_KINDS, huge_paragraph
from tests.ui.test_writer_app import ENDLESS, build_app
from writer_app.ui.ghost_editor import INLINE_GHOST_LIMIT

TARGET_MS = 50.0
SHARED_MACHINE_MS = 100.0
CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.mark.parametrize("kind", HUGE_PARAGRAPH_KINDS)
def test_a_suggestion_streaming_onto_a_huge_paragraph_never_stalls_the_window(
        qtbot, app_home, cat_model, kind):
    # A fixed seed: a random draw can end early (end-of-text) and show fewer steps.
    writer = build_app(qtbot, app_home, cat_model, replace(ENDLESS, max_tokens=16, seed=1))
    try:
        editor, controller = writer.editor, writer.controller
        text = huge_paragraph(kind)
        assert len(text) > 10 * INLINE_GHOST_LIMIT
        editor.setPlainText(text)
        editor.moveCursor(QTextCursor.MoveOperation.End)
        qtbot.keyClick(editor, Qt.Key.Key_Escape)  # no suggestion for loading the text
        qtbot.waitUntil(lambda: not controller.busy and not controller.debounce_pending)
        shown: list[str] = []
        controller.ghostChanged.connect(lambda _suggestion: shown.append(editor.ghost_text()))
        monitor = StallMonitor()
        monitor.start()
        qtbot.keyClick(editor, Qt.Key.Key_Space, CTRL)
        qtbot.waitUntil(lambda: controller.suggestion is not None and controller.suggestion.done
                        and not controller.busy, timeout=60_000)
        monitor.stop()
        assert len({ghost for ghost in shown if ghost}) >= 4  # it streamed in, token by token
        assert editor.toPlainText() == text
        lateness = [tick[1] for tick in monitor.ticks]
        own = own_lateness(monitor.ticks)
        print(f"{kind}: largest gap {max(lateness):.1f} ms, own part {max(own):.1f} ms")
        assert max(own) < TARGET_MS
        assert max(lateness) < SHARED_MACHINE_MS
    finally:
        writer.editor.document().setModified(False)
        writer.window.close()
        writer.shutdown()
