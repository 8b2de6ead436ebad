"""Test-wide fixtures: headless Qt, and every app folder redirected into tmp_path."""

from __future__ import annotations

import os

# Must happen before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never let huggingface_hub or anything else phone home from a test.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "0")

import pytest  # noqa: E402

from writer_app.paths import HOME_ENV, AppPaths  # noqa: E402


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch) -> AppPaths:
    """Each test gets its own config, data, cache and state folders."""
    home = tmp_path / "writer-app-home"
    monkeypatch.setenv(HOME_ENV, str(home))
    return AppPaths.default()
