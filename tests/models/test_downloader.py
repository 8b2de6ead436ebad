"""Resumable, verified downloads: the real huggingface_hub client against the fake hub."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.fake_hub import (
    FakeHub,
    fake_hub,
    free_port,
    localhost_only,
    random_bytes,
    tiny_gpt2_file,
)
from writer_app.models import downloader as downloader_module
from writer_app.models.catalog import REPO_ID, Catalog, HubMetadataCache
from writer_app.models.downloader import (
    CancelToken,
    Downloader,
    DownloadPhase,
    DownloadSpec,
    Progress,
    RetryPolicy,
    download_model,
)
from writer_app.models.errors import (
    ChecksumMismatch,
    DiskFull,
    DownloadCancelled,
    DownloadInProgress,
    HubError,
    HubNotFound,
    HubServerError,
    HubUnauthorized,
    HubUnreachable,
    InvalidModel,
)
from writer_app.models.hub import HubClient, HubSettings
from writer_app.models.store import ModelStore, list_installed, partial_path, state_path

__all__ = ["fake_hub", "localhost_only"]
pytestmark = pytest.mark.usefixtures("localhost_only")

REPO = "writer/test-models"
NAME = "model.bin"
SPEC = DownloadSpec(REPO, NAME)
REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder:
    """Collects progress reports and the backoff waits the downloader asked for."""

    def __init__(self) -> None:
        self.reports: list[Progress] = []
        self.sleeps: list[float] = []

    def progress(self, report: Progress) -> None:
        self.reports.append(report)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    @property
    def phases(self) -> list[DownloadPhase]:
        return [r.phase for r in self.reports]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "models"


def make_downloader(hub: FakeHub, recorder: Recorder, **options) -> Downloader:
    options.setdefault("validate", None)  # random bytes are not GGML models
    hub_client = HubClient(HubSettings(endpoint=hub.endpoint, token=False))
    return Downloader(hub_client, sleep=recorder.sleep, **options)


def content_ranges(hub: FakeHub) -> list[str | None]:
    return [r.headers.get("range") for r in hub.content_gets()]


def test_full_download_is_verified_and_moved_into_place(fake_hub, recorder, dest):
    data = random_bytes(300_000)
    fake_hub.add_file(REPO, NAME, data)

    path = make_downloader(fake_hub, recorder).download(SPEC, dest, progress=recorder.progress)

    assert path == dest / NAME and sha256(path.read_bytes()) == sha256(data)
    assert sorted(p.name for p in dest.iterdir()) == [NAME]  # no .part or .part.json left
    assert recorder.phases[0] is DownloadPhase.CONNECTING
    assert recorder.phases[-2:] == [DownloadPhase.VERIFYING, DownloadPhase.DONE]
    assert recorder.reports[-1].percent == 100.0
    done = [r.bytes_done for r in recorder.reports if r.phase is DownloadPhase.DOWNLOADING]
    assert done == sorted(done) and recorder.sleeps == []
    assert content_ranges(fake_hub) == [None]


def test_a_real_model_passes_engine_validation_and_is_installed(fake_hub, recorder, dest, tmp_path):
    model = tiny_gpt2_file(tmp_path / "source.bin").read_bytes()
    fake_hub.add_file(REPO, NAME, model)

    path = make_downloader(
        fake_hub, recorder, validate=downloader_module.check_model_file
    ).download(SPEC, dest)

    assert [m.path for m in ModelStore(dest).installed()] == [path]


def test_a_file_the_engine_cannot_use_is_deleted(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, NAME, random_bytes(5000))
    downloader = make_downloader(fake_hub, recorder, validate=downloader_module.check_model_file)

    with pytest.raises(InvalidModel, match="downloaded correctly but the app cannot use it"):
        downloader.download(SPEC, dest)
    assert list(dest.iterdir()) == []


def test_dropped_connection_resumes_in_a_later_call_with_a_range_request(fake_hub, recorder, dest):
    data = random_bytes(2_000_000)
    fake_hub.add_file(REPO, NAME, data)
    fake_hub.set_faults(REPO, NAME, drop_after_bytes=700_000)
    no_retries = make_downloader(fake_hub, recorder, retry=RetryPolicy(retries=0))

    with pytest.raises(HubUnreachable, match="connection to 127.0.0.1.* dropped"):
        no_retries.download(SPEC, dest)
    assert partial_path(dest / NAME).stat().st_size == 700_000
    assert state_path(dest / NAME).exists() and not (dest / NAME).exists()

    fake_hub.clear_faults(REPO, NAME)
    path = make_downloader(fake_hub, recorder).download(SPEC, dest)

    assert content_ranges(fake_hub) == [None, "bytes=700000-"]
    assert sha256(path.read_bytes()) == sha256(data)


def test_drops_within_one_call_are_retried_from_where_they_stopped(fake_hub, recorder, dest):
    data = random_bytes(1_000_000)
    fake_hub.add_file(REPO, NAME, data)
    fake_hub.set_faults(REPO, NAME, drop_after_bytes=300_000, drop_times=2)

    path = make_downloader(fake_hub, recorder).download(SPEC, dest, progress=recorder.progress)

    assert content_ranges(fake_hub) == [None, "bytes=300000-", "bytes=600000-"]
    assert recorder.sleeps == [1.0, 1.0]  # progress was made each time: no growing backoff
    assert DownloadPhase.RETRYING in recorder.phases
    assert sha256(path.read_bytes()) == sha256(data)


def test_corrupted_bytes_are_detected_and_removed(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, NAME, random_bytes(100_000))
    fake_hub.set_faults(REPO, NAME, corrupt=True)

    with pytest.raises(ChecksumMismatch, match="sha256 does not match.*deleted"):
        make_downloader(fake_hub, recorder).download(SPEC, dest)
    assert list(dest.iterdir()) == []


def test_missing_file_is_not_found_without_retrying(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, "other.bin", b"x")

    with pytest.raises(HubNotFound, match="no model.bin in writer/test-models"):
        make_downloader(fake_hub, recorder).download(SPEC, dest)
    assert recorder.sleeps == [] and list(dest.iterdir()) == []


def test_two_server_errors_then_success_via_retries(fake_hub, recorder, dest):
    data = random_bytes(50_000)
    fake_hub.add_file(REPO, NAME, data)
    fake_hub.set_faults(REPO, NAME, status=500, status_times=2)

    path = make_downloader(fake_hub, recorder).download(SPEC, dest)

    assert recorder.sleeps == [1.0, 2.0]
    assert sha256(path.read_bytes()) == sha256(data)


def test_endless_server_errors_give_up_with_a_server_error(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, NAME, random_bytes(1000))
    fake_hub.set_faults(REPO, NAME, status=500)
    downloader = make_downloader(fake_hub, recorder, retry=RetryPolicy(retries=5, max_delay=10))

    with pytest.raises(HubServerError, match=r"server error \(HTTP 500\).*Try again later"):
        downloader.download(SPEC, dest)
    assert recorder.sleeps == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert len(fake_hub.content_gets()) == 6


def test_server_down_is_reported_as_offline(recorder, dest):
    settings = HubSettings(endpoint=f"http://127.0.0.1:{free_port()}", token=False)
    downloader = Downloader(HubClient(settings), validate=None, sleep=recorder.sleep)

    with pytest.raises(HubUnreachable, match="Could not connect.*internet connection"):
        downloader.download(SPEC, dest)
    assert len(recorder.sleeps) == 5 and list(dest.iterdir()) == []


def test_too_little_disk_space_is_refused_before_any_bytes_are_written(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, NAME, random_bytes(10_000))
    downloader = make_downloader(fake_hub, recorder, free_space=lambda path: 5_000_000)

    with pytest.raises(DiskFull, match=r"needs 10 kB more but only 5\.0 MB is free"):
        downloader.download(SPEC, dest)
    assert list(dest.iterdir()) == [] and fake_hub.content_gets() == []


def test_disk_full_while_writing_keeps_the_partial_for_later(fake_hub, recorder, dest, monkeypatch):
    data = random_bytes(400_000)
    fake_hub.add_file(REPO, NAME, data)
    real_write = downloader_module._PartialFile.write
    written: list[int] = []

    def write_until_full(self, chunk: bytes) -> None:
        if sum(written) >= 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(chunk))
        real_write(self, chunk)

    monkeypatch.setattr(downloader_module._PartialFile, "write", write_until_full)
    with pytest.raises(DiskFull, match="disk filled up.*resumes where it stopped"):
        make_downloader(fake_hub, recorder).download(SPEC, dest)
    assert partial_path(dest / NAME).stat().st_size == sum(written)

    monkeypatch.setattr(downloader_module._PartialFile, "write", real_write)
    path = make_downloader(fake_hub, recorder).download(SPEC, dest)
    assert content_ranges(fake_hub)[-1] == f"bytes={sum(written)}-"
    assert sha256(path.read_bytes()) == sha256(data)


def test_slow_download_cancelled_midway_then_resumed(fake_hub, recorder, dest):
    data = random_bytes(1_000_000)
    fake_hub.add_file(REPO, NAME, data)
    fake_hub.set_faults(REPO, NAME, bytes_per_second=2_000_000)
    cancel = CancelToken()

    def cancel_after_some_bytes(report: Progress) -> None:
        if report.bytes_done >= 200_000:
            cancel.cancel()

    downloader = make_downloader(fake_hub, recorder, progress_interval=0.0)
    with pytest.raises(DownloadCancelled, match="cancelled.*kept"):
        downloader.download(SPEC, dest, progress=cancel_after_some_bytes, cancel=cancel)
    kept = partial_path(dest / NAME).stat().st_size
    assert 200_000 <= kept < len(data)

    fake_hub.clear_faults(REPO, NAME)
    path = downloader.download(SPEC, dest, progress=recorder.progress)

    assert content_ranges(fake_hub) == [None, f"bytes={kept}-"]
    assert recorder.phases[:3] == [
        DownloadPhase.CONNECTING,
        DownloadPhase.RESUMING,
        DownloadPhase.DOWNLOADING,
    ]
    assert sha256(path.read_bytes()) == sha256(data)


def test_cancel_from_another_thread_stops_a_running_download(fake_hub, dest):
    fake_hub.add_file(REPO, NAME, random_bytes(2_000_000))
    fake_hub.set_faults(REPO, NAME, bytes_per_second=1_000_000)
    cancel, started = CancelToken(), threading.Event()
    outcome: list[BaseException] = []
    downloader = Downloader(
        HubClient(HubSettings(endpoint=fake_hub.endpoint, token=False)), validate=None
    )

    def run() -> None:
        try:
            downloader.download(
                SPEC, dest, cancel=cancel, progress=lambda p: p.bytes_done and started.set()
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(timeout=10)
    cancel.cancel()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert [type(e) for e in outcome] == [DownloadCancelled]
    assert 0 < partial_path(dest / NAME).stat().st_size < 2_000_000


def test_a_server_that_ignores_range_makes_the_resume_start_over_cleanly(fake_hub, recorder, dest):
    data = random_bytes(500_000)
    fake_hub.add_file(REPO, NAME, data)
    fake_hub.set_faults(REPO, NAME, drop_after_bytes=200_000)
    with pytest.raises(HubUnreachable):
        make_downloader(fake_hub, recorder, retry=RetryPolicy(retries=0)).download(SPEC, dest)

    fake_hub.set_faults(REPO, NAME, ignore_range=True)
    path = make_downloader(fake_hub, recorder).download(SPEC, dest)

    assert content_ranges(fake_hub) == [None, "bytes=200000-"]
    assert fake_hub.content_gets()[-1].status == 200
    assert sha256(path.read_bytes()) == sha256(data)


def test_a_file_that_changed_on_the_hub_is_downloaded_afresh(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, NAME, random_bytes(500_000, seed=1))
    fake_hub.set_faults(REPO, NAME, drop_after_bytes=200_000)
    with pytest.raises(HubUnreachable):
        make_downloader(fake_hub, recorder, retry=RetryPolicy(retries=0)).download(SPEC, dest)

    newer = random_bytes(400_000, seed=2)
    fake_hub.add_file(REPO, NAME, newer)  # a new commit with different bytes
    path = make_downloader(fake_hub, recorder).download(SPEC, dest)

    assert content_ranges(fake_hub) == [None, None]
    assert path.read_bytes() == newer


def test_an_installed_identical_file_is_not_downloaded_again(fake_hub, recorder, dest):
    data = random_bytes(10_000)
    fake_hub.add_file(REPO, NAME, data)
    downloader = make_downloader(fake_hub, recorder)
    downloader.download(SPEC, dest)

    downloader.download(SPEC, dest)

    assert len(fake_hub.content_gets()) == 1


def test_a_second_writer_of_the_same_file_is_refused(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, NAME, random_bytes(10_000))
    dest.mkdir()
    holder = downloader_module._PartialFile(partial_path(dest / NAME), NAME)
    try:
        with pytest.raises(DownloadInProgress, match="already being downloaded"):
            make_downloader(fake_hub, recorder).download(SPEC, dest)
    finally:
        holder.close()


def test_a_token_is_sent_and_a_wrong_one_is_not_retried(recorder, dest):
    data = random_bytes(10_000)
    with FakeHub(token="secret") as hub:
        hub.add_file(REPO, NAME, data)
        wrong = Downloader(
            HubClient(HubSettings(endpoint=hub.endpoint, token="nope")),
            validate=None,
            sleep=recorder.sleep,
        )
        with pytest.raises(HubUnauthorized):
            wrong.download(SPEC, dest)
        right = Downloader(
            HubClient(HubSettings(endpoint=hub.endpoint, token="secret")), validate=None
        )
        assert right.download(SPEC, dest).read_bytes() == data
    assert recorder.sleeps == []


def test_the_hubs_size_and_hash_are_cached_for_the_catalog(fake_hub, recorder, dest, tmp_path):
    data = random_bytes(20_000)
    fake_hub.add_file(REPO_ID, "gpt2-124M.q4_0.bin", data)
    catalog = Catalog(cache=HubMetadataCache(tmp_path / "cache.json"))
    entry = catalog.get("gpt2-q4_0")

    make_downloader(fake_hub, recorder, catalog=catalog).download(entry, dest)

    item = Catalog(cache=HubMetadataCache(tmp_path / "cache.json")).item(entry)
    assert (item.size_bytes, item.sha256, item.from_hub) == (20_000, sha256(data), True)


def test_download_model_installs_a_catalog_model_into_the_app_folder(fake_hub, app_home, tmp_path):
    model = tiny_gpt2_file(tmp_path / "gpt2.bin").read_bytes()
    fake_hub.add_file(REPO_ID, "gpt2-124M.q4_0.bin", model)

    path = download_model(
        app_home, "gpt2", settings=HubSettings(endpoint=fake_hub.endpoint, token=False)
    )

    assert path == app_home.models_dir / "gpt2-124M.q4_0.bin"
    assert [m.catalog_entry.id for m in list_installed(app_home)] == ["gpt2-q4_0"]


def test_progress_is_throttled_and_reports_speed_and_eta():
    reports: list[Progress] = []
    now = [0.0]
    reporter = downloader_module._ProgressReporter("f", reports.append, lambda: now[0], 0.1)
    for step in range(200):  # 2 s at 1 MB/s, reported every 10 ms
        now[0] = step * 0.01
        reporter.report(DownloadPhase.DOWNLOADING, step * 10_000, 4_000_000)
    reporter.report(DownloadPhase.VERIFYING, 4_000_000, 4_000_000)

    assert 19 <= len(reports) <= 22  # ~10 a second, plus the phase change
    last = reports[-2]
    assert last.speed_bytes_per_second == pytest.approx(1_000_000, rel=0.05)
    assert last.eta_seconds == pytest.approx((4_000_000 - last.bytes_done) / 1_000_000, rel=0.05)
    assert reports[-1].phase is DownloadPhase.VERIFYING


def test_retry_delays_grow_exponentially_up_to_a_cap():
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


CHILD = """
import sys
from pathlib import Path
from writer_app.models.downloader import Downloader, DownloadSpec
from writer_app.models.hub import HubClient, HubSettings

endpoint, dest = sys.argv[1], Path(sys.argv[2])
hub = HubClient(HubSettings(endpoint=endpoint, token=False))
downloader = Downloader(hub, validate=None, progress_interval=0.0)
downloader.download(
    DownloadSpec("writer/test-models", "model.bin"),
    dest,
    progress=lambda p: print(p.bytes_done, flush=True),
)
"""


def test_a_killed_download_resumes_from_its_partial_file(fake_hub, recorder, dest):
    data = random_bytes(3_000_000)
    fake_hub.add_file(REPO, NAME, data)
    fake_hub.set_faults(REPO, NAME, bytes_per_second=1_000_000)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, fake_hub.endpoint, str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        for line in child.stdout:  # the child reports bytes as they land on disk
            if int(line) >= 400_000:
                break
        else:
            pytest.fail(f"the child ended early: {child.stderr.read()}")
        child.kill()  # SIGKILL: no cleanup code runs
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()

    kept = partial_path(dest / NAME).stat().st_size
    assert 400_000 <= kept < len(data) and state_path(dest / NAME).exists()

    fake_hub.clear_faults(REPO, NAME)
    path = make_downloader(fake_hub, recorder).download(SPEC, dest)

    assert content_ranges(fake_hub)[-1] == f"bytes={kept}-"
    assert sha256(path.read_bytes()) == sha256(data)


def test_files_without_a_published_sha256_are_refused(fake_hub, recorder, dest):
    fake_hub.add_file(REPO, NAME, b"small text file", lfs=False)

    with pytest.raises(HubError, match="publishes no sha256 for model.bin"):
        make_downloader(fake_hub, recorder).download(SPEC, dest)
    assert list(dest.iterdir()) == []


def test_cancel_interrupts_the_wait_between_retries(dest):
    settings = HubSettings(endpoint=f"http://127.0.0.1:{free_port()}", token=False)
    downloader = Downloader(
        HubClient(settings), validate=None, retry=RetryPolicy(retries=3, base_delay=20.0)
    )
    cancel, waiting = CancelToken(), threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        def watch(report: Progress) -> None:
            if report.phase is DownloadPhase.RETRYING:
                assert report.retry_in_seconds == 20.0
                waiting.set()

        try:
            downloader.download(SPEC, dest, progress=watch, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert waiting.wait(timeout=10)
    cancel.cancel()
    worker.join(timeout=10)  # far shorter than the 20 s backoff

    assert not worker.is_alive()
    assert [type(e) for e in outcome] == [DownloadCancelled]


def test_a_new_commit_that_left_the_file_alone_keeps_the_partial(fake_hub, recorder, dest):
    data = random_bytes(500_000)
    fake_hub.add_file(REPO, NAME, data)
    fake_hub.set_faults(REPO, NAME, drop_after_bytes=200_000)
    with pytest.raises(HubUnreachable):
        make_downloader(fake_hub, recorder, retry=RetryPolicy(retries=0)).download(SPEC, dest)

    fake_hub.clear_faults(REPO, NAME)
    fake_hub.add_file(REPO, "README.md", b"new readme", lfs=False)  # moves the commit on
    path = make_downloader(fake_hub, recorder).download(SPEC, dest)

    assert content_ranges(fake_hub) == [None, "bytes=200000-"]
    assert path.read_bytes() == data
