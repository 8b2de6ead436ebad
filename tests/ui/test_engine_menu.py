"""Model ▸ Engine in the whole app (real engines, real settings file): choosing llama.cpp
reloads the model with it and is remembered, Threads shows "auto" and reloads with a
number, a model llama.cpp can't take says so in the notice bar, and the remote server's
item sits in the same menu and names the server in the status bar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.ui.test_writer_app import build_app, type_text, wait_for_ghost
from writer_app.engine.backends import GPU_ALL_LAYERS
from writer_app.engine.gguf_convert import converted_path
from writer_app.engine.remote_config import RemoteConfig
from writer_app.services.inference import EngineState


def close(writer) -> None:
    writer.editor.document().setModified(False)
    writer.window.close()
    writer.shutdown()


def labels(menu) -> list[str]:
    return [a.text().replace("&", "") if not a.isSeparator() else "---"
            for a in menu.actions() if a.isVisible()]


@pytest.fixture
def cat_copy(cat_model, tmp_path):
    return shutil.copy(cat_model, tmp_path / cat_model.name)  # never converted yet


def test_choosing_llama_cpp_reloads_the_model_with_it_and_is_remembered(
    qtbot, app_home, cat_copy
):
    writer = build_app(qtbot, app_home, cat_copy, cores=4)
    try:
        menu, service = writer.engine_menu, writer.service
        writer.models_ui.refresh_menu()
        assert menu.menu.menuAction() in writer.window.model_menu.actions()
        assert labels(menu.menu) == ["ctransformers", "llama.cpp", "---", "Remote server…",
                                     "---", "Threads", "Use the GPU"]
        assert not menu.gpu_action.isEnabled()  # llama.cpp's
        assert menu.engine_actions["ctransformers"].isChecked()
        shown: list[str] = []
        service.stateChanged.connect(
            lambda *_: shown.append(writer.window.status.engine_label.text()))
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            menu.engine_actions["llama.cpp"].trigger()
        assert service.loaded_engine == "llama.cpp" and service.engine == "llama.cpp"
        assert "· preparing the model for llama.cpp… · cat-q8_0.bin" in shown
        assert writer.window.status.model_label.text().endswith("· llama.cpp")
        assert menu.engine_actions["llama.cpp"].isChecked()
        stored = json.loads(app_home.settings_file.read_text("utf-8"))
        assert stored["models"]["engine"] == "llama.cpp"
        type_text(qtbot, writer, "The cat sat")
        assert wait_for_ghost(qtbot, writer) == " on the mat."
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            menu.engine_actions["ctransformers"].trigger()
        assert service.loaded_engine == "ctransformers"
        assert "llama.cpp" not in writer.window.status.model_label.text()
    finally:
        close(writer)
    # The next start loads with the engine chosen last time.
    writer = build_app(qtbot, app_home, cat_copy)
    try:
        assert writer.service.loaded_engine == "ctransformers"
    finally:
        close(writer)


def test_the_app_starts_with_the_engine_the_settings_name(qtbot, app_home, cat_copy):
    app_home.config_dir.mkdir(parents=True, exist_ok=True)
    app_home.settings_file.write_text(json.dumps({"models": {"engine": "llama.cpp"}}))
    writer = build_app(qtbot, app_home, cat_copy)
    try:
        assert writer.service.loaded_engine == "llama.cpp"
        assert writer.engine_menu.engine_actions["llama.cpp"].isChecked()
    finally:
        close(writer)


def test_threads_shows_auto_and_a_number_reloads_the_engine_with_it(qtbot, app_home, cat_model):
    writer = build_app(qtbot, app_home, cat_model, cores=4)
    try:
        threads_menu, service = writer.engine_menu.threads_menu, writer.service
        assert labels(threads_menu) == ["Auto (3)", "1", "2", "3"]
        assert writer.engine_menu.thread_actions["auto"].isChecked() and service.threads == 3
        loads = []
        service._load.connect(loads.append)  # LoadOrder
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            writer.engine_menu.thread_actions[2].trigger()
        assert loads[-1].threads == 2 and service.threads == 2
        assert writer.settings.models.threads == 2
        assert json.loads(app_home.settings_file.read_text())["models"]["threads"] == 2
        assert writer.engine_menu.thread_actions[2].isChecked()
    finally:
        close(writer)


def test_a_model_llama_cpp_cannot_take_runs_on_ctransformers_with_a_notice(
    qtbot, app_home, cat_model, tmp_path
):
    model = shutil.copy(cat_model, tmp_path / "cat.bin")
    converted_path(model).mkdir()  # where the converted copy must go is taken
    app_home.config_dir.mkdir(parents=True, exist_ok=True)
    app_home.settings_file.write_text(json.dumps({"models": {"engine": "llama.cpp"}}))
    writer = build_app(qtbot, app_home, model)
    try:
        notice = writer.window.notice_bar.label.text()
        assert notice == (f"llama.cpp could not load cat.bin (Is a directory: "
                          f"{converted_path(model).name}); using ctransformers")
        assert writer.service.loaded_engine == "ctransformers"
        assert writer.settings.models.engine == "llama.cpp"  # the choice is kept
        type_text(qtbot, writer, "The cat sat")
        assert wait_for_ghost(qtbot, writer) == " on the mat."
    finally:
        close(writer)


def test_the_remote_server_is_in_the_engine_menu_and_named_in_the_status_bar(
    qtbot, app_home, cat_model
):
    writer = build_app(qtbot, app_home, cat_model)
    try:
        menu, remote = writer.engine_menu, writer.remote_ui
        label = writer.window.status.model_label
        local_text = label.text()
        remote.use_remote(RemoteConfig.create("http://127.0.0.1:9/v1"))
        assert label.text().startswith("Remote: 127.0.0.1:9")
        assert remote.remote_action.isChecked()
        assert not any(a.isChecked() for a in menu.engine_actions.values())
        menu.engine_actions["ctransformers"].trigger()  # back to the local model
        assert remote.remote is None and writer.controller._source is writer.service
        assert label.text() == local_text and menu.engine_actions["ctransformers"].isChecked()
        assert writer.service.engine_state != EngineState.LOADING.value  # nothing reloaded
    finally:
        close(writer)


def test_use_the_gpu_reloads_llama_cpp_with_every_layer_and_without_a_gpu_says_so(
    qtbot, app_home, cat_copy
):
    app_home.config_dir.mkdir(parents=True, exist_ok=True)
    app_home.settings_file.write_text(json.dumps({"models": {"engine": "llama.cpp"}}))
    writer = build_app(qtbot, app_home, cat_copy)
    try:
        menu, service = writer.engine_menu, writer.service
        gpu = menu.gpu_action
        assert gpu.isEnabled() and not gpu.isChecked() and service.gpu_layers == 0
        loads = []
        service._load.connect(loads.append)  # LoadOrder
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            gpu.trigger()
        assert loads[-1].gpu_layers == GPU_ALL_LAYERS and service.gpu_layers == GPU_ALL_LAYERS
        assert json.loads(app_home.settings_file.read_text())["models"]["gpu_layers"] == 999
        assert gpu.isChecked()
        # This machine has no GPU: one line says where the model runs, and it still runs.
        assert writer.window.notice_bar.label.text() == (
            f"llama.cpp found no GPU; {Path(cat_copy).name} runs on the CPU")
        assert service.loaded_engine == "llama.cpp"
        type_text(qtbot, writer, "The cat sat")
        assert wait_for_ghost(qtbot, writer) == " on the mat."
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            menu.engine_actions["ctransformers"].trigger()
        assert not gpu.isEnabled() and gpu.isChecked()  # kept for llama.cpp, not offered
        with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
            menu.engine_actions["llama.cpp"].trigger()
        assert gpu.isEnabled() and gpu.isChecked()
        gpu.trigger()  # off again
        assert writer.settings.models.gpu_layers == 0 and service.gpu_layers == 0
    finally:
        close(writer)
