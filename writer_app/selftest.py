"""`writer-app --self-test`: prove an installation works without opening a window.

Loads the bundled demo model in the engine process (the same child process the editor
uses), once on each engine, asks it for a greedy continuation of a fixed English prompt,
and prints what it found. Exit code 0 means: resources are where assets.py looks, the
GGML file validates, ctransformers' native library loads, the model converts to GGUF
(the gguf package) and llama.cpp's loads it (xllamacpp), the spawned engine process runs
(also in a frozen build, where the child is the app's own executable), and the tokenizer
round-trips. On failure it prints one line to stderr and returns 1.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from writer_app import __version__
from writer_app.assets import demo_model_path
from writer_app.engine.backends import ENGINES
from writer_app.engine.ggml import InvalidModelFile, ModelFacts, read_vocab
from writer_app.engine.gguf_convert import gguf_for
from writer_app.engine.process import EngineClient
from writer_app.engine.protocol import EngineError, FinishEvent, FinishReason, GenerationRequest
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.session import LLAMA_CPP
from writer_app.engine.tokenizer import Tokenizer, TokenizerError

PROMPT = "It is a truth universally acknowledged, that a single man in possession of a good fortune,"
# Greedy, so the same model always gives the same suggestion; the length limit only, so
# a model that likes an early full stop still shows a few words.
SETTINGS = SamplingSettings(temperature=0.0, max_tokens=16, seed=0, stop_at=StopAt.LENGTH)
# One thread: the demo model is tiny, and ggml's worker threads spin-wait, so on a busy
# machine two threads were measured ~100x slower than one (11 vs 1200 tokens/s).
THREADS = 1


class SelfTestFailed(Exception):
    """The installation is not working; the message says what is wrong, in one sentence."""


@dataclass(frozen=True)
class SelfTestResult:
    engine: str
    facts: ModelFacts
    engine_pid: int
    suggestion: str
    finish: FinishEvent
    prepare_seconds: float  # converting the model for the engine (llama.cpp: GGUF)
    start_seconds: float  # spawning the engine process
    load_seconds: float  # the child's imports, then validating and loading the model
    total_seconds: float


def run(model_path: Path | None = None) -> int:
    """Run the self-test with the demo model (or model_path) on every engine; print a
    report; 0 = passed."""
    try:
        results = check(model_path or demo_model_path())
    except SelfTestFailed as failure:
        _say(sys.stderr, f"self-test failed: {failure}")
        return 1
    except Exception as error:  # noqa: BLE001 - a self-test reports, never tracebacks
        message = " ".join(str(error).split())  # one line, however the error was written
        _say(sys.stderr, f"self-test failed: unexpected {type(error).__name__}: {message}")
        return 1
    _say(sys.stdout, report(results))
    return 0


def check(model_path: Path) -> list[SelfTestResult]:
    """The checks every engine shares, once; then the model on each engine."""
    if multiprocessing.parent_process() is not None:
        # A spawned engine child that reached the command line instead of engine_main():
        # the frozen entry point forgot multiprocessing.freeze_support().
        raise SelfTestFailed(
            "the self-test is running inside a child process; the engine process started "
            "the app again instead of the engine (multiprocessing.freeze_support() missing)"
        )
    if not model_path.is_file():
        raise SelfTestFailed(f"the demo model is missing: {model_path} (incomplete installation)")
    try:
        tokenizer = Tokenizer.from_vocab(read_vocab(model_path))
    except (InvalidModelFile, TokenizerError) as error:
        raise SelfTestFailed(str(error)) from None
    prompt_ids = tokenizer.encode(PROMPT)
    if tokenizer.decode(prompt_ids) != PROMPT:
        raise SelfTestFailed("the tokenizer does not reproduce the prompt it encoded")
    return [_run_engine(model_path, engine, prompt_ids) for engine in ENGINES]


def _run_engine(model_path: Path, engine: str, prompt_ids: list[int]) -> SelfTestResult:
    if engine != LLAMA_CPP:
        return _run_loaded(model_path, engine, prompt_ids)
    # llama.cpp needs the model converted beside it; the installed one may be read-only,
    # so a copy in a scratch folder is converted (and both are gone afterwards).
    with tempfile.TemporaryDirectory(prefix="writer-app-self-test-") as scratch:
        return _run_loaded(Path(shutil.copy(model_path, scratch)), engine, prompt_ids)


def _run_loaded(model_path: Path, engine: str, prompt_ids: list[int]) -> SelfTestResult:
    client = EngineClient()
    try:
        preparing = time.perf_counter()
        if engine == LLAMA_CPP:
            gguf_for(model_path)
        began = time.perf_counter()
        client.start()
        started = time.perf_counter()
        facts = client.load(model_path, threads=THREADS, engine=engine)
        loaded = time.perf_counter()
        engine_pid = client.pid
        finish = _generate(client, prompt_ids)
    except InvalidModelFile as error:
        raise SelfTestFailed(f"{engine}: {error}") from None
    except (EngineError, OSError) as error:
        raise SelfTestFailed(f"{engine}: the text engine failed: {error}") from None
    finally:
        client.close()
    ended = time.perf_counter()

    if engine_pid is None or engine_pid == os.getpid():
        raise SelfTestFailed(f"{engine}: the model did not run in a separate engine process")
    if finish.reason is FinishReason.CANCELLED or not finish.text.strip():
        raise SelfTestFailed(
            f"{engine}: the model produced no text (finished with {finish.reason.value})"
        )
    return SelfTestResult(
        engine=engine,
        facts=facts,
        engine_pid=engine_pid,
        suggestion=finish.text,
        finish=finish,
        prepare_seconds=began - preparing,
        start_seconds=started - began,
        load_seconds=loaded - started,
        total_seconds=ended - began,
    )


def _generate(client: EngineClient, prompt_ids: list[int]) -> FinishEvent:
    for event in client.generate(GenerationRequest(1, tuple(prompt_ids), SETTINGS, preceding_text=PROMPT)):
        if isinstance(event, FinishEvent):
            return event
    raise SelfTestFailed("the engine ended the suggestion without finishing it")


def report(results: list[SelfTestResult]) -> str:
    facts = results[0].facts
    build = "frozen build" if getattr(sys, "frozen", False) else "Python package"
    lines = [
        f"writer-app {__version__} self-test ({build}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()})",
        f"model:      {facts.path.name}: {facts.quantization}, {facts.n_layer} layers x "
        f"{facts.n_embd}, {facts.parameter_count / 1e6:.1f}M parameters, "
        f"{facts.n_vocab} tokens, context {facts.n_ctx}, {facts.file_size / 1e6:.1f} MB",
        f"prompt:     {PROMPT!r}",
    ]
    for result in results:
        finish = result.finish
        prepared = f"converted in {result.prepare_seconds:.2f} s, " if result.engine == LLAMA_CPP else ""
        lines += [
            f"{result.engine}:",
            f"  engine:     process {result.engine_pid} (app {os.getpid()})",
            f"  suggestion: {result.suggestion!r}",
            f"  timing:     {prepared}engine spawn {result.start_seconds:.2f} s, engine imports + model "
            f"load {result.load_seconds:.2f} s, prompt {finish.prompt_tokens} tokens in "
            f"{finish.prompt_eval_ms:.0f} ms, {finish.generated_tokens} tokens at "
            f"{finish.tokens_per_second:.1f} tokens/s, total {result.total_seconds:.2f} s",
        ]
    return "\n".join([*lines, "self-test passed"])


def _say(stream: TextIO | None, text: str) -> None:
    # A windowed frozen app on Windows has no console: sys.stdout/sys.stderr are None.
    if stream is not None:
        print(text, file=stream, flush=True)
