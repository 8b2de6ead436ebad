"""The settings keeper: one live Settings, saved on every change, given to subscribers."""

from __future__ import annotations

import errno
import os
from dataclasses import replace

from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import Settings, SettingsStore


def zoom(to: int):
    return lambda s: replace(s, editor=replace(s.editor, zoom=to))


def test_a_subscriber_gets_the_current_settings_at_once_and_every_change(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    keeper = SettingsKeeper(Settings(), store)
    seen: list[int] = []
    keeper.update(zoom(120))
    keeper.subscribe(lambda settings: seen.append(settings.editor.zoom))
    keeper.update(zoom(130))
    keeper.update(zoom(130))  # no change: nobody is told
    assert seen == [120, 130]
    assert store.load().settings.editor.zoom == 130


def test_a_failed_save_is_a_signal_once_per_reason_and_the_change_still_applies(tmp_path):
    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    keeper = SettingsKeeper(Settings(), SettingsStore(tmp_path / "s.json", write_chunk=disk_full))
    reasons: list[str] = []
    keeper.saveFailed.connect(reasons.append)
    keeper.update(zoom(110))
    keeper.update(zoom(120))
    assert len(reasons) == 1 and "settings file" in reasons[0]
    assert keeper.current.editor.zoom == 120
    assert not keeper.save()
