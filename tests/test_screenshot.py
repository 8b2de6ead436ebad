"""`writer-app --screenshot FILE`: the README's pictures come from this mode, so it must
keep producing a real window with a ghost suggestion in it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage


@pytest.mark.slow
def test_screenshot_mode_saves_the_window_with_a_live_suggestion(tmp_path, qapp):
    target = tmp_path / "window.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-m", "writer_app", "--screenshot", str(target)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    suggestion = re.search(r"suggestion: '(.+)'\)", result.stdout)
    assert suggestion and suggestion.group(1).strip(), result.stdout
    image = QImage(str(target))
    assert (image.width(), image.height()) == (1280, 800)
    # A real window, not a blank grab: text, docks and chrome give many colours.
    colours = {image.pixel(x, y) for x in range(0, 1280, 7) for y in range(0, 800, 7)}
    assert len(colours) > 20
