"""Settings: one typed object, defaults in one place, loads that never fail, atomic saves."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace

import pytest

from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.settings import (
    MAX_RECENT_FILES,
    SCHEMA_VERSION,
    EditorSettings,
    ModelSettings,
    Settings,
    SettingsSaveError,
    SettingsStore,
    Theme,
)


@pytest.fixture
def store(app_home) -> SettingsStore:
    return SettingsStore.for_paths(app_home)


def _customised() -> Settings:
    fast = SamplingSettings(temperature=0.3, top_k=10, stop_at=StopAt.PARAGRAPH)
    settings = Settings(
        editor=EditorSettings(font_family="Georgia", font_size=15, theme=Theme.DARK, zoom=120),
        sampling=SamplingSettings(max_tokens=40),
        models=ModelSettings(active_model="gpt2-small", hub_endpoint="http://127.0.0.1:9"),
    )
    settings = settings.with_preset("Fast", fast).with_model_preset("gpt2-small", "Fast")
    return settings.with_recent_file("/docs/a.txt").with_recent_file("/docs/b.txt")


def test_missing_file_gives_defaults_silently(store):
    result = store.load()
    assert result.notice is None
    assert result.settings == Settings()
    editor = result.settings.editor
    assert (editor.debounce_ms, editor.suggest_mid_word, editor.theme) == (300, False, Theme.SYSTEM)
    models = result.settings.models
    assert (models.threads, models.engine, models.active_model) == ("auto", "ctransformers", None)


def test_round_trip_keeps_every_value(store, app_home):
    settings = _customised()
    store.save(settings)
    stored = json.loads(app_home.settings_file.read_text("utf-8"))
    assert stored["schema_version"] == SCHEMA_VERSION
    assert stored["editor"]["theme"] == "dark"
    loaded = store.load()
    assert loaded.notice is None
    assert loaded.settings == settings
    assert loaded.settings.window.recent_files == ("/docs/b.txt", "/docs/a.txt")
    assert loaded.settings.sampling_for_model("gpt2-small").top_k == 10
    assert loaded.settings.sampling_for_model("other").max_tokens == 40


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"editor": {"font_size": 14', "was damaged"),
        (b"\xff\xfe not even utf-8", "was damaged"),
        (b"[1, 2, 3]", "did not contain settings"),
    ],
)
def test_damaged_file_gives_defaults_a_notice_and_is_kept_aside(store, app_home, content, problem):
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_bytes(content)
    result = store.load()
    assert result.settings == Settings()
    assert problem in result.notice and "default settings" in result.notice
    kept = [p for p in app_home.config_dir.iterdir() if p.name.startswith("settings.json.corrupt-")]
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert kept[0].name in result.notice
    assert not app_home.settings_file.exists()
    store.save(result.settings)  # and life goes on
    assert store.load().notice is None


def test_single_bad_values_fall_back_alone(store, app_home):
    data: dict = {"schema_version": 1}
    data["editor"] = {"font_family": "Georgia", "font_size": "huge", "theme": "purple", "zoom": 150}
    data["window"] = {"recent_files": ["/a.txt", 7], "show_probability_panel": True}
    data["sampling"] = {"temperature": 9.0, "top_k": 12}
    data["models"] = {"threads": True, "active_model": "gpt2-medium"}
    data["privacy"] = "nonsense"
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_text(json.dumps(data), "utf-8")

    result = store.load()
    settings = result.settings
    assert (settings.editor.font_family, settings.editor.zoom) == ("Georgia", 150)
    assert (settings.editor.font_size, settings.editor.theme) == (13, Theme.SYSTEM)
    assert settings.window.recent_files == () and settings.window.show_probability_panel
    assert (settings.sampling.temperature, settings.sampling.top_k) == (0.8, 12)
    assert (settings.models.threads, settings.models.active_model) == ("auto", "gpt2-medium")
    for name in ("editor.font_size", "editor.theme", "window.recent_files"):
        assert name in result.notice
    for name in ("sampling.temperature", "models.threads", "privacy"):
        assert name in result.notice
    assert "editor.zoom" not in result.notice
    assert app_home.settings_file.exists()  # a few bad values are no reason to set it aside


def test_unknown_keys_are_ignored(store, app_home):
    data = {
        "schema_version": 1,
        "spaceship": {"warp": 9},
        "editor": {"font_size": 20, "blink_rate": 3},
        "sampling": {"top_k": 5, "mirostat": 2},
    }
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_text(json.dumps(data), "utf-8")
    result = store.load()
    assert result.notice is None
    assert (result.settings.editor.font_size, result.settings.sampling.top_k) == (20, 5)


def test_newer_schema_loads_what_it_can_and_says_so(store, app_home):
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_text('{"schema_version": 99, "editor": {"font_size": 18}}')
    result = store.load()
    assert result.settings.editor.font_size == 18
    assert "newer version" in result.notice


def test_infinite_number_in_sampling_falls_back(store, app_home):
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_text('{"sampling": {"top_k": 1e999}, "editor": {"zoom": 90}}')
    result = store.load()
    assert result.settings.sampling == SamplingSettings()
    assert result.settings.editor.zoom == 90
    assert "sampling" in result.notice


def test_failed_save_leaves_old_settings_intact(store, app_home):
    store.save(_customised())
    before = app_home.settings_file.read_bytes()

    def disk_full(fd: int, data) -> int:
        os.write(fd, data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    failing = SettingsStore(app_home.settings_file, write_chunk=disk_full)
    with pytest.raises(SettingsSaveError, match="The disk is full; the settings file was NOT"):
        failing.save(Settings())
    assert app_home.settings_file.read_bytes() == before
    assert sorted(p.name for p in app_home.config_dir.iterdir()) == ["settings.json"]


def test_failed_rename_leaves_old_settings_intact(store, app_home, monkeypatch):
    store.save(_customised())
    before = app_home.settings_file.read_bytes()

    def refuse(src, dst) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(SettingsSaveError, match="permission"):
        store.save(Settings())
    monkeypatch.undo()
    assert app_home.settings_file.read_bytes() == before
    assert store.load().settings == _customised()
    assert sorted(p.name for p in app_home.config_dir.iterdir()) == ["settings.json"]


def test_sections_refuse_wrong_types_and_ranges():
    with pytest.raises(TypeError):
        EditorSettings(font_size=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="font_size"):
        EditorSettings(font_size=500)
    with pytest.raises(ValueError):
        EditorSettings(theme="sepia")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hub_endpoint"):
        ModelSettings(hub_endpoint="ftp://example")
    assert EditorSettings(theme="dark").theme is Theme.DARK  # type: ignore[arg-type]


def test_recent_files_move_to_front_are_capped_and_respect_privacy():
    settings = Settings()
    for n in range(MAX_RECENT_FILES + 3):
        settings = settings.with_recent_file(f"/docs/{n}.txt")
    settings = settings.with_recent_file("/docs/5.txt")
    recent = settings.window.recent_files
    assert recent[0] == "/docs/5.txt" and recent.count("/docs/5.txt") == 1
    assert len(recent) == MAX_RECENT_FILES
    assert settings.window.last_document == "/docs/5.txt"

    private = replace(settings, privacy=replace(settings.privacy, remember_recent_files=False))
    assert private.with_recent_file("/docs/new.txt").window.recent_files == recent


def test_removing_a_preset_forgets_models_that_used_it():
    settings = _customised()
    assert settings.sampling_for_model("gpt2-small").top_k == 10
    with pytest.raises(ValueError, match="no preset"):
        settings.with_model_preset("gpt2-small", "Missing")
    trimmed = settings.without_preset("Fast")
    assert trimmed.presets == {} and trimmed.per_model_preset == {}
    assert trimmed.sampling_for_model("gpt2-small") == settings.sampling


def test_saving_keeps_the_settings_files_permissions(store, app_home):
    store.save(Settings())
    app_home.settings_file.chmod(0o600)  # the writer made it private
    store.save(_customised())
    assert app_home.settings_file.stat().st_mode & 0o777 == 0o600
    assert store.load().settings == _customised()


@pytest.mark.parametrize(
    ("stored", "threads", "engine", "reset"),
    [
        ({"threads": 3}, 3, "ctransformers", []),  # a file from before "auto": kept
        ({"threads": "auto", "engine": "llama.cpp"}, "auto", "llama.cpp", []),
        ({"threads": "fast"}, "auto", "ctransformers", ["models.threads"]),
        ({"threads": 0}, "auto", "ctransformers", ["models.threads"]),
        ({"threads": 65}, "auto", "ctransformers", ["models.threads"]),
        ({"threads": 2.5}, "auto", "ctransformers", ["models.threads"]),
        ({"engine": "vllm"}, "auto", "ctransformers", ["models.engine"]),
        ({"engine": None}, "auto", "ctransformers", ["models.engine"]),
    ],
)
def test_threads_are_auto_or_a_number_and_the_engine_a_known_one(
    store, app_home, stored, threads, engine, reset
):
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_text(json.dumps({"models": stored}), "utf-8")
    result = store.load()
    assert (result.settings.models.threads, result.settings.models.engine) == (threads, engine)
    for name in reset:
        assert name in result.notice
    if not reset:
        assert result.notice is None
        store.save(result.settings)
        assert store.load().settings == result.settings


@pytest.mark.parametrize(
    ("stored", "gpu_layers", "reset"),
    [
        ({}, 0, False),  # the default: everything in RAM, as the memory budget counts it
        ({"gpu_layers": 999}, 999, False),
        ({"gpu_layers": 20}, 20, False),
        ({"gpu_layers": -1}, 0, True),
        ({"gpu_layers": 1000}, 0, True),
        ({"gpu_layers": "all"}, 0, True),
    ],
)
def test_gpu_layers_are_a_number_of_layers_and_persist(store, app_home, stored, gpu_layers, reset):
    app_home.config_dir.mkdir(parents=True)
    app_home.settings_file.write_text(json.dumps({"models": stored}), "utf-8")
    result = store.load()
    assert result.settings.models.gpu_layers == gpu_layers
    assert ("models.gpu_layers" in (result.notice or "")) == reset
    store.save(result.settings.with_models(gpu_layers=gpu_layers))
    assert json.loads(app_home.settings_file.read_text("utf-8"))["models"]["gpu_layers"] == gpu_layers
