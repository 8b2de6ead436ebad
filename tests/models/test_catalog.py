"""The model catalog and its cached hub metadata."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.support.fake_hub import fake_hub, localhost_only, random_bytes
from writer_app.models.catalog import (
    CATALOG,
    GIB,
    REPO_ID,
    Catalog,
    HubFileFacts,
    HubMetadataCache,
    list_catalog,
    metadata_cache_path,
    system_memory_bytes,
)
from writer_app.models.errors import UnknownModel
from writer_app.models.hub import HubClient, HubSettings

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


def test_ram_estimates_match_the_measured_resident_memory():
    # Measured with ctransformers: gpt2 q4_0 ~230 MB resident, gpt2-large q4_0 ~890 MB.
    assert Catalog().get("gpt2-q4_0").ram_bytes == pytest.approx(230e6, rel=0.05)
    assert Catalog().get("gpt2-large-q4_0").ram_bytes == pytest.approx(890e6, rel=0.05)


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
