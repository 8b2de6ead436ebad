"""The models folder: listing, rescans, partials, delete and import (real GGML validation)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.support.fake_hub import random_bytes, tiny_gpt2_file
from writer_app.models import store as store_module
from writer_app.models.errors import (
    DiskFull,
    ImportCancelled,
    InvalidModel,
    ModelAlreadyInstalled,
    UnknownModel,
)
from writer_app.models.store import (
    ModelStore,
    PartialState,
    check_model_file,
    import_model,
    list_installed,
    partial_path,
    remove_model,
    state_path,
)


@pytest.fixture
def models_dir(tmp_path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_a_missing_folder_is_an_empty_store(models_dir):
    contents = ModelStore(models_dir).scan()
    assert (contents.models, contents.partials, contents.rejected) == ([], [], [])


def test_files_dropped_in_appear_on_the_next_scan_without_a_restart(models_dir):
    store = ModelStore(models_dir)
    assert store.installed() == []
    models_dir.mkdir()
    tiny_gpt2_file(models_dir / "gpt2-124M.q4_0.bin")
    tiny_gpt2_file(models_dir / "my-finetune.bin", seed=1)

    models = {m.name: m for m in store.installed()}

    assert set(models) == {"gpt2-124M.q4_0.bin", "my-finetune.bin"}
    assert models["gpt2-124M.q4_0.bin"].catalog_entry.id == "gpt2-q4_0"
    assert models["my-finetune.bin"].imported
    assert models["my-finetune.bin"].facts.n_layer == 1
    assert models["my-finetune.bin"].display_name == "my-finetune"


def test_partial_downloads_are_never_offered_as_models(models_dir):
    models_dir.mkdir()
    target = models_dir / "gpt2-774M.q4_0.bin"
    partial_path(target).write_bytes(b"\0" * 300)
    PartialState("u", "r", target.name, "c", 1000, "ab" * 32, "e").save(state_path(target))

    contents = ModelStore(models_dir).scan()

    assert contents.models == []
    [partial] = contents.partials
    assert (partial.name, partial.bytes_done, partial.total_bytes) == (target.name, 300, 1000)
    assert partial.catalog_entry.id == "gpt2-large-q4_0"


def test_files_that_fail_validation_are_rejected_with_the_reason(models_dir):
    models_dir.mkdir()
    (models_dir / "broken.bin").write_bytes(random_bytes(500))
    (models_dir / "notes.txt").write_text("not a model")

    contents = ModelStore(models_dir).scan()

    assert contents.models == []
    [rejected] = contents.rejected
    assert rejected.path.name == "broken.bin" and "not a usable GPT-2 model" in rejected.reason


def test_rescans_only_revalidate_files_that_changed(models_dir):
    models_dir.mkdir()
    model = tiny_gpt2_file(models_dir / "a.bin")
    tiny_gpt2_file(models_dir / "b.bin", seed=1)
    checked: list[str] = []

    def counting_validator(path: Path):
        checked.append(path.name)
        return check_model_file(path)

    store = ModelStore(models_dir, validate=counting_validator)
    store.scan()
    store.scan()
    assert sorted(checked) == ["a.bin", "b.bin"]

    with open(model, "ab") as f:
        f.write(b"junk")  # now has trailing data, so it must be checked again and rejected
    contents = store.scan()
    assert sorted(checked) == ["a.bin", "a.bin", "b.bin"]
    assert [m.name for m in contents.models] == ["b.bin"]


def test_delete_removes_the_model_and_its_partial_and_reports_bytes_freed(models_dir):
    models_dir.mkdir()
    model = tiny_gpt2_file(models_dir / "gpt2-124M.q4_0.bin")
    partial_path(model).write_bytes(b"\0" * 100)
    state_path(model).write_text("{}")
    size = model.stat().st_size

    freed = ModelStore(models_dir).delete("gpt2-q4_0")  # by catalog id

    assert freed == size + 100 + 2
    assert list(models_dir.iterdir()) == []


def test_delete_of_only_a_partial_download(models_dir):
    models_dir.mkdir()
    partial_path(models_dir / "x.bin").write_bytes(b"\0" * 10)

    assert ModelStore(models_dir).delete("x.bin") == 10
    assert list(models_dir.iterdir()) == []


def test_deleting_something_unknown_says_so(models_dir):
    with pytest.raises(UnknownModel, match="'nothing.bin'"):
        ModelStore(models_dir).delete("nothing.bin")


def test_import_links_a_valid_file_into_the_store(models_dir, outside):
    source = tiny_gpt2_file(outside / "mine.bin")

    model = ModelStore(models_dir).import_file(source)

    assert model.path == models_dir / "mine.bin" and model.imported
    assert os.path.samefile(source, model.path)  # same filesystem: a hard link, no copy
    assert [m.name for m in ModelStore(models_dir).installed()] == ["mine.bin"]


def no_links(source, destination):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_import_copies_when_linking_is_impossible(models_dir, outside, monkeypatch):
    source = tiny_gpt2_file(outside / "mine.ggml")
    monkeypatch.setattr(os, "link", no_links)
    model = ModelStore(models_dir).import_file(source)

    assert model.name == "mine.ggml.bin"
    assert not os.path.samefile(source, model.path)
    assert model.path.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in models_dir.iterdir()) == ["mine.ggml.bin"]  # no temp left


def test_a_copy_reports_its_progress(models_dir, outside, monkeypatch):
    source = tiny_gpt2_file(outside / "mine.bin")
    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(store_module, "COPY_BLOCK_BYTES", 4096)
    seen: list[tuple[int, int]] = []
    ModelStore(models_dir).import_file(source, progress=lambda done, total: seen.append((done, total)))
    size = source.stat().st_size
    assert len(seen) == -(-size // 4096)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (size, size)


def test_a_cancelled_copy_leaves_nothing_behind(models_dir, outside, monkeypatch):
    source = tiny_gpt2_file(outside / "mine.bin")
    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(store_module, "COPY_BLOCK_BYTES", 4096)
    copied: list[int] = []
    with pytest.raises(ImportCancelled, match="cancelled"):
        ModelStore(models_dir).import_file(
            source, progress=lambda done, _total: copied.append(done),
            should_cancel=lambda: len(copied) >= 3,
        )
    assert copied == [4096, 8192, 12288]
    assert list(models_dir.iterdir()) == []


def test_import_refuses_a_copy_that_does_not_fit(models_dir, outside, monkeypatch):
    source = tiny_gpt2_file(outside / "mine.bin")
    monkeypatch.setattr(os, "link", no_links)

    with pytest.raises(DiskFull, match="needs"):
        ModelStore(models_dir, free_space=lambda p: 100).import_file(source)
    assert list(models_dir.iterdir()) == []


def test_import_rejects_files_that_are_not_models(models_dir, outside):
    source = outside / "photo.bin"
    source.write_bytes(random_bytes(4000))

    with pytest.raises(InvalidModel, match="photo.bin is not a usable GPT-2 model"):
        ModelStore(models_dir).import_file(source)
    with pytest.raises(InvalidModel, match="does not exist"):
        ModelStore(models_dir).import_file(outside / "missing.bin")
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_import_will_not_silently_replace_a_different_model(models_dir, outside):
    store = ModelStore(models_dir)
    store.import_file(tiny_gpt2_file(outside / "mine.bin"))
    newer = tiny_gpt2_file(outside / "other" / "mine.bin", seed=5)

    with pytest.raises(ModelAlreadyInstalled, match="mine.bin"):
        store.import_file(newer)
    replaced = store.import_file(newer, overwrite=True)
    assert replaced.path.read_bytes() == newer.read_bytes()


def test_usage_counts_models_partials_and_free_space(models_dir):
    models_dir.mkdir()
    model = tiny_gpt2_file(models_dir / "a.bin")
    partial_path(models_dir / "b.bin").write_bytes(b"\0" * 50)

    usage = ModelStore(models_dir, free_space=lambda p: 12345).usage()

    assert (usage.models_bytes, usage.partial_bytes, usage.free_bytes) == (
        model.stat().st_size,
        50,
        12345,
    )


def test_the_cli_functions_work_on_the_app_folders(app_home, outside):
    source = tiny_gpt2_file(outside / "gpt2-774M.q4_0.bin")

    imported = import_model(app_home, source)

    assert imported.path.parent == app_home.models_dir
    assert [m.catalog_entry.id for m in list_installed(app_home)] == ["gpt2-large-q4_0"]
    assert remove_model(app_home, "gpt2-774M.q4_0.bin") == source.stat().st_size
    assert list_installed(app_home) == []


def test_the_cli_functions_follow_a_custom_models_folder(app_home, outside, tmp_path):
    custom = tmp_path / "my-models"
    import_model(app_home, tiny_gpt2_file(outside / "mine.bin"), models_dir=custom)

    assert [m.path for m in list_installed(app_home, custom)] == [custom / "mine.bin"]
    assert list_installed(app_home) == []
    assert remove_model(app_home, "mine.bin", custom) > 0
