"""The headless command line: same engine, no window, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from writer_app.cli import main


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "writer_app", *args],
        capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )


def assert_one_line_error(result_or_err: str) -> None:
    lines = result_or_err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result_or_err


def test_complete_streams_the_models_continuation(cat_model):
    result = run_cli("complete", "--model", str(cat_model), "--temperature", "0", "The cat sat")
    assert result.returncode == 0, result.stderr
    assert result.stdout == " on the mat. Then it slept all day!\n"


def test_complete_with_a_seed_reproduces_and_other_seeds_differ(slow_model):
    common = ("complete", "--model", str(slow_model), "--temperature", "1.2", "--top-k", "0",
              "--max-tokens", "12")
    first = run_cli(*common, "--seed", "7", "Once upon a time")
    again = run_cli(*common, "--seed", "7", "Once upon a time")
    other = run_cli(*common, "--seed", "8", "Once upon a time")
    assert first.returncode == again.returncode == other.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    assert first.stdout != other.stdout


def test_generate_writes_one_json_object_per_sample(cat_model, tmp_path, capfd):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The cat sat\nSnow fell\n", encoding="utf-8")
    out = tmp_path / "samples.jsonl"
    code = main(["generate", "--model", str(cat_model), "--prompts", str(prompts), "--n", "2",
                 "--out", str(out), "--temperature", "0", "--seed", "3"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in records] == ["The cat sat"] * 2 + ["Snow fell"] * 2
    assert records[0]["text"] == " on the mat. Then it slept all day!"
    assert records[2]["text"] == " softly\nover quiet hills"
    assert [r["seed"] for r in records] == [3, 4, 3, 4]
    assert all(r["model"] == cat_model.name and r["settings"]["temperature"] == 0 for r in records)
    assert "4/4 samples" in capfd.readouterr().err  # the progress bar


def test_the_command_lines_generations_are_not_interactive(cat_model, tmp_path, monkeypatch, capsys):
    """No edit can cancel them, so the engine may read their prompts in batches."""
    from writer_app.engine.process import EngineClient

    asked = []
    real = EngineClient.generate

    def generate(self, request):
        asked.append(request)
        return real(self, request)

    monkeypatch.setattr(EngineClient, "generate", generate)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Snow fell\n", encoding="utf-8")
    assert main(["complete", "--model", str(cat_model), "--temperature", "0", "The cat sat"]) == 0
    assert main(["generate", "--model", str(cat_model), "--prompts", str(prompts),
                 "--out", str(tmp_path / "out.jsonl"), "--temperature", "0"]) == 0
    assert capsys.readouterr().out == " on the mat. Then it slept all day!\n"
    assert len(asked) == 2 and not any(request.interactive for request in asked)


def test_models_info_prints_the_validators_facts(cat_model, capsys, app_home):
    assert main(["models", "info", str(cat_model), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["quantization"] == "q8_0" and facts["n_vocab"] == 50257
    assert main(["models", "info", str(cat_model)]) == 0
    out = capsys.readouterr().out
    assert "a valid GGML GPT-2 model" in out
    # The RAM quote is the chosen engine's (engine/memory.py) at the writer's budget.
    from writer_app.engine.ggml import validate_model_file
    from writer_app.engine.memory import app_resident_within_budget
    from writer_app.settings import ModelSettings, Settings, SettingsStore

    facts = validate_model_file(cat_model)
    mib = app_resident_within_budget(facts, 1_000_000_000) / (1024 * 1024)
    assert f"~{mib:,.0f} MiB (the whole app on ctransformers, at the context a 1,000 MB budget allows)" in out
    SettingsStore.for_paths(app_home).save(Settings(models=ModelSettings(engine="llama.cpp", memory_budget_mb=0)))
    assert main(["models", "info", str(cat_model)]) == 0
    mib = app_resident_within_budget(facts, None, "llama.cpp") / (1024 * 1024)
    assert f"~{mib:,.0f} MiB (the whole app on llama.cpp, at the full context)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["complete", "--temperature", "5", "Hi"], "--temperature: 5 is outside 0.0 to 2.0"),
        (["complete", "--top-k", "-1", "Hi"], "--top-k: -1 is outside 0 to 200"),
        (["complete", "--top-p", "abc", "Hi"], "--top-p: 'abc' is not a number"),
        (["complete", "--model", "/nonexistent/model.bin", "Hi"], "model file not found"),
        (["complete", "--model", "no-such-model", "Hi"], "no-such-model"),
        (["complete", "   "], "the prompt is empty"),
        (["generate", "--prompts", "/nonexistent.txt", "--out", "x.jsonl"], "prompt file not found"),
        (["models", "info", "/nonexistent.bin"], "cannot read /nonexistent.bin"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert expected in err


def test_an_invalid_model_file_is_rejected_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"lmgg" + b"\x00" * 20)  # right magic, truncated header
    assert main(["models", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "bad.bin" in err


def test_an_empty_prompt_file_is_refused(tmp_path, capsys):
    prompts = tmp_path / "empty.txt"
    prompts.write_text("\n  \n", encoding="utf-8")
    assert main(["generate", "--prompts", str(prompts), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "has no prompts" in err


def test_version_is_printed_without_starting_anything():
    result = run_cli("--version", timeout=30)
    assert result.returncode == 0
    assert result.stdout.strip().startswith("writer-app 0.")


def test_an_installed_model_is_found_by_name_in_the_folder_the_settings_choose(
    cat_model, tmp_path, app_home, capsys
):
    import shutil
    from dataclasses import replace

    from writer_app.settings import Settings, SettingsStore

    folder = tmp_path / "my models"
    folder.mkdir()
    shutil.copy(cat_model, folder / "cat-phrases.bin")
    settings = Settings()
    SettingsStore.for_paths(app_home).save(
        replace(settings, models=replace(settings.models, models_dir=str(folder)))
    )
    code = main(["complete", "--model", "cat-phrases.bin", "--temperature", "0", "The cat sat"])
    assert code == 0
    assert capsys.readouterr().out.startswith(" on the mat.")
