"""The Model Manager window driven by clicks, over the real download manager and fake hub."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections import deque
from dataclasses import replace

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QProgressDialog, QPushButton

from tests.services.test_downloads import WAIT_MS, host_model, quick_downloader, ranges
from tests.support.fake_hub import fake_hub, localhost_only, random_bytes, tiny_gpt2_file
from tests.support.scripted import ScriptedMessenger, ScriptedModelChooser
from writer_app.models import store as store_module
from writer_app.models.catalog import REPO_ID, Catalog, ram_bytes_within
from writer_app.models.downloader import Downloader, RetryPolicy
from writer_app.models.hub import HubClient
from writer_app.models.store import ModelStore, partial_path
from writer_app.paths import AppPaths
from writer_app.services.downloads import DownloadManager
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import ModelSettings, PrivacySettings, Settings, SettingsStore
from writer_app.ui.dialogs import Choice
from writer_app.ui.model_manager import (
    TIGHT,
    WONT_FIT,
    FittingBar,
    ModelManagerWindow,
    RowStatus,
    human_size,
)

__all__ = ["fake_hub", "localhost_only"]
pytestmark = pytest.mark.usefixtures("localhost_only")

SMALL = Catalog().get("gpt2-q4_0")
LARGE = Catalog().get("gpt2-large-q4_0")
MB = 1_000_000
# WRITER_APP_SCREENSHOTS=docs/screenshots makes the tests that show something for the
# README save it there; otherwise nothing is written.
SCREENSHOTS = os.environ.get("WRITER_APP_SCREENSHOTS")


def save_screenshot(widget, name: str) -> None:
    if SCREENSHOTS:
        assert widget.grab().save(os.path.join(SCREENSHOTS, name))


def patient_downloader(hub: HubClient, catalog: Catalog) -> Downloader:
    """The real downloader, waiting 2 s before its first retry, as the app's does."""
    return Downloader(hub, catalog=catalog, retry=RetryPolicy(retries=3, base_delay=2.0),
                      progress_interval=0.02)


class Manager:
    """The window and everything it talks to."""

    def __init__(self, qtbot, paths: AppPaths, settings: Settings, total_ram: int,
                 make_downloader=quick_downloader) -> None:
        self.messenger = ScriptedMessenger()
        self.chooser = ScriptedModelChooser()
        self.keeper = SettingsKeeper(settings, SettingsStore.for_paths(paths))
        self.downloads = DownloadManager(paths, self.keeper,
                                         make_downloader=make_downloader)
        self.window = ModelManagerWindow(self.downloads, self.keeper, self.messenger,
                                         self.chooser, total_ram=total_ram)
        qtbot.addWidget(self.window)
        self.window.show()

    def click(self, qtbot, key: str, action: str) -> None:
        button = self.window.button(key, action)
        assert button is not None, f"no {action} button on {key}: {self.window.row(key)}"
        assert button.isEnabled()
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    def status(self, key: str) -> RowStatus | None:
        row = self.window.row(key)
        return row.status if row else None


@pytest.fixture
def make_manager(qtbot, app_home, fake_hub):
    made: list[Manager] = []

    def make(*, offline: bool = False, total_ram: int = 600 * MB,
             make_downloader=quick_downloader) -> Manager:
        settings = Settings(models=ModelSettings(hub_endpoint=fake_hub.endpoint),
                            privacy=PrivacySettings(offline=offline))
        made.append(Manager(qtbot, app_home, settings, total_ram, make_downloader))
        return made[-1]

    yield make
    for manager in made:
        manager.downloads.shutdown()


def test_the_catalog_shows_sizes_memory_and_status_without_going_online(qtbot, make_manager,
                                                                        fake_hub):
    manager = make_manager(total_ram=900 * MB)
    window = manager.window
    keys = [row.key for row in window.rows]
    assert keys == [f"{family}-{q}" for family in ("gpt2", "gpt2-large")
                    for q in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "f16")]
    assert {row.status for row in window.rows} == {RowStatus.NOT_INSTALLED}
    assert window.table.item(0, 2).text() == human_size(SMALL.approx_size_bytes) == "73.6 MB"
    # The whole app with gpt2 q4_0 needs ~494 MB: fine; f16 ~727 MB: most of 900 MB;
    # gpt2-large (at the 1 GB budget's context) ~994 MB: too much.
    assert window.ram_colour("gpt2-q4_0") is None
    assert window.ram_colour("gpt2-f16") == TIGHT
    assert window.ram_colour("gpt2-large-q4_0") == WONT_FIT
    assert "900.0 MB of memory" in window.intro.text()
    ram = {row.key: row.ram_bytes for row in window.rows}
    assert ram["gpt2-large-q4_0"] == LARGE.ram_bytes  # one memory model, as in the catalog
    # A bigger budget gives gpt2-large its full context, and the window says what that costs.
    manager.keeper.update(lambda s: replace(s, models=replace(s.models, memory_budget_mb=0)))
    qtbot.waitUntil(lambda: window.rows and {r.key: r.ram_bytes for r in window.rows}[
        "gpt2-large-q4_0"] == ram_bytes_within(LARGE, None), timeout=5_000)
    # Choosing llama.cpp quotes its footprint (Model > Engine changes this setting).
    manager.keeper.update(lambda s: replace(s, models=replace(s.models, engine="llama.cpp")))
    qtbot.waitUntil(lambda: {r.key: r.ram_bytes for r in window.rows}[
        "gpt2-large-q4_0"] == ram_bytes_within(LARGE, None, "llama.cpp") != ram_bytes_within(LARGE, None),
        timeout=5_000)
    assert window.intro.text().endswith(" RAM needed is the whole app's with llama.cpp.")
    assert window.folder_label.text() == str(manager.downloads.models_dir)
    assert "free on disk" in window.usage_label.text()
    assert not window.isModal()
    assert fake_hub.requests == []  # opening the window asks the hub nothing


def test_more_models_adds_the_medium_and_xl_rows(make_manager):
    window = make_manager().window
    window.more.setChecked(True)
    window.refresh()
    families = {row.entry.family for row in window.rows}
    assert families == {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}


def test_download_pause_resume_buttons_drive_the_download(qtbot, make_manager, fake_hub,
                                                          app_home, tmp_path):
    data = host_model(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, bytes_per_second=15_000)
    manager = make_manager()
    window = manager.window

    manager.click(qtbot, SMALL.id, "download")
    qtbot.waitUntil(lambda: window.progress_bar(SMALL.id) is not None
                    and window.progress_bar(SMALL.id).value() > 150, timeout=WAIT_MS)
    assert manager.status(SMALL.id) is RowStatus.DOWNLOADING
    bar = window.progress_bar(SMALL.id)
    assert "%" in bar.format() and "/s" in bar.format()

    manager.click(qtbot, SMALL.id, "pause")
    qtbot.waitUntil(lambda: manager.status(SMALL.id) is RowStatus.PARTIAL, timeout=WAIT_MS)
    kept = partial_path(app_home.models_dir / SMALL.filename).stat().st_size
    assert window.progress_bar(SMALL.id).format() == \
        f"Partial · {100 * kept / len(data):.0f} %"
    assert "partial downloads" in window.usage_label.text()

    fake_hub.clear_faults(REPO_ID, SMALL.filename)
    manager.click(qtbot, SMALL.id, "resume")
    qtbot.waitUntil(lambda: manager.status(SMALL.id) is RowStatus.INSTALLED, timeout=WAIT_MS)
    assert ranges(fake_hub, SMALL.filename) == [None, f"bytes={kept}-"]
    assert window.button(SMALL.id, "delete") is not None
    assert window.table.item(0, 2).text() == human_size(len(data))  # the real size now


def test_cancel_button_discards_the_partial(qtbot, make_manager, fake_hub, app_home, tmp_path):
    host_model(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, bytes_per_second=15_000)
    manager = make_manager()
    manager.click(qtbot, SMALL.id, "download")
    qtbot.waitUntil(lambda: manager.window.button(SMALL.id, "cancel") is not None,
                    timeout=WAIT_MS)
    manager.click(qtbot, SMALL.id, "cancel")
    qtbot.waitUntil(lambda: manager.status(SMALL.id) is RowStatus.NOT_INSTALLED,
                    timeout=WAIT_MS)
    assert not partial_path(app_home.models_dir / SMALL.filename).exists()


def test_a_failed_download_shows_on_its_row_with_retry(qtbot, make_manager, fake_hub,
                                                       tmp_path):
    host_model(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, status=500)
    manager = make_manager()
    manager.click(qtbot, SMALL.id, "download")
    qtbot.waitUntil(lambda: manager.status(SMALL.id) is RowStatus.FAILED, timeout=WAIT_MS)
    assert "HTTP 500" in manager.window.row(SMALL.id).detail
    fake_hub.clear_faults(REPO_ID, SMALL.filename)
    manager.click(qtbot, SMALL.id, "retry")
    qtbot.waitUntil(lambda: manager.status(SMALL.id) is RowStatus.INSTALLED, timeout=WAIT_MS)


def test_delete_asks_first(qtbot, make_manager, app_home):
    installed = tiny_gpt2_file(app_home.models_dir / SMALL.filename)
    manager = make_manager()
    manager.messenger.answers = deque([Choice.NO, Choice.YES])

    manager.click(qtbot, SMALL.id, "delete")
    assert installed.exists()
    manager.click(qtbot, SMALL.id, "delete")
    assert not installed.exists()
    assert manager.status(SMALL.id) is RowStatus.NOT_INSTALLED
    asked = manager.messenger.texts("ask")
    assert len(asked) == 2 and asked[0].startswith(f"Delete {SMALL.filename} (")


def test_import_accepts_a_model_and_explains_a_rejected_file(qtbot, make_manager, tmp_path,
                                                             app_home):
    good = tiny_gpt2_file(tmp_path / "outside" / "my-story-model.bin")
    bad = tmp_path / "outside" / "notes.bin"
    bad.write_bytes(random_bytes(4096))
    manager = make_manager()
    manager.chooser.answers = deque([str(good), str(bad), None])

    qtbot.mouseClick(manager.window.import_button, Qt.MouseButton.LeftButton)
    row = manager.window.row("my-story-model.bin")
    assert row is not None and row.status is RowStatus.INSTALLED
    assert row.model == "my-story-model (imported)"
    assert (app_home.models_dir / "my-story-model.bin").is_file()

    qtbot.mouseClick(manager.window.import_button, Qt.MouseButton.LeftButton)
    [(kind, title, text)] = manager.messenger.log
    assert (kind, title) == ("warning", "Model not imported")
    assert "notes.bin" in text and "GGML" in text  # the validator's own reason
    assert not (app_home.models_dir / "notes.bin").exists()

    qtbot.mouseClick(manager.window.import_button, Qt.MouseButton.LeftButton)  # cancelled
    assert len(manager.messenger.log) == 1


def no_links(source, destination):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_a_model_from_another_disk_is_copied_off_the_gui_thread(qtbot, make_manager, tmp_path,
                                                              app_home, monkeypatch):
    source = tiny_gpt2_file(tmp_path / "usb" / "story.bin")
    monkeypatch.setattr(os, "link", no_links)  # as from another disk: a real copy
    monkeypatch.setattr(store_module, "COPY_BLOCK_BYTES", 4096)
    copied_on: set[int] = set()
    real_import = ModelStore.import_file

    def recording_import(self, path, **options):
        copied_on.add(threading.get_ident())
        return real_import(self, path, **options)

    monkeypatch.setattr(ModelStore, "import_file", recording_import)
    manager = make_manager()
    manager.chooser.answers = deque([str(source)])
    qtbot.mouseClick(manager.window.import_button, Qt.MouseButton.LeftButton)
    assert (app_home.models_dir / "story.bin").read_bytes() == source.read_bytes()
    assert copied_on and threading.get_ident() not in copied_on
    assert manager.messenger.log == []


def test_cancelling_an_import_keeps_nothing_and_asks_nothing(qtbot, make_manager, tmp_path,
                                                          app_home, monkeypatch):
    source = tiny_gpt2_file(tmp_path / "usb" / "story.bin")
    monkeypatch.setattr(os, "link", no_links)
    clicked = threading.Event()
    real_import = ModelStore.import_file

    def import_after_cancel(self, path, **options):
        assert clicked.wait(10)  # the copy starts once the writer has pressed Cancel
        return real_import(self, path, **options)

    monkeypatch.setattr(ModelStore, "import_file", import_after_cancel)
    manager = make_manager()
    manager.chooser.answers = deque([str(source)])

    def press_cancel() -> None:
        manager.window.findChild(QProgressDialog).findChild(QPushButton).click()
        clicked.set()

    QTimer.singleShot(0, press_cancel)
    qtbot.mouseClick(manager.window.import_button, Qt.MouseButton.LeftButton)
    assert clicked.is_set()
    assert not (app_home.models_dir / "story.bin").exists()
    assert [p.name for p in app_home.models_dir.glob("*")] == []
    assert manager.messenger.log == []


def test_a_file_dropped_into_the_folder_appears_without_a_restart(qtbot, make_manager,
                                                                  app_home, tmp_path):
    app_home.models_dir.mkdir(parents=True)
    manager = make_manager()
    assert manager.status(SMALL.id) is RowStatus.NOT_INSTALLED
    source = tiny_gpt2_file(tmp_path / "downloads-folder" / SMALL.filename)
    shutil.copy(source, app_home.models_dir / SMALL.filename)
    qtbot.waitUntil(lambda: manager.status(SMALL.id) is RowStatus.INSTALLED, timeout=WAIT_MS)


def test_reopening_the_window_rescans(qtbot, make_manager, app_home):
    manager = make_manager()
    manager.window.hide()
    tiny_gpt2_file(app_home.models_dir / "later.bin")  # folder did not exist: not watched
    manager.window.show()
    assert manager.status("later.bin") is RowStatus.INSTALLED


def test_changing_the_models_folder_is_a_setting_and_a_rescan(qtbot, make_manager, tmp_path,
                                                              app_home):
    other = tmp_path / "big-disk" / "models"
    tiny_gpt2_file(other / SMALL.filename)
    manager = make_manager()
    manager.chooser.answers = deque([str(other)])
    qtbot.mouseClick(manager.window.change_folder_button, Qt.MouseButton.LeftButton)

    assert manager.keeper.current.models.models_dir == str(other)
    saved = SettingsStore.for_paths(app_home).load().settings
    assert saved.models.models_dir == str(other)
    assert manager.window.folder_label.text() == str(other)
    assert manager.status(SMALL.id) is RowStatus.INSTALLED


def test_refresh_from_hub_is_an_explicit_action(qtbot, make_manager, fake_hub, tmp_path):
    data = host_model(fake_hub, SMALL, tmp_path)
    manager = make_manager()
    assert fake_hub.requests == []
    qtbot.mouseClick(manager.window.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "up to date" in manager.window.notice.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: manager.window.table.item(0, 2).text() == human_size(len(data)),
                    timeout=WAIT_MS)
    assert manager.window.refresh_button.isEnabled()
    assert len(fake_hub.requests) == 1


def test_offline_mode_disables_every_network_action(make_manager, fake_hub):
    manager = make_manager(offline=True)
    window = manager.window
    assert not window.refresh_button.isEnabled()
    assert not window.button(SMALL.id, "download").isEnabled()
    assert "Offline mode is on" in window.intro.text()
    assert fake_hub.requests == []


def test_a_second_download_waits_visibly_in_the_queue(qtbot, make_manager, fake_hub, tmp_path):
    second = Catalog().get("gpt2-q8_0")
    host_model(fake_hub, SMALL, tmp_path)
    host_model(fake_hub, second, tmp_path, seed=1)
    fake_hub.set_faults(REPO_ID, SMALL.filename, bytes_per_second=15_000)
    manager = make_manager()
    manager.click(qtbot, SMALL.id, "download")
    manager.click(qtbot, second.id, "download")
    qtbot.waitUntil(lambda: manager.status(second.id) is RowStatus.QUEUED, timeout=WAIT_MS)
    assert manager.status(SMALL.id) is RowStatus.DOWNLOADING
    assert manager.window.button(second.id, "cancel") is not None
    qtbot.waitUntil(lambda: manager.status(second.id) is RowStatus.INSTALLED, timeout=WAIT_MS)
    assert manager.status(SMALL.id) is RowStatus.INSTALLED


def test_the_retry_status_fits_its_cell_and_is_elided_with_a_tooltip_when_it_cannot(
        qtbot, make_manager, fake_hub, tmp_path):
    host_model(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, status=503)
    manager = make_manager(make_downloader=patient_downloader)
    window = manager.window
    manager.click(qtbot, SMALL.id, "download")

    def retrying() -> bool:
        bar = window.progress_bar(SMALL.id)
        return bar is not None and "trying again" in bar.format()

    qtbot.waitUntil(retrying, timeout=WAIT_MS)
    bar = window.progress_bar(SMALL.id)
    status = "Connection trouble; trying again in 2 s"
    assert bar.format() == status
    room = bar.contentsRect().width() - FittingBar.TEXT_PADDING
    assert bar.text() == status  # all of it, on one line inside the bar
    assert bar.fontMetrics().horizontalAdvance(status) <= room
    assert bar.toolTip() == ""
    save_screenshot(window, "model-manager.png")

    bigger = bar.font()
    bigger.setPointSizeF(bigger.pointSizeF() * 1.6)
    bar.setFont(bigger)
    shown = bar.text()
    assert shown.endswith("…") and status.startswith(shown[:-1])
    assert bar.fontMetrics().horizontalAdvance(shown) <= room
    assert bar.toolTip() == status

    manager.click(qtbot, SMALL.id, "cancel")
    qtbot.waitUntil(lambda: manager.status(SMALL.id) is RowStatus.NOT_INSTALLED,
                    timeout=WAIT_MS)
