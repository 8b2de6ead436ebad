"""Where the remote server's settings and API key are kept."""

from __future__ import annotations

import logging
import stat

import keyring
import pytest
from keyring.backend import KeyringBackend

from writer_app.engine.remote_config import RemoteConfig
from writer_app.services.remote_settings import KEYRING_SERVICE, RemoteSettingsStore

KEY = "sk-live-0123456789abcdefXYZ"


class MemoryKeyring(KeyringBackend):
    """An OS keyring stand-in with keyring's own backend interface."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


@pytest.fixture
def os_keyring():
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring():
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_the_key_goes_to_the_os_keyring_and_never_to_the_file(app_home, os_keyring, caplog):
    store = RemoteSettingsStore(app_home)
    config = RemoteConfig.create("gpu-box:8080", KEY, "gpt2-large")
    with caplog.at_level(logging.DEBUG):
        assert store.save(config) == "keyring"
    assert os_keyring.secrets == {(KEYRING_SERVICE, "http://gpu-box:8080/v1"): KEY}
    assert KEY not in store.path.read_text(encoding="utf-8")
    loaded = store.load()
    assert (loaded.base_url, loaded.api_key, loaded.model) == ("http://gpu-box:8080/v1", KEY, "gpt2-large")
    assert KEY not in caplog.text


def test_without_a_keyring_the_key_goes_in_a_file_only_the_user_can_read(app_home, no_keyring):
    store = RemoteSettingsStore(app_home)
    assert store.save(RemoteConfig.create("http://localhost:8080/v1", KEY)) == "file"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load().api_key == KEY


def test_saving_without_a_key_forgets_the_stored_one(app_home, os_keyring):
    store = RemoteSettingsStore(app_home)
    store.save(RemoteConfig.create("http://localhost:8080/v1", KEY))
    store.save(RemoteConfig.create("http://localhost:8080/v1", ""))
    assert os_keyring.secrets == {} and store.load().api_key == ""


def test_nothing_saved_or_a_broken_file_loads_as_nothing(app_home):
    store = RemoteSettingsStore(app_home)
    assert store.load() is None
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("{not json", encoding="utf-8")
    assert store.load() is None
