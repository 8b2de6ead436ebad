"""`--engine` and `--threads` on `complete` and `generate` (issue 12, steps 1-2): both
engines give the numpy reference's greedy text, bad files are refused alike, and a model
llama.cpp cannot take falls back to ctransformers with one line on stderr."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct

import numpy as np
import pytest

from tests.conftest import CAT_PHRASE
from tests.support.gpt2_vocab import encode, gpt2_vocab
from tests.support.models import random_gpt2
from tests.support.reference import read_weights, reference_logits
from writer_app.cli import main
from writer_app.engine.ggml import validate_model_file
from writer_app.engine.gguf_convert import converted_path
from writer_app.engine.process import EngineClient

PROMPT = "The cat sat"
BPE_VOCAB = [bytes([b]) for b in range(256)] + [b"ab", b"abc", b"<|endoftext|>"]
TINY = dict(n_layer=1, n_embd=8, n_head=2)


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def reference_greedy(path, prompt: str, steps: int) -> str:
    """The numpy forward's argmax chain, decoded."""
    weights = read_weights(path)
    n_head = validate_model_file(path).n_head
    ids = encode(prompt)
    for _ in range(steps):
        ids.append(int(np.argmax(reference_logits(weights, ids, n_head=n_head)[-1])))
    new = ids[len(encode(prompt)):]
    return b"".join(gpt2_vocab()[i] for i in new).decode()


def test_greedy_text_is_the_same_on_both_engines_and_the_numpy_reference(
    cat_model, tmp_path, capfd
):
    cat_model = shutil.copy(cat_model, tmp_path / cat_model.name)  # not converted yet
    outputs = {}
    for engine in ("ctransformers", "llama.cpp"):
        code = main(["complete", "--engine", engine, "--model", str(cat_model),
                     "--temperature", "0", "--max-tokens", "8", "--stop-at", "length", PROMPT])
        captured = capfd.readouterr()
        assert code == 0, captured.err
        outputs[engine] = captured.out
        first_use = [f"preparing {cat_model.name} for llama.cpp (converting it to GGUF once, "
                     "cached beside the model)…"]
        assert captured.err.splitlines() == (first_use if engine == "llama.cpp" else [])
    expected = reference_greedy(cat_model, PROMPT, 8)
    assert CAT_PHRASE.startswith(PROMPT + expected.rstrip("\n"))  # the phrase, as built
    assert outputs["llama.cpp"] == outputs["ctransformers"] == expected + "\n"
    assert converted_path(cat_model).is_file()  # converted once, cached beside the model
    assert main(["complete", "--engine", "llama.cpp", "--model", str(cat_model), PROMPT]) == 0
    assert "preparing" not in capfd.readouterr().err  # the cache is used from then on


def _bad_files(tmp_path):
    tiny = random_gpt2(tmp_path / "tiny.bin", vocab=BPE_VOCAB, n_ctx=16, **TINY).read_bytes()
    token = struct.pack("<I", 3) + b"abc"
    files = {
        "flipped.bin": tiny.replace(token, struct.pack("<I", 3) + b"a\x1bc"),
        "truncated.bin": b"lmgg" + b"\x00" * 20,
        "tensor.bin": tiny.replace(b"model/ln_f/g", b"model/\n\x1b_f/g", 1),
        "half.bin": tiny[: len(tiny) // 2],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    five = random_gpt2(tmp_path / "five.bin", vocab=BPE_VOCAB, n_ctx=5, **TINY)
    return [tmp_path / name for name in files] + [five, tmp_path / "missing.bin", tmp_path]


def test_the_bad_file_set_is_refused_through_llama_cpp_as_through_ctransformers(
    tmp_path, capfd
):
    for bad in _bad_files(tmp_path):
        errors = {}
        for engine in ("ctransformers", "llama.cpp"):
            assert main(["complete", "--engine", engine, "--model", str(bad), "Hi"]) == 2
            errors[engine] = one_line(capfd.readouterr().err)
        assert errors["llama.cpp"] == errors["ctransformers"], bad.name
        assert not list(tmp_path.glob("*.gguf")), "nothing is converted for a bad file"


def test_llama_cpp_that_cannot_convert_falls_back_to_ctransformers_with_one_line(
    tmp_path, cat_model, capfd
):
    model = tmp_path / "cat.bin"
    model.write_bytes(cat_model.read_bytes())
    # Where the conversion would go is taken (by a folder): llama.cpp can't have it.
    converted_path(model).mkdir()
    code = main(["complete", "--engine", "llama.cpp", "--model", str(model),
                 "--temperature", "0", "--max-tokens", "8", "--stop-at", "length", PROMPT])
    captured = capfd.readouterr()
    assert code == 0
    assert captured.out == reference_greedy(cat_model, PROMPT, 8) + "\n"
    assert captured.err.splitlines() == [(f"llama.cpp could not load cat.bin (Is a directory: "
                      f"{converted_path(model).name}); using ctransformers")]


def test_generate_records_the_engine_and_threads_reach_it(cat_model, tmp_path, capfd,
                                                          monkeypatch):
    loads = []
    real_load = EngineClient.load

    def recording_load(self, path, **options):  # the real load, noted on the way
        loads.append(options)
        return real_load(self, path, **options)

    monkeypatch.setattr(EngineClient, "load", recording_load)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPT + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--engine", "llama.cpp", "--threads", "1", "--model",
                 str(cat_model), "--prompts", str(prompts), "--out", str(out),
                 "--temperature", "0", "--max-tokens", "8"]) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["engine"] == "llama.cpp"
    assert record["text"] == reference_greedy(cat_model, PROMPT, 8)
    assert loads[-1]["threads"] == 1 and loads[-1]["engine"] == "llama.cpp"
    capfd.readouterr()
    # No --threads: every physical core; a number beyond them is capped to them.
    from writer_app.engine.cores import physical_cores

    for flags, threads in (([], physical_cores()), (["--threads", "64"], physical_cores())):
        assert main(["complete", *flags, "--model", str(cat_model), "--max-tokens", "2",
                     PROMPT]) == 0
        assert loads[-1]["threads"] == threads and loads[-1]["engine"] == "ctransformers"


@pytest.mark.parametrize(("flag", "expected"), [
    (["--threads", "0"], "--threads: 0 is outside 1 to 64"),
    (["--threads", "two"], "--threads: 'two' is not a whole number"),
    (["--engine", "vllm"], "--engine: invalid choice: 'vllm'"),
    (["--server", "http://127.0.0.1:9/v1", "--engine", "llama.cpp"],
     "--engine is for a local model; it can't be used with --server"),
    (["--server", "http://127.0.0.1:9/v1", "--threads", "2"],
     "--threads is for a local model; it can't be used with --server"),
    (["--gpu-layers", "-1"], "--gpu-layers: -1 is outside 0 to 999"),
    (["--gpu-layers", "all"], "--gpu-layers: 'all' is not a whole number"),
    (["--server", "http://127.0.0.1:9/v1", "--gpu-layers", "999"],
     "--gpu-layers is for a local model; it can't be used with --server"),
])
def test_bad_engine_flags_are_one_line(flag, expected, capsys):
    assert main(["complete", *flag, "Hi"]) == 2
    assert expected in one_line(capsys.readouterr().err)


def test_the_engine_flag_picks_the_engine_that_runs(tmp_path, capfd):
    """Seeds reproduce per engine (each draws with its own generator), so a seeded sample
    tells the engines apart: the flag really changed which one ran."""
    model = random_gpt2(tmp_path / "random.bin", n_layer=1, n_embd=32, n_head=2, n_ctx=64,
                        seed=11)
    texts = {}
    for engine in ("ctransformers", "llama.cpp", "llama.cpp"):
        assert main(["complete", "--engine", engine, "--model", str(model), "--seed", "7",
                     "--temperature", "1", "--top-k", "0", "--max-tokens", "12", PROMPT]) == 0
        text = capfd.readouterr().out
        assert texts.setdefault(engine, text) == text  # the same seed reproduces
    assert texts["llama.cpp"] != texts["ctransformers"]


def break_llama_cpp_loads(monkeypatch, times: int) -> None:
    """After each of the next `times` loads on llama.cpp (the restarts' included), the
    engine process is killed (SIGKILL) as the next command reaches it: a real crash that
    the command meets. Until then it is stopped, not dead: a process the kernel has
    already ended before a command is restarted silently (EngineClient's auto_restart).
    The load itself is the real one."""
    real_load, real_send = EngineClient._load, EngineClient._send
    left = [times]
    doomed: list[int] = []

    def load_then_break(self, command):
        facts = real_load(self, command)
        if command.engine == "llama.cpp" and left[0] > 0:
            left[0] -= 1
            os.kill(self.pid, signal.SIGSTOP)
            doomed.append(self.pid)
        return facts

    def send_then_kill(self, command):
        real_send(self, command)
        while doomed:
            os.kill(doomed.pop(), signal.SIGKILL)

    monkeypatch.setattr(EngineClient, "_load", load_then_break)
    monkeypatch.setattr(EngineClient, "_send", send_then_kill)


CRASH_LINE = "llama.cpp stopped unexpectedly (killed by signal SIGKILL); restarting it"
FALLBACK_LINE = ("llama.cpp failed while running cat.bin (it stopped again right after a "
                 "restart, killed by signal SIGKILL); using ctransformers")


def test_llama_cpp_crashing_again_after_its_restart_goes_on_with_ctransformers(
    tmp_path, cat_model, capfd, monkeypatch
):
    model = shutil.copy(cat_model, tmp_path / "cat.bin")
    main(["complete", "--engine", "llama.cpp", "--model", str(model), "Hi"])  # converted
    capfd.readouterr()
    greedy = ["--temperature", "0", "--max-tokens", "8", "--stop-at", "length"]

    break_llama_cpp_loads(monkeypatch, times=2)  # the load, and the restart after the crash
    assert main(["complete", "--engine", "llama.cpp", "--model", str(model), *greedy,
                 PROMPT]) == 0
    captured = capfd.readouterr()
    assert captured.err.splitlines() == [CRASH_LINE, FALLBACK_LINE]
    assert captured.out == reference_greedy(cat_model, PROMPT, 8) + "\n"

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\nSnow fell\n")
    out = tmp_path / "out.jsonl"
    break_llama_cpp_loads(monkeypatch, times=2)
    assert main(["generate", "--engine", "llama.cpp", "--model", str(model), "--prompts",
                 str(prompts), "--out", str(out), *greedy]) == 0
    notes = [line for line in capfd.readouterr().err.splitlines() if not line.startswith("[")]
    assert notes == [CRASH_LINE, FALLBACK_LINE]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt"], r["engine"]) for r in records] == [
        (PROMPT, "ctransformers"), ("Snow fell", "ctransformers")]  # the first one retried
    assert records[0]["text"] == reference_greedy(cat_model, PROMPT, 8)


def test_one_llama_cpp_crash_is_restarted_on_llama_cpp_and_the_run_goes_on(
    tmp_path, cat_model, capfd, monkeypatch
):
    model = shutil.copy(cat_model, tmp_path / "cat.bin")
    break_llama_cpp_loads(monkeypatch, times=1)  # the load only: the restart works
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\n{PROMPT}\n")
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--engine", "llama.cpp", "--model", str(model), "--prompts",
                 str(prompts), "--out", str(out), "--temperature", "0", "--max-tokens",
                 "8"]) == 0
    err = capfd.readouterr().err.splitlines()
    assert [line for line in err if not line.startswith(("[", "preparing"))] == [CRASH_LINE]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["engine"] for r in records] == ["llama.cpp", "llama.cpp"]
    assert {r["text"] for r in records} == {reference_greedy(cat_model, PROMPT, 8)}


def test_gpu_layers_without_a_gpu_run_on_the_cpu_after_one_line(cat_model, tmp_path, capfd):
    # This machine has no GPU and xllamacpp's CPU wheel sees none: llama.cpp says so and
    # computes on the CPU; the text is the same.
    cat_model = shutil.copy(cat_model, tmp_path / cat_model.name)
    outputs, errors = [], []
    for extra in ([], ["--gpu-layers", "999"]):
        code = main(["complete", "--engine", "llama.cpp", "--model", str(cat_model), *extra,
                     "--temperature", "0", "--max-tokens", "6", "--stop-at", "length", PROMPT])
        captured = capfd.readouterr()
        assert code == 0, captured.err
        outputs.append(captured.out)
        errors.append(captured.err.splitlines())
    assert outputs[0] == outputs[1] and outputs[0].strip()
    assert errors[1] == [f"llama.cpp found no GPU; {cat_model.name} runs on the CPU"]
    assert not any("GPU" in line for line in errors[0])
