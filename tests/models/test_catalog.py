"""The model catalog and its cached hub metadata."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from tests.engine.test_memory import GPT2, GPT2_LARGE
from tests.support.fake_hub import fake_hub, localhost_only, random_bytes
from writer_app.engine import memory
from writer_app.engine.memory import (
    DEFAULT_BUDGET_BYTES,
    MIB,
    app_resident_bytes,
    context_for_budget,
)
from writer_app.models import catalog
from writer_app.models.catalog import (
    CATALOG,
    GIB,
    REPO_ID,
    Catalog,
    HubFileFacts,
    HubMetadataCache,
    list_catalog,
    metadata_cache_path,
    ram_bytes_within,
    system_memory_bytes,
)
from writer_app.models.errors import UnknownModel
from writer_app.models.hub import HubClient, HubSettings
from writer_app.settings import Settings

__all__ = ["fake_hub", "localhost_only"]
pytestmark = pytest.mark.usefixtures("localhost_only")


def test_gpt2_and_gpt2_large_come_from_the_ggml_series_repository():
    catalog = Catalog()
    small, large = catalog.get("gpt2-q4_0"), catalog.get("gpt2-large-q4_0")

    assert (small.repo_id, small.filename) == (REPO_ID, "gpt2-124M.q4_0.bin")
    assert (large.repo_id, large.filename) == (REPO_ID, "gpt2-774M.q4_0.bin")
    assert large.approx_size_bytes == 442503529 and small.license == "MIT"
    assert catalog.by_filename("gpt2-774M.f16.bin") == catalog.get("gpt2-large-f16")


def test_every_entry_has_a_unique_id_and_file_and_extras_are_opt_in():
    assert len({e.id for e in CATALOG}) == len({e.filename for e in CATALOG}) == len(CATALOG) == 24
    families = {e.family for e in Catalog().entries(include_extras=False)}
    assert families == {"gpt2", "gpt2-large"}
    assert {e.family for e in Catalog().entries()} == {
        "gpt2",
        "gpt2-medium",
        "gpt2-large",
        "gpt2-xl",
    }


def test_resolve_accepts_ids_families_with_or_without_quantization_and_file_names():
    catalog = Catalog()
    assert catalog.resolve("gpt2-large-q8_0").id == "gpt2-large-q8_0"
    assert catalog.resolve("gpt2-large").id == "gpt2-large-q4_0"
    assert catalog.resolve("gpt2", "f16").id == "gpt2-f16"
    assert catalog.resolve("gpt2-774M.q5_1.bin").id == "gpt2-large-q5_1"
    with pytest.raises(UnknownModel, match="gpt2-q9_9"):
        catalog.resolve("gpt2", "q9_9")


def test_unknown_id_says_which_models_exist():
    with pytest.raises(UnknownModel, match="'gpt5'.*gpt2-q4_0"):
        Catalog().get("gpt5")


def test_the_memory_figures_are_the_engines_memory_model_at_the_default_budget():
    large, small = Catalog().get("gpt2-large-q4_0"), Catalog().get("gpt2-q4_0")
    # The weights gpt2.cc will hold, from the file size and the family's shape, agree with
    # what it held for the benchmark's files (tests/engine/test_memory.py): within 1 MiB.
    for entry, measured in ((large, GPT2_LARGE), (small, GPT2)):
        facts = entry_facts(entry)
        assert abs(facts.weight_bytes - measured.weight_bytes) < MIB
        context = context_for_budget(facts, DEFAULT_BUDGET_BYTES)
        assert context == context_for_budget(measured, DEFAULT_BUDGET_BYTES)
        assert entry.ram_bytes == app_resident_bytes(facts, context)
    assert context_for_budget(entry_facts(large), DEFAULT_BUDGET_BYTES) == 416
    assert large.ram_bytes <= DEFAULT_BUDGET_BYTES < ram_bytes_within(large, None)
    assert Settings().models.memory_budget_mb * 10**6 == DEFAULT_BUDGET_BYTES


def test_the_catalog_has_no_memory_constants_of_its_own(monkeypatch):
    entry = Catalog().get("gpt2-q4_0")  # its full context fits the default budget
    before = ram_bytes_within(entry, None)
    assert before == app_resident_bytes(entry_facts(entry), 1024)
    ctransformers = memory.FOOTPRINTS["ctransformers"]
    changed = dataclasses.replace(
        ctransformers, base_bytes=ctransformers.base_bytes + 7 * MIB, context_bytes_per_layer_width=13
    )
    monkeypatch.setitem(memory.FOOTPRINTS, "ctransformers", changed)
    monkeypatch.setattr(memory, "GUI_RESERVE_BYTES", memory.GUI_RESERVE_BYTES + 3 * MIB)
    extra_context = 1 * entry_facts(entry).n_layer * entry_facts(entry).n_embd * 1024
    assert ram_bytes_within(entry, None) == before + 10 * MIB + extra_context
    assert not [name for name in vars(catalog) if "OVERHEAD" in name or "RAM_BYTES" in name]


def entry_facts(entry):
    family = next(f for f in catalog._FAMILIES if f.family == entry.family)
    return catalog.expected_facts(family, entry.quantization, entry.approx_size_bytes)


def test_recommendation_follows_the_machines_memory():
    catalog = Catalog()
    assert catalog.recommended(4 * GIB).id == "gpt2-q4_0"
    assert catalog.recommended(16 * GIB).id == "gpt2-large-q4_0"
    assert system_memory_bytes() > 256 * 1024 * 1024


def test_refresh_asks_the_hub_once_and_the_answer_works_offline_later(fake_hub, tmp_path):
    small = random_bytes(1234, seed=1)
    large = random_bytes(4321, seed=2)
    fake_hub.add_file(REPO_ID, "gpt2-124M.q4_0.bin", small)
    fake_hub.add_file(REPO_ID, "gpt2-774M.q4_0.bin", large)
    cache_file = tmp_path / "hub-metadata.json"
    hub = HubClient(HubSettings(endpoint=fake_hub.endpoint, token=False))

    items = Catalog(cache=HubMetadataCache(cache_file)).refresh(hub, include_extras=False)

    by_id = {item.entry.id: item for item in items}
    assert by_id["gpt2-q4_0"].size_bytes == 1234 and by_id["gpt2-q4_0"].from_hub
    assert by_id["gpt2-large-q4_0"].sha256 == hashlib.sha256(large).hexdigest()
    # Files the hub does not have keep the table's values.
    assert by_id["gpt2-f16"].size_bytes == 251222425 and not by_id["gpt2-f16"].from_hub
    assert len(fake_hub.requests) == 1

    fake_hub.stop()  # offline from here on
    reopened = Catalog(cache=HubMetadataCache(cache_file)).item(Catalog().get("gpt2-q4_0"))
    assert reopened.size_bytes == 1234 and reopened.sha256 == hashlib.sha256(small).hexdigest()


def test_a_damaged_cache_falls_back_to_the_built_in_table(tmp_path):
    cache_file = tmp_path / "hub-metadata.json"
    cache_file.write_text("{not json", encoding="utf-8")

    item = Catalog(cache=HubMetadataCache(cache_file)).item(Catalog().get("gpt2-large-q8_0"))

    assert item.size_bytes == 828562409 and not item.from_hub
    assert item.sha256 == "964ca78cdc0d8f5429b883e34c14754d59f7f0b6a9eea16e618db82fe7ba7a3a"


def test_list_catalog_uses_the_app_cache_folder(app_home):
    cache = HubMetadataCache(metadata_cache_path(app_home))
    cache.put(REPO_ID, "gpt2-124M.q4_0.bin", HubFileFacts(999, "ab" * 32, "c" * 40, 0.0))

    items = {item.entry.id: item for item in list_catalog(app_home)}
    assert items["gpt2-q4_0"].size_bytes == 999 and items["gpt2-q4_0"].from_hub
    assert "gpt2-xl-q4_0" not in items


def test_two_instances_saving_the_cache_at_once_never_clash(tmp_path):
    """Two app instances share hub-metadata.json: each save has its own temp file, so
    one never renames (or deletes) the other's half-written copy."""
    import threading

    cache_file = tmp_path / "hub-metadata.json"
    errors: list[BaseException] = []

    def refresh(instance: int) -> None:
        cache = HubMetadataCache(cache_file)
        try:
            for n in range(40):
                cache.put(REPO_ID, f"file-{instance}-{n}.bin", HubFileFacts(n, None, "c" * 40, 0.0))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=refresh, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Each instance saves what it knows; the file is one of them whole, never a mix.
    saved = json.loads(cache_file.read_text(encoding="utf-8"))["files"]
    assert len(saved) == 40 and len({name.split("-")[1] for name in saved}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["hub-metadata.json"]
