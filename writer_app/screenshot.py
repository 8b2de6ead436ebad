"""`writer-app --screenshot FILE`: the real window, offscreen, with a live ghost suggestion.

Used for the README's pictures and to look at what we build. It runs in a throwaway
settings folder so the writer's own settings and recovery files are never touched.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer

from writer_app.engine.sampling import SamplingSettings, StopAt

SAMPLE_TEXT = (
    "Chapter One\n\n"
    "It was a bright cold morning in early spring, and the village was only beginning "
    "to stir. Elizabeth walked down the lane towards the old mill, thinking of the "
    "letter she had received the evening before. She had read it twice, and still she"
)
SCREENSHOT_SAMPLING = SamplingSettings(
    temperature=0.7, top_k=40, top_p=0.95, max_tokens=28, seed=11, stop_at=StopAt.SENTENCE
)


def run_event_loop_until(condition, timeout_ms: int) -> bool:
    """Run the event loop until condition() holds or the time is up."""
    loop = QEventLoop()
    poll = QTimer(interval=20)
    poll.timeout.connect(lambda: condition() and loop.quit())
    QTimer.singleShot(timeout_ms, loop.quit)
    poll.start()
    if not condition():
        loop.exec()
    poll.stop()
    return bool(condition())


def save_screenshot(target: Path, *, width: int = 1280, height: int = 800) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from writer_app.app import WriterApp, create_qapplication
    from writer_app.paths import HOME_ENV, AppPaths

    qt_app = create_qapplication()
    with tempfile.TemporaryDirectory(prefix="writer-app-screenshot-") as home:
        os.environ[HOME_ENV] = home
        writer = WriterApp.build(paths=AppPaths.default())
        editor = writer.editor
        try:
            writer.keeper.update(lambda s: replace(s, sampling=SCREENSHOT_SAMPLING))
            docks = writer.sampling_docks
            docks.probability_dock.show()
            writer.start()
            writer.window.resize(width, height)
            editor.setPlainText(SAMPLE_TEXT)
            cursor = editor.textCursor()
            cursor.movePosition(cursor.MoveOperation.End)
            editor.setTextCursor(cursor)
            if not run_event_loop_until(lambda: writer.service.facts is not None, 60_000):
                print("error: the model did not load in time", file=sys.stderr)
                return 1
            editor.setFocus()
            writer.controller.trigger()
            if not run_event_loop_until(
                lambda: bool(editor.ghost_text()) and not writer.controller.busy, 60_000
            ):
                print("error: no suggestion appeared in time", file=sys.stderr)
                return 1
            docks.probabilities.select_step(1)  # show one step's alternatives
            run_event_loop_until(lambda: docks.probabilities.next_list.count() > 0, 10_000)
            qt_app.processEvents()
            if not writer.window.grab().save(str(target)):
                print(f"error: could not write {target}", file=sys.stderr)
                return 1
            print(f"saved {target} (suggestion: {editor.ghost_text()!r})")
            return 0
        finally:
            editor.document().setModified(False)  # nothing to save: no close prompt
            writer.window.close()
            writer.shutdown()
