"""The huggingface_hub layer, with the real client talking to the fake hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from huggingface_hub import constants

from tests.support.fake_hub import FakeHub, fake_hub, free_port, localhost_only, random_bytes
from writer_app.models.errors import (
    HubNotFound,
    HubServerError,
    HubUnauthorized,
    HubUnreachable,
)
from writer_app.models.hub import DEFAULT_ENDPOINT, HubClient, HubSettings

__all__ = ["fake_hub", "localhost_only"]  # fixtures used by name below
pytestmark = pytest.mark.usefixtures("localhost_only")

REPO = "writer/test-models"


@pytest.fixture
def client(fake_hub: FakeHub) -> HubClient:
    return HubClient(HubSettings(endpoint=fake_hub.endpoint, token=False))


def test_file_info_gives_size_sha256_and_pins_the_commit(fake_hub, client):
    data = random_bytes(5000)
    fake_hub.add_file(REPO, "model.bin", data)

    info = client.file_info(REPO, "model.bin")

    assert info.size == 5000
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.revision == fake_hub.commit(REPO)
    assert info.url == f"{fake_hub.endpoint}/{REPO}/resolve/{fake_hub.commit(REPO)}/model.bin"


def test_files_info_asks_once_for_many_files_and_leaves_out_missing_ones(fake_hub, client):
    fake_hub.add_file(REPO, "a.bin", b"a" * 10)
    fake_hub.add_file(REPO, "b.bin", b"b" * 20)

    found = client.files_info(REPO, ["a.bin", "b.bin", "missing.bin"])

    assert {name: info.size for name, info in found.items()} == {"a.bin": 10, "b.bin": 20}
    assert [r.method for r in fake_hub.requests] == ["POST"]


def test_only_the_hub_endpoints_are_called_no_telemetry(fake_hub, client):
    fake_hub.add_file(REPO, "model.bin", b"x" * 100)

    info = client.file_info(REPO, "model.bin")
    with client.open_download(info.url) as response:
        response.read()

    commit = fake_hub.commit(REPO)
    assert [(r.method, r.path) for r in fake_hub.requests] == [
        ("HEAD", f"/{REPO}/resolve/main/model.bin"),
        ("POST", f"/api/models/{REPO}/paths-info/{commit}"),
        ("GET", f"/{REPO}/resolve/{commit}/model.bin"),
    ]
    assert constants.HF_HUB_DISABLE_TELEMETRY and constants.HF_HUB_DISABLE_XET


@pytest.mark.parametrize("hub_first", [False, True], ids=["app-first", "hub-imported-first"])
def test_the_app_turns_telemetry_and_xet_off_by_itself(hub_first):
    # In a fresh interpreter without the variables conftest.py sets for the tests: the
    # app's own module must switch both off, also when huggingface_hub came first.
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_XET")}
    code = (("import huggingface_hub.constants\n" if hub_first else "")
            + "import writer_app.models.hub\n"
            "from huggingface_hub import constants\n"
            "print(constants.HF_HUB_DISABLE_TELEMETRY, constants.HF_HUB_DISABLE_XET)")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_missing_file_is_not_found_with_a_readable_message(fake_hub, client):
    fake_hub.add_file(REPO, "model.bin", b"x")

    with pytest.raises(HubNotFound, match=r"no model-xl\.bin in writer/test-models"):
        client.file_info(REPO, "model-xl.bin")


def test_missing_repository_is_not_found(client):
    with pytest.raises(HubNotFound, match="repository .* does not exist"):
        client.file_info("nobody/nothing", "model.bin")


def test_wrong_token_is_unauthorized_and_not_worth_retrying():
    with FakeHub(token="right") as hub:
        hub.add_file(REPO, "model.bin", b"x")
        client = HubClient(HubSettings(endpoint=hub.endpoint, token="wrong"))
        with pytest.raises(HubUnauthorized, match="refused access") as caught:
            client.file_info(REPO, "model.bin")
    assert not caught.value.transient


def test_the_token_is_sent_to_the_hub_and_download():
    with FakeHub(token="secret") as hub:
        hub.add_file(REPO, "model.bin", b"x" * 10)
        client = HubClient(HubSettings(endpoint=hub.endpoint, token="secret"))
        info = client.file_info(REPO, "model.bin")
        with client.open_download(info.url) as response:
            assert response.read() == b"x" * 10
        assert {r.headers.get("authorization") for r in hub.requests} == {"Bearer secret"}


def test_server_down_is_unreachable_and_transient():
    client = HubClient(HubSettings(endpoint=f"http://127.0.0.1:{free_port()}", token=False))

    with pytest.raises(HubUnreachable, match="Could not connect to 127.0.0.1") as caught:
        client.file_info(REPO, "model.bin")
    assert caught.value.transient


def test_server_errors_map_to_server_error(fake_hub, client):
    fake_hub.add_file(REPO, "model.bin", b"x" * 10)
    fake_hub.set_faults(REPO, "model.bin", status=503)
    info = client.file_info(REPO, "model.bin")

    with (
        pytest.raises(HubServerError, match=r"server error \(HTTP 503\)") as caught,
        client.open_download(info.url, what="model.bin"),
    ):
        pass
    assert caught.value.transient and caught.value.status == 503


def test_offline_mode_is_reported_and_not_retried(fake_hub, client, monkeypatch):
    fake_hub.add_file(REPO, "model.bin", b"x")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE") as caught:
        client.file_info(REPO, "model.bin")
    assert not caught.value.transient
    assert fake_hub.requests == []


def test_range_requests_survive_the_redirect_to_the_file_host():
    data = random_bytes(1000)
    with FakeHub(redirect_downloads=True) as hub:
        hub.add_file(REPO, "model.bin", data)
        client = HubClient(HubSettings(endpoint=hub.endpoint, token=False))
        info = client.file_info(REPO, "model.bin")
        with client.open_download(info.url, start=600) as response:
            body = response.read()
            assert response.status_code == 206
        cdn_get = hub.requests[-1]
    assert body == data[600:]
    assert cdn_get.path.startswith("/_lfs/") and cdn_get.headers["range"] == "bytes=600-"


def test_endpoint_setting_wins_over_hf_endpoint_which_wins_over_the_default(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert HubSettings.from_environment().endpoint == DEFAULT_ENDPOINT
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    assert HubSettings.from_environment().endpoint == "http://127.0.0.1:9"
    assert HubSettings.from_environment("http://127.0.0.1:8").endpoint == "http://127.0.0.1:8"
