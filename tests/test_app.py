"""How the composition root names models in the status bar."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.engine.test_memory import GPT2_LARGE
from writer_app.app import model_details, model_label, model_name
from writer_app.assets import demo_model_path
from writer_app.model_choice import DEMO_MODEL_NAME
from writer_app.models.catalog import Catalog


def test_a_catalog_model_is_called_by_its_catalog_name():
    catalog = Catalog()
    entry = next(e for e in catalog.entries() if e.id == "gpt2-large-q4_0")
    facts = dataclasses.replace(GPT2_LARGE, path=Path("/models") / entry.filename)
    assert model_label(facts, catalog) == entry.label == "GPT-2 Large (774M), q4_0"


def test_other_files_by_file_name_and_the_demo_as_the_demo():
    facts = dataclasses.replace(GPT2_LARGE, path=Path("/somewhere/my-model.bin"))
    assert model_label(facts, Catalog()) == "my-model.bin · q4_0"
    demo = dataclasses.replace(GPT2_LARGE, path=demo_model_path())
    assert model_label(demo, Catalog()) == f"{DEMO_MODEL_NAME} · q4_0"  # as the Model menu


def test_before_it_loads_a_model_is_named_from_its_path_alone(tmp_path):
    catalog = Catalog()
    entry = catalog.get("gpt2-large-q4_0")
    assert model_name(tmp_path / entry.filename, catalog) == entry.label
    assert model_name(tmp_path / "my-model.bin", catalog) == "my-model.bin"
    assert model_name(demo_model_path(), catalog) == DEMO_MODEL_NAME


def test_the_details_say_when_the_memory_budget_caps_the_context():
    capped = model_details(GPT2_LARGE, 448)
    assert "448 tokens" in capped and "of 1024" in capped and "memory budget" in capped
    assert "memory budget" not in model_details(GPT2_LARGE, 1024)
