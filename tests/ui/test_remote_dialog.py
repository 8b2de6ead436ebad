"""The Remote Server dialog and Model ▸ Engine, against llama.cpp's real server."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLineEdit, QMenu, QWidget

from tests.support import remote_fixtures
from tests.support.dummy_suggestion_source import DummySuggestionSource
from writer_app.engine.remote import Capabilities
from writer_app.engine.remote_config import RemoteConfig
from writer_app.engine.sampling import SamplingSettings
from writer_app.services.qt_asyncio import pending_tasks, qt_event_loop, release_running_loop
from writer_app.services.remote_settings import RemoteSettingsStore
from writer_app.services.remote_source import RemoteSource
from writer_app.services.suggestion_controller import SuggestionController, SuggestionPreferences
from writer_app.ui.remote_dialog import RemoteServerDialog
from writer_app.ui.remote_engine import install_remote_engine, show_capabilities
from writer_app.ui.sampling_panel import CONTROLS, NumberControl

cat_gguf = remote_fixtures.cat_gguf
cat_server = remote_fixtures.cat_server
keyed_server = remote_fixtures.keyed_server
API_KEY = remote_fixtures.API_KEY

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def qt_loop(qapp, qtbot):
    loop = qt_event_loop()
    yield loop
    for task in pending_tasks():
        task.cancel()
    qtbot.waitUntil(lambda: not pending_tasks(), timeout=10_000)
    release_running_loop()  # one loop for the session; asyncio.run() works between tests


def test_test_connection_offers_the_servers_models(qtbot, qt_loop, cat_server):
    dialog = RemoteServerDialog()
    qtbot.addWidget(dialog)
    dialog.url_edit.setText(f"127.0.0.1:{cat_server.port}")
    with qtbot.waitSignal(dialog.tested, timeout=20_000) as result:
        dialog.test_button.click()
    assert result.args == [True, f"Connected to llama.cpp at 127.0.0.1:{cat_server.port}: model "
                                 "test-gpt2, 256-token context; prompts go as token ids."]
    assert [dialog.model_combo.itemText(i) for i in range(dialog.model_combo.count())] == ["test-gpt2"]
    assert dialog.config().base_url == cat_server.base_url


def test_a_missing_key_is_one_sentence_and_a_stored_key_is_never_shown(qtbot, qt_loop, keyed_server):
    dialog = RemoteServerDialog(RemoteConfig.create(keyed_server.base_url))
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.tested, timeout=20_000) as result:
        dialog.test_button.click()
    assert result.args == [False, f"The server at 127.0.0.1:{keyed_server.port} needs an API key (401)."]

    stored = RemoteServerDialog(RemoteConfig.create(keyed_server.base_url, API_KEY))
    qtbot.addWidget(stored)
    assert stored.key_edit.text() == "" and stored.key_edit.echoMode() == QLineEdit.EchoMode.Password
    assert stored.key_edit.placeholderText() == f"stored: …{API_KEY[-4:]} (type to replace)"
    assert all(API_KEY not in label.text() for label in stored.findChildren(type(stored.result_label)))
    with qtbot.waitSignal(stored.tested, timeout=20_000) as result:
        stored.test_button.click()  # the stored key is used though not shown
    assert result.args[0] is True


def test_plain_http_to_another_machine_is_warned_about_in_the_dialog(qtbot):
    dialog = RemoteServerDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.url_edit.setText("http://gpu-box.lan:8000/v1")
    assert dialog.warning_label.isVisible()
    dialog.url_edit.setText("https://gpu-box.lan/v1")
    assert not dialog.warning_label.isVisible()
    dialog.url_edit.setText("http://localhost:8080/v1")
    assert not dialog.warning_label.isVisible()


def test_model_engine_switches_the_controller_to_the_server_and_back(qtbot, qt_loop, cat_server, app_home):
    parent = QWidget()
    qtbot.addWidget(parent)
    local = DummySuggestionSource(default=[" locally"])
    controller = SuggestionController(local, SamplingSettings(temperature=0), SuggestionPreferences(debounce_ms=20))
    menu = QMenu(parent)
    controls = {spec.name: NumberControl(spec, parent) for spec in CONTROLS}
    ui = install_remote_engine(menu, controller, local, app_home, parent, sampling_controls=controls)
    assert [a.text() for a in menu.actions()] == ["&Local model", "&Remote server…"]
    statuses: list[str] = []
    ui.statusChanged.connect(statuses.append)

    dialog = ui.open_dialog()
    qtbot.addWidget(dialog)
    dialog.url_edit.setText(cat_server.base_url)
    dialog.accept()
    assert isinstance(controller.source, RemoteSource) and ui.remote_action.isChecked()
    assert statuses == [f"Remote: 127.0.0.1:{cat_server.port}"]
    assert RemoteSettingsStore(app_home).load().base_url == cat_server.base_url

    controller.update_context("The cat sat", "", 11, 1)
    qtbot.waitUntil(lambda: controller.suggestion is not None and controller.suggestion.text == " on the mat.",
                    timeout=20_000)
    assert all(c.slider.isEnabled() for c in controls.values())  # llama.cpp takes them all

    ui.local_action.trigger()
    assert controller.source is local and statuses[-1] == ""
    controller.update_context("The cat sat here", "", 16, 2)
    qtbot.waitUntil(lambda: controller.suggestion is not None and controller.suggestion.text == " locally",
                    timeout=5_000)


def test_controls_a_server_ignores_are_disabled_with_the_reason(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    controls = {spec.name: NumberControl(spec, parent) for spec in CONTROLS}
    show_capabilities(controls, Capabilities("OpenAI-compatible", False, False, False, False))
    for name in ("top_k", "repetition_penalty", "repetition_window"):
        assert not controls[name].slider.isEnabled() and not controls[name].spin.isEnabled()
        assert "only the standard OpenAI settings" in controls[name].slider.toolTip()
    assert controls["temperature"].slider.isEnabled()
    show_capabilities(controls, None)  # back to the local engine
    assert all(c.slider.isEnabled() and c.slider.toolTip() == c.spec.tooltip for c in controls.values())
