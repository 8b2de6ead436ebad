"""The download manager: real huggingface_hub client, fake hub on 127.0.0.1, real threads."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.fake_hub import FakeHub, fake_hub, free_port, localhost_only, tiny_gpt2_file
from writer_app.models.catalog import REPO_ID, Catalog, CatalogEntry
from writer_app.models.downloader import Downloader, Progress, RetryPolicy
from writer_app.models.hub import HubClient
from writer_app.models.store import partial_path, state_path
from writer_app.paths import AppPaths
from writer_app.services.downloads import DownloadManager, FailureKind, JobState
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import ModelSettings, PrivacySettings, Settings

__all__ = ["fake_hub", "localhost_only"]
pytestmark = pytest.mark.usefixtures("localhost_only")

SMALL = Catalog().get("gpt2-q4_0")
SMALL_Q8 = Catalog().get("gpt2-q8_0")
WAIT_MS = 20_000


class SettingsHolder(SettingsKeeper):
    """The app's SettingsKeeper, in memory only, with a shortcut for the models section."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, None)

    def change_models(self, **changes) -> None:
        self.update(lambda s: replace(s, models=replace(s.models, **changes)))


def quick_downloader(hub: HubClient, catalog: Catalog) -> Downloader:
    """The real downloader, with retries that do not make tests wait for seconds."""
    return Downloader(hub, catalog=catalog, retry=RetryPolicy(retries=1, base_delay=0.01),
                      progress_interval=0.02)


def host_model(hub: FakeHub, entry: CatalogEntry, tmp_path: Path, seed: int = 0) -> bytes:
    """Put a real (tiny, ~14 kB) GGML model on the fake hub under the entry's file name."""
    data = tiny_gpt2_file(tmp_path / "hosted" / f"{entry.id}-{seed}.bin", seed=seed).read_bytes()
    hub.add_file(REPO_ID, entry.filename, data)
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ranges(hub: FakeHub, filename: str) -> list[str | None]:
    return [r.headers.get("range") for r in hub.content_gets() if r.path.endswith(filename)]


@pytest.fixture
def settings(fake_hub) -> SettingsHolder:
    return SettingsHolder(Settings(models=ModelSettings(hub_endpoint=fake_hub.endpoint)))


@pytest.fixture
def make_manager(qtbot, app_home: AppPaths):
    made: list[DownloadManager] = []

    def make(settings: SettingsHolder) -> DownloadManager:
        manager = DownloadManager(app_home, settings, make_downloader=quick_downloader)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown()


class Events:
    def __init__(self, manager: DownloadManager) -> None:
        self.progress: dict[str, list[Progress]] = {}
        self.finished: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str, str]] = []
        self.cancelled: list[tuple[str, bool]] = []
        manager.progressed.connect(lambda i, p: self.progress.setdefault(i, []).append(p))
        manager.finished.connect(lambda i, path: self.finished.append((i, path)))
        manager.failed.connect(lambda i, m, k: self.failed.append((i, m, k)))
        manager.cancelled.connect(lambda i, kept: self.cancelled.append((i, kept)))


def test_queued_downloads_run_one_at_a_time_with_progress(qtbot, fake_hub, settings,
                                                          make_manager, app_home, tmp_path):
    first = host_model(fake_hub, SMALL, tmp_path, seed=1)
    second = host_model(fake_hub, SMALL_Q8, tmp_path, seed=2)
    fake_hub.set_faults(REPO_ID, SMALL.filename, bytes_per_second=30_000)
    manager = make_manager(settings)
    events = Events(manager)
    assert fake_hub.requests == []  # building the manager asks the hub nothing

    manager.download(SMALL)
    manager.download(SMALL_Q8)
    assert manager.job(SMALL.id).state is JobState.RUNNING
    assert manager.job(SMALL_Q8.id).state is JobState.QUEUED
    qtbot.waitUntil(lambda: len(events.finished) == 2, timeout=WAIT_MS)

    folder = app_home.models_dir
    assert events.finished == [(SMALL.id, str(folder / SMALL.filename)),
                               (SMALL_Q8.id, str(folder / SMALL_Q8.filename))]
    assert sha256((folder / SMALL.filename).read_bytes()) == sha256(first)
    assert sha256((folder / SMALL_Q8.filename).read_bytes()) == sha256(second)
    # The second download only began once the first was complete.
    paths = [r.path for r in fake_hub.content_gets()]
    assert paths == [p for p in paths if p.endswith(SMALL.filename)] + [
        p for p in paths if p.endswith(SMALL_Q8.filename)]
    reports = events.progress[SMALL.id]
    done = [p.bytes_done for p in reports]
    assert len(reports) >= 5 and done == sorted(done)  # many, smooth, never backwards
    assert reports[-1].percent == 100.0
    assert any(p.speed_bytes_per_second > 0 and p.eta_seconds is not None for p in reports)
    assert manager.jobs() == []
    assert {m.name for m in manager.store.installed()} == {SMALL.filename, SMALL_Q8.filename}
    # The hub's exact size reached the catalog (on the GUI thread), replacing the estimate.
    assert manager.catalog.item(SMALL).size_bytes == len(first)


def test_pause_keeps_the_partial_and_resume_after_a_restart_uses_range(
        qtbot, fake_hub, settings, make_manager, app_home, tmp_path):
    data = host_model(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, bytes_per_second=20_000)
    manager = make_manager(settings)
    events = Events(manager)
    manager.download(SMALL)
    qtbot.waitUntil(lambda: any(p.bytes_done > 2_000 for p in events.progress.get(SMALL.id, [])),
                    timeout=WAIT_MS)
    manager.pause(SMALL.id)
    assert manager.job(SMALL.id).state is JobState.STOPPING
    qtbot.waitUntil(lambda: events.cancelled == [(SMALL.id, True)], timeout=WAIT_MS)
    target = app_home.models_dir / SMALL.filename
    kept = partial_path(target).stat().st_size
    assert 0 < kept < len(data) and state_path(target).exists()
    assert manager.jobs() == []
    [partial] = manager.store.partials()
    assert (partial.bytes_done, partial.total_bytes) == (kept, len(data))
    manager.shutdown()  # the app quits

    fake_hub.clear_faults(REPO_ID, SMALL.filename)
    later = make_manager(settings)  # ... and starts again
    later_events = Events(later)
    later.download(SMALL)
    qtbot.waitUntil(lambda: bool(later_events.finished), timeout=WAIT_MS)

    assert ranges(fake_hub, SMALL.filename) == [None, f"bytes={kept}-"]
    assert sha256(target.read_bytes()) == sha256(data)
    assert not partial_path(target).exists()


def test_quitting_mid_download_pauses_it(qtbot, fake_hub, settings, make_manager, app_home,
                                         tmp_path):
    host_model(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, bytes_per_second=20_000)
    manager = make_manager(settings)
    events = Events(manager)
    manager.download(SMALL)
    qtbot.waitUntil(lambda: any(p.bytes_done > 0 for p in events.progress.get(SMALL.id, [])),
                    timeout=WAIT_MS)
    manager.shutdown()
    assert partial_path(app_home.models_dir / SMALL.filename).stat().st_size > 0


def test_cancel_deletes_the_partial_and_unqueues(qtbot, fake_hub, settings, make_manager,
                                                 app_home, tmp_path):
    host_model(fake_hub, SMALL, tmp_path)
    host_model(fake_hub, SMALL_Q8, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, bytes_per_second=20_000)
    manager = make_manager(settings)
    events = Events(manager)
    manager.download(SMALL)
    manager.download(SMALL_Q8)
    manager.cancel(SMALL_Q8.id)  # still queued: simply dropped
    assert events.cancelled == [(SMALL_Q8.id, False)] and manager.job(SMALL_Q8.id) is None
    qtbot.waitUntil(lambda: bool(events.progress.get(SMALL.id)), timeout=WAIT_MS)
    manager.cancel(SMALL.id)
    qtbot.waitUntil(lambda: len(events.cancelled) == 2, timeout=WAIT_MS)

    assert events.cancelled[1] == (SMALL.id, False)
    assert sorted(p.name for p in app_home.models_dir.iterdir()) == []
    assert not any(r.path.endswith(SMALL_Q8.filename) for r in fake_hub.content_gets())
    assert events.finished == [] and events.failed == []


@pytest.mark.parametrize(
    ("fault", "kind", "words"),
    [
        ({"status": 500}, FailureKind.SERVER, "server error (HTTP 500)"),
        ({"corrupt": True}, FailureKind.CHECKSUM, "arrived damaged"),
        ("missing", FailureKind.NOT_FOUND, "not found"),
        ("server down", FailureKind.OFFLINE, "Could not connect"),
    ],
)
def test_failures_reach_the_ui_as_sentences_with_their_kind(
        qtbot, fake_hub, settings, make_manager, app_home, tmp_path, fault, kind, words):
    if fault == "server down":
        settings.change_models(hub_endpoint=f"http://127.0.0.1:{free_port()}")
    elif fault != "missing":
        host_model(fake_hub, SMALL, tmp_path)
        fake_hub.set_faults(REPO_ID, SMALL.filename, **fault)
    else:
        host_model(fake_hub, SMALL_Q8, tmp_path)  # the repository exists, the file not
    manager = make_manager(settings)
    events = Events(manager)
    with qtbot.waitSignal(manager.failed, timeout=WAIT_MS):
        manager.download(SMALL)

    [(entry_id, message, failure)] = events.failed
    assert (entry_id, failure) == (SMALL.id, kind.value)
    assert words in message
    job = manager.job(SMALL.id)
    assert (job.state, job.message, job.kind) == (JobState.FAILED, message, kind)
    target = app_home.models_dir / SMALL.filename
    assert not target.exists()  # nothing half-done is ever offered as the model
    if kind is FailureKind.CHECKSUM:
        assert not partial_path(target).exists()  # damaged bytes are not kept to resume


def test_a_failed_download_can_be_retried(qtbot, fake_hub, settings, make_manager, tmp_path):
    data = host_model(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, corrupt=True)
    manager = make_manager(settings)
    events = Events(manager)
    with qtbot.waitSignal(manager.failed, timeout=WAIT_MS):
        manager.download(SMALL)
    fake_hub.clear_faults(REPO_ID, SMALL.filename)
    with qtbot.waitSignal(manager.finished, timeout=WAIT_MS):
        manager.download(SMALL)
    assert sha256(Path(events.finished[0][1]).read_bytes()) == sha256(data)
    assert manager.job(SMALL.id) is None


def test_offline_mode_refuses_without_any_connection(qtbot, fake_hub, settings, make_manager,
                                                     tmp_path):
    host_model(fake_hub, SMALL, tmp_path)
    settings.update(lambda s: replace(s, privacy=PrivacySettings(offline=True)))
    manager = make_manager(settings)
    events = Events(manager)
    refused: list[str] = []
    manager.catalogRefreshFailed.connect(refused.append)

    assert manager.download(SMALL) is False
    assert manager.refresh_catalog() is False

    assert events.failed and events.failed[0][2] == FailureKind.SWITCHED_OFF.value
    assert "offline mode" in events.failed[0][1] and "offline mode" in refused[0]
    assert manager.jobs() == [] and fake_hub.requests == []


def test_refresh_from_the_hub_updates_sizes_in_one_request(qtbot, fake_hub, settings,
                                                           make_manager, tmp_path):
    data = host_model(fake_hub, SMALL, tmp_path)
    manager = make_manager(settings)
    assert manager.catalog.item(SMALL).from_hub is False
    with qtbot.waitSignal(manager.catalogRefreshed, timeout=WAIT_MS):
        assert manager.refresh_catalog(include_extras=False)
    item = manager.catalog.item(SMALL)
    assert (item.size_bytes, item.sha256, item.from_hub) == (len(data), sha256(data), True)
    assert [(r.method, "/paths-info/" in r.path) for r in fake_hub.requests] == [("POST", True)]


def test_refresh_failure_is_a_sentence(qtbot, settings, make_manager):
    settings.change_models(hub_endpoint=f"http://127.0.0.1:{free_port()}")
    manager = make_manager(settings)
    with qtbot.waitSignal(manager.catalogRefreshFailed, timeout=WAIT_MS) as blocker:
        manager.refresh_catalog()
    assert "Could not connect to 127.0.0.1" in blocker.args[0]
    assert not manager.refreshing


def test_files_dropped_into_the_folder_are_noticed(qtbot, settings, make_manager, app_home,
                                                   tmp_path):
    app_home.models_dir.mkdir(parents=True)
    manager = make_manager(settings)
    assert manager.store.installed() == []
    with qtbot.waitSignal(manager.folderChanged, timeout=WAIT_MS):
        tiny_gpt2_file(app_home.models_dir / "dropped.bin")
    assert [m.name for m in manager.store.installed()] == ["dropped.bin"]


def test_the_models_folder_follows_the_setting(qtbot, settings, make_manager, tmp_path):
    manager = make_manager(settings)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tiny_gpt2_file(elsewhere / "mine.bin")
    with qtbot.waitSignal(manager.folderChanged, timeout=1_000):  # it subscribes
        settings.change_models(models_dir=str(elsewhere))
    assert manager.models_dir == elsewhere
    assert [m.name for m in manager.store.installed()] == ["mine.bin"]
    with qtbot.waitSignal(manager.folderChanged, timeout=WAIT_MS):
        tiny_gpt2_file(elsewhere / "second.bin", seed=3)
    assert {m.name for m in manager.store.installed()} == {"mine.bin", "second.bin"}
