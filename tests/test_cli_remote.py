"""`complete`/`generate --server` against llama.cpp's real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx2
import pytest

from tests.support import remote_fixtures
from tests.support.fault_proxy import FaultProxy
from tests.support.llama_server import LlamaServer, free_port
from tests.support.remote_fixtures import API_KEY
from writer_app.cli import main

# The shared real-server fixtures (module-scoped servers, session-scoped model files).
cat_gguf = remote_fixtures.cat_gguf
cat_server = remote_fixtures.cat_server
keyed_server = remote_fixtures.keyed_server
random_gguf_model = remote_fixtures.random_gguf_model
random_server = remote_fixtures.random_server

pytestmark = pytest.mark.timeout(180)


def assert_one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_greedy_complete_through_server_equals_the_servers_own_text(random_server, capfd):
    prompt = "The old house at the end of the lane"
    code = main(["complete", "--server", random_server.base_url, "--temperature", "0",
                 "--max-tokens", "20", prompt])
    out = capfd.readouterr().out
    assert code == 0
    # The CLI's defaults (repetition penalty 1.1 over 64 tokens) are sent along; ask the
    # server the same, plainly, with the prompt as text.
    body = {"model": "test-gpt2", "prompt": prompt, "temperature": 0, "max_tokens": 20,
            "repeat_penalty": 1.1, "repeat_last_n": 64}
    reply = httpx2.post(random_server.base_url + "/completions", json=body, timeout=60).json()
    assert out == reply["choices"][0]["text"] + "\n"
    assert len(out) > 20


def test_the_api_key_comes_from_the_flag_or_the_environment(keyed_server, capfd, monkeypatch):
    common = ["complete", "--server", keyed_server.base_url, "--temperature", "0", "The cat sat"]
    assert main([*common, "--api-key", API_KEY]) == 0
    assert capfd.readouterr().out == " on the mat. Then it slept all day!\n"
    monkeypatch.setenv("WRITER_APP_API_KEY", API_KEY)
    assert main(common) == 0
    assert capfd.readouterr().out == " on the mat. Then it slept all day!\n"


def test_a_missing_or_wrong_key_is_one_line_without_the_key(keyed_server, capfd, monkeypatch):
    monkeypatch.delenv("WRITER_APP_API_KEY", raising=False)
    common = ["complete", "--server", keyed_server.base_url, "The cat sat"]
    assert main(common) == 2
    line = assert_one_line_error(capfd.readouterr().err)
    assert line == f"error: The server at 127.0.0.1:{keyed_server.port} needs an API key (401)."
    wrong = "sk-a-wrong-key-0000-1111"
    assert main([*common, "--api-key", wrong]) == 2
    line = assert_one_line_error(capfd.readouterr().err)
    assert "refused the API key …1111 (401)" in line and wrong not in line


def test_an_unreachable_server_and_a_bad_address_are_one_line(capfd):
    port = free_port()
    assert main(["complete", "--server", f"127.0.0.1:{port}", "Hello"]) == 2
    assert assert_one_line_error(capfd.readouterr().err) == (
        f"error: Cannot reach the server at 127.0.0.1:{port}; is it running?")
    assert main(["complete", "--server", "ftp://x", "Hello"]) == 2
    assert "http:// or https://" in assert_one_line_error(capfd.readouterr().err)
    assert main(["complete", "--server", "http://127.0.0.1:1/v1", "--model", "gpt2", "Hi"]) == 2
    assert "--server-model" in assert_one_line_error(capfd.readouterr().err)
    assert main(["complete", "--api-key", "k", "Hi"]) == 2
    assert assert_one_line_error(capfd.readouterr().err) == (
        "error: --api-key needs --server URL (it is for a remote server)")
    assert main(["generate", "--concurrency", "4", "--prompts", "p.txt", "--out", "o.jsonl"]) == 2
    assert "--concurrency needs --server" in assert_one_line_error(capfd.readouterr().err)


def test_a_server_killed_mid_stream_gives_one_clear_line(random_gguf_model):
    with LlamaServer(random_gguf_model) as server:
        child = subprocess.Popen(
            [sys.executable, "-m", "writer_app", "complete", "--server", server.base_url,
             "--max-tokens", "256", "--stop-at", "length", "In the beginning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
        )
        try:
            first = child.stdout.read(1)  # the stream has started
            server.kill()
            rest, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
    assert first
    assert child.returncode == 2
    line = assert_one_line_error(err.decode())
    assert line.startswith(f"error: The connection to 127.0.0.1:{server.port} was cut after ")
    assert line.endswith(" tokens; the suggestion is incomplete.")


def samples_asked(proxy: FaultProxy) -> set[tuple[str, int]]:
    """(prompt as sent, seed) of every completion request: one per sample."""
    return {(json.dumps(body["prompt"]), body["seed"]) for body in proxy.bodies()}


def asked_key(record: dict) -> tuple[str, int]:
    from writer_app.engine.remote import gpt2_tokenizer

    return json.dumps(gpt2_tokenizer().encode(record["prompt"])), record["seed"]


def test_generate_keeps_n_in_flight_writes_every_sample_and_resumes(random_server, tmp_path, capfd):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The road\nA quiet morning\nShe said\n", encoding="utf-8")
    out = tmp_path / "samples.jsonl"

    def args(proxy: FaultProxy) -> list[str]:
        return ["generate", "--server", proxy.base_url, "--concurrency", "4", "--prompts", str(prompts),
                "--n", "4", "--out", str(out), "--max-tokens", "48", "--stop-at", "length", "--seed", "11"]

    with FaultProxy(random_server.port) as proxy:
        assert main(args(proxy)) == 0
        assert proxy.max_in_flight == 4  # never more, and the server got 4 at once
        asked = samples_asked(proxy)
    assert len(asked) == 12  # (a request resent on a connection the server had just closed counts once)
    err = capfd.readouterr().err
    assert "12/12 samples" in err  # the progress bar
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted((r["prompt_index"], r["sample_index"]) for r in records) == [
        (p, k) for p in range(3) for k in range(4)]
    assert all(r["seed"] == 11 + r["sample_index"] and r["model"] == "test-gpt2" for r in records)
    assert all(r["text"] and r["prompt"] == ["The road", "A quiet morning", "She said"][r["prompt_index"]]
               for r in records)

    # An interrupted run: 5 whole lines and half of the sixth made it to disk.
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + lines[5][:20], encoding="utf-8")
    with FaultProxy(random_server.port) as proxy:
        assert main(args(proxy)) == 0
        asked_again = samples_asked(proxy)
    kept = {(r["prompt_index"], r["sample_index"]) for r in map(json.loads, lines[:5])}
    assert len(asked_again) == 7  # only the missing samples were generated
    assert not asked_again & {asked_key(r) for r in records if (r["prompt_index"], r["sample_index"]) in kept}
    assert "resuming: 5 of 12 samples are already in the output" in capfd.readouterr().err
    again = out.read_text(encoding="utf-8").splitlines(keepends=True)
    assert again[:5] == lines[:5]
    resumed = [json.loads(line) for line in again]
    assert len(resumed) == 12
    assert {(r["prompt_index"], r["sample_index"]) for r in resumed} == {(p, k) for p in range(3) for k in range(4)}
    # Each resumed sample keeps its own seed (the texts may still differ from the first
    # run's: llama.cpp batches concurrent requests, and batching changes the arithmetic).
    assert all(r["seed"] == 11 + r["sample_index"] for r in resumed)


def test_generate_stops_at_the_first_failure_with_one_line(random_server, tmp_path, capfd):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("One\nTwo\n", encoding="utf-8")
    out = tmp_path / "samples.jsonl"
    with FaultProxy(random_server.port) as proxy:
        proxy.cut_after = 1200
        code = main(["generate", "--server", proxy.base_url, "--concurrency", "2", "--prompts",
                     str(prompts), "--n", "2", "--out", str(out), "--max-tokens", "64",
                     "--stop-at", "length"])
    assert code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: The connection to ") and "was cut after" in err[-1]
    assert "Traceback" not in "\n".join(err)
