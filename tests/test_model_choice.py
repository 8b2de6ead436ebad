"""The rules for which model, models folder and memory budget the settings choose."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from writer_app.assets import demo_model_path
from writer_app.model_choice import chosen_model, memory_budget_bytes, models_folder
from writer_app.paths import AppPaths
from writer_app.settings import Settings


def with_models(**changes) -> Settings:
    settings = Settings()
    return replace(settings, models=replace(settings.models, **changes))


def test_the_chosen_model_while_it_is_there_else_the_demo(tmp_path):
    model = tmp_path / "mine.bin"
    model.write_bytes(b"ggml")
    assert chosen_model(with_models(active_model=str(model))) == model
    assert chosen_model(Settings()) == demo_model_path()
    model.unlink()
    assert chosen_model(with_models(active_model=str(model))) == demo_model_path()
    other_demo = tmp_path / "demo.bin"
    assert chosen_model(Settings(), other_demo) == other_demo


def test_a_chosen_model_that_cannot_be_checked_falls_back_to_the_demo(tmp_path):
    too_long = str(tmp_path / ("x" * 300 + ".bin"))  # is_file() raises: name too long
    with pytest.raises(OSError):
        Path(too_long).is_file()
    assert chosen_model(with_models(active_model=too_long)) == demo_model_path()


def test_the_models_folder_chosen_else_the_apps_own(tmp_path):
    paths = AppPaths(tmp_path / "c", tmp_path / "d", tmp_path / "k", tmp_path / "s")
    assert models_folder(Settings(), paths) == paths.models_dir
    assert models_folder(with_models(models_dir="~/novels/models"), paths) == \
        Path.home() / "novels" / "models"


def test_the_memory_budget_in_bytes_and_zero_for_none():
    assert memory_budget_bytes(with_models(memory_budget_mb=1500)) == 1_500_000_000
    assert memory_budget_bytes(with_models(memory_budget_mb=0)) is None
