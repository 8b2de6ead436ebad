"""`writer-app models list/download/import/remove` against the fake hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys

import pytest

from tests.support.fake_hub import (
    FakeHub,
    fake_hub,
    free_port,
    localhost_only,
    random_bytes,
    tiny_gpt2_file,
)
from writer_app import cli_models
from writer_app.cli import main
from writer_app.models.catalog import REPO_ID, Catalog
from writer_app.models.downloader import RetryPolicy
from writer_app.models.store import partial_path
from writer_app.settings import ModelSettings, PrivacySettings, Settings, SettingsStore

__all__ = ["fake_hub", "localhost_only"]
pytestmark = pytest.mark.usefixtures("localhost_only")

SMALL = Catalog().get("gpt2-q4_0")
SMALL_Q8 = Catalog().get("gpt2-q8_0")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(cli_models, "RETRY_POLICY", RetryPolicy(retries=1, base_delay=0.01))


def use_hub(app_home, endpoint: str, **settings) -> None:
    SettingsStore.for_paths(app_home).save(
        Settings(models=ModelSettings(hub_endpoint=endpoint), **settings))


def host(hub: FakeHub, entry, tmp_path, seed: int = 0) -> bytes:
    data = tiny_gpt2_file(tmp_path / "hosted" / f"{entry.id}.bin", seed=seed).read_bytes()
    hub.add_file(REPO_ID, entry.filename, data)
    return data


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def listed(capsys) -> dict[str, dict]:
    assert main(["models", "list", "--json"]) == 0
    return {row["id"]: row for row in json.loads(capsys.readouterr().out)["models"]}


def test_list_shows_the_catalog_without_going_online(capsys, fake_hub, app_home):
    use_hub(app_home, fake_hub.endpoint)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Models folder: {app_home.models_dir}"
    assert out[1].split() == ["ID", "NAME", "SIZE", "RAM", "STATUS"]
    assert out[2].split()[0] == "demo" and out[2].endswith("built-in")
    assert out[3].startswith("gpt2-q4_0") and out[3].endswith("not downloaded")
    assert "73.6 MB" in out[3] and len(out) == 3 + 12  # the demo; gpt2 and gpt2-large, 6 each

    rows = listed(capsys)
    assert set(rows) == {"demo"} | {e.id for e in Catalog().entries(include_extras=False)}
    assert rows["gpt2-large-q4_0"]["ram_bytes"] == Catalog().get("gpt2-large-q4_0").ram_bytes
    assert fake_hub.requests == []


def test_ram_figures_follow_the_engines_memory_model_at_the_writers_budget(capsys, app_home):
    # One memory model (engine/memory.py) for the catalog, the installed models and the
    # demo, at the context the writer's memory budget allows, as the app quotes them.
    from writer_app.assets import demo_model_path
    from writer_app.engine.ggml import validate_model_file
    from writer_app.engine.memory import app_resident_within_budget
    from writer_app.models.catalog import ram_bytes_within

    demo = validate_model_file(demo_model_path())
    large = Catalog().get("gpt2-large-q4_0")
    for budget_mb in (1000, 600):
        settings = Settings(models=ModelSettings(memory_budget_mb=budget_mb))
        SettingsStore.for_paths(app_home).save(settings)
        rows = listed(capsys)
        budget = budget_mb * 1_000_000
        assert rows["demo"]["ram_bytes"] == app_resident_within_budget(demo, budget)
        assert rows["gpt2-large-q4_0"]["ram_bytes"] == ram_bytes_within(large, budget)
    assert ram_bytes_within(large, 600_000_000) < ram_bytes_within(large, 1_000_000_000)
    # On llama.cpp the same models are quoted with its footprint (weights read once, a
    # second sequence, its own cache layout): gpt2-large at 1 GB gets 512 tokens there.
    SettingsStore.for_paths(app_home).save(Settings(models=ModelSettings(engine="llama.cpp")))
    rows = listed(capsys)
    assert rows["demo"]["ram_bytes"] == app_resident_within_budget(demo, 1_000_000_000, "llama.cpp")
    assert rows["gpt2-large-q4_0"]["ram_bytes"] == ram_bytes_within(large, 1_000_000_000, "llama.cpp")
    assert ram_bytes_within(large, 1_000_000_000, "llama.cpp") != ram_bytes_within(large, 1_000_000_000)


def test_download_installs_with_a_progress_bar_then_lists_it(capsys, fake_hub, app_home,
                                                             tmp_path):
    data = host(fake_hub, SMALL, tmp_path)
    use_hub(app_home, fake_hub.endpoint)
    assert main(["models", "download", "gpt2"]) == 0  # the family: its q4_0 file
    captured = capsys.readouterr()
    target = app_home.models_dir / SMALL.filename
    assert captured.out == f"GPT-2 Small (124M), q4_0 is installed: {target}\n"
    assert "[" + "#" * 30 + "] 100%" in captured.err
    assert f"{len(data) / 1000:,.0f} kB/{len(data) / 1000:,.0f} kB" in captured.err
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()

    row = listed(capsys)[SMALL.id]
    assert (row["status"], row["path"], row["size_bytes"]) == ("installed", str(target), len(data))


def test_download_with_a_quantization_and_hf_endpoint(capsys, fake_hub, app_home, tmp_path,
                                                      monkeypatch):
    host(fake_hub, SMALL_Q8, tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)  # no endpoint in the settings
    assert main(["models", "download", "gpt2", "--quant", "q8_0"]) == 0
    assert (app_home.models_dir / SMALL_Q8.filename).is_file()


def test_the_settings_endpoint_wins_over_hf_endpoint(capsys, fake_hub, app_home, tmp_path,
                                                     monkeypatch):
    host(fake_hub, SMALL, tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing there
    use_hub(app_home, fake_hub.endpoint)
    assert main(["models", "download", "gpt2-q4_0"]) == 0


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("unknown", "There is no model called 'gpt3'"),
        ("missing", "(not found)"),
        ("server error", "had a server error (HTTP 500)"),
        ("server down", "Could not connect to 127.0.0.1"),
        ("corrupt", "arrived damaged"),
        ("offline", "offline mode is on"),
    ],
)
def test_download_failures_are_one_line_and_exit_2(capsys, fake_hub, app_home, tmp_path,
                                                   setup, words):
    endpoint = fake_hub.endpoint
    name = "gpt3" if setup == "unknown" else "gpt2"
    if setup in ("server error", "corrupt"):
        host(fake_hub, SMALL, tmp_path)
        fake_hub.set_faults(REPO_ID, SMALL.filename,
                            **({"status": 500} if setup == "server error" else {"corrupt": True}))
    elif setup == "missing":
        host(fake_hub, SMALL_Q8, tmp_path)
    elif setup == "server down":
        endpoint = f"http://127.0.0.1:{free_port()}"
    elif setup == "offline":
        host(fake_hub, SMALL, tmp_path)
    privacy = PrivacySettings(offline=setup == "offline")
    use_hub(app_home, endpoint, privacy=privacy)

    assert main(["models", "download", name]) == 2
    captured = capsys.readouterr()
    assert words in one_line_error(captured.err.splitlines()[-1])
    assert captured.out == ""
    assert not (app_home.models_dir / SMALL.filename).exists()
    if setup in ("offline", "unknown"):
        assert fake_hub.requests == []


def test_a_download_with_a_flipped_vocabulary_byte_fails_as_info_and_import_do(
        capsys, fake_hub, app_home, tmp_path):
    """The downloader verifies with the same validator as `models info` and `models import`
    (and every load): one flipped byte turns token "a" into a second "b"."""
    good = tiny_gpt2_file(tmp_path / "good.bin").read_bytes()
    token_a = struct.pack("<I", 1) + b"a"
    flipped = good.replace(token_a, struct.pack("<I", 1) + b"b", 1)
    fake_hub.add_file(REPO_ID, SMALL.filename, flipped)
    use_hub(app_home, fake_hub.endpoint)
    reason = ("its vocabulary can't be tokenized exactly: The model's vocabulary lacks 1 of the "
              "256 single-byte tokens (e.g. byte 0x61)")

    assert main(["models", "download", SMALL.id]) == 2
    err = one_line_error(capsys.readouterr().err.splitlines()[-1])
    assert err.startswith(f"error: {SMALL.filename} downloaded correctly but the app cannot use")
    assert reason in err
    assert not (app_home.models_dir / SMALL.filename).exists()

    local = tmp_path / "flipped.bin"
    local.write_bytes(flipped)
    for command in (["models", "info", str(local)], ["models", "import", str(local)]):
        assert main(command) == 2
        assert reason in one_line_error(capsys.readouterr().err)


def test_an_interrupted_download_is_listed_as_partial_and_resumes(capsys, fake_hub, app_home,
                                                                  tmp_path, monkeypatch):
    monkeypatch.setattr(cli_models, "RETRY_POLICY", RetryPolicy(retries=0))
    data = host(fake_hub, SMALL, tmp_path)
    fake_hub.set_faults(REPO_ID, SMALL.filename, drop_after_bytes=5_000)
    use_hub(app_home, fake_hub.endpoint)
    assert main(["models", "download", "gpt2"]) == 2
    assert "dropped while downloading" in capsys.readouterr().err.splitlines()[-1]
    kept = partial_path(app_home.models_dir / SMALL.filename).stat().st_size
    assert kept > 0

    row = listed(capsys)[SMALL.id]
    assert (row["status"], row["percent"]) == ("partial", round(100 * kept / len(data), 1))
    assert main(["models", "list"]) == 0
    assert f"partial ({100 * kept / len(data):.0f} %)" in capsys.readouterr().out

    fake_hub.clear_faults(REPO_ID, SMALL.filename)
    assert main(["models", "download", "gpt2"]) == 0
    ranges = [r.headers.get("range") for r in fake_hub.content_gets()]
    assert ranges[-1] == f"bytes={kept}-"


def test_import_then_remove(capsys, app_home, tmp_path):
    source = tiny_gpt2_file(tmp_path / "my-model.bin")
    assert main(["models", "import", str(source)]) == 0
    assert capsys.readouterr().out.startswith("Imported my-model.bin (f32, ")
    row = listed(capsys)["my-model.bin"]
    assert (row["status"], row["imported"], row["name"]) == ("installed", True,
                                                             "my-model (imported)")
    assert source.exists()  # imported, not moved

    assert main(["models", "remove", "my-model.bin"]) == 0
    assert capsys.readouterr().out.startswith("Removed my-model.bin; ")
    assert "my-model.bin" not in listed(capsys)
    assert not (app_home.models_dir / "my-model.bin").exists()


def test_remove_by_catalog_id(capsys, app_home):
    tiny_gpt2_file(app_home.models_dir / SMALL.filename)
    assert listed(capsys)[SMALL.id]["status"] == "installed"
    assert main(["models", "remove", SMALL.id]) == 0
    assert capsys.readouterr().out.startswith(f"Removed {SMALL.id}; 14 kB freed")
    assert listed(capsys)[SMALL.id]["status"] == "not downloaded"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["models", "import", "/nonexistent/model.bin"], "does not exist"),
        (["models", "import", "NOTES"], "GGML"),
        (["models", "remove", "nothing-here"], "No installed model or partial download"),
    ],
)
def test_import_and_remove_failures_are_one_line_and_exit_2(capsys, tmp_path, argv, words):
    notes = tmp_path / "notes.bin"
    notes.write_bytes(random_bytes(2048))
    argv = [str(notes) if arg == "NOTES" else arg for arg in argv]
    assert main(argv) == 2
    assert words in one_line_error(capsys.readouterr().err)


def test_the_real_command_prints_one_line_and_exits_2(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    result = subprocess.run([sys.executable, "-m", "writer_app", "models", "remove", "gpt2-q4_0"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "No installed model" in one_line_error(result.stderr)
