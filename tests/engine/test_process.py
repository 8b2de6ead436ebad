"""The engine process end to end: real GGML files, real ctransformers in the child."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.gpt2_vocab import gpt2_vocab
from tests.support.models import GPT2_LARGE_SHAPE, phrase_model, random_gpt2
from tests.support.reference import read_weights, reference_logits
from writer_app.engine.ggml import InvalidModelFile
from writer_app.engine.process import EngineClient, EngineClosed, EngineCrashed
from writer_app.engine.protocol import (
    EngineError,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    InvalidTokenError,
    NoModelLoaded,
    TokenEvent,
)
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.tokenizer import Tokenizer

CAT = "The cat sat on the mat. Then it slept all day!"
SNOW = "Snow fell softly\nover hills"
WEIGHT_TYPES = ["f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_tokens=32)
LONG = SamplingSettings(
    temperature=1.0, top_k=0, top_p=1.0, max_tokens=256, stop_at=StopAt.LENGTH, seed=1
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine-models")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_vocab(gpt2_vocab())


@pytest.fixture(scope="module")
def cat_model(models) -> Path:
    return phrase_model(models / "phrases-q8_0.bin", [CAT, SNOW], ftype="q8_0")


@pytest.fixture(scope="module")
def random_model(models) -> Path:
    return random_gpt2(
        models / "random-f16.bin", n_layer=2, n_embd=64, n_head=4, n_ctx=512, ftype="f16", seed=11
    )


@pytest.fixture(scope="module")
def engine(cat_model):
    """One engine for the tests that leave it healthy (spawning costs a second)."""
    with EngineClient() as client:
        client.load(cat_model)
        yield client


@pytest.fixture
def own_engine():
    """An engine a test may kill or close."""
    client = EngineClient()
    client.start()
    yield client
    client.close()


def ask(request_id: int, prompt_ids, settings: SamplingSettings, **kwargs) -> GenerationRequest:
    return GenerationRequest(request_id, tuple(prompt_ids), settings, **kwargs)


def collect(events) -> tuple[list[TokenEvent], FinishEvent]:
    *tokens, finish = list(events)
    assert isinstance(finish, FinishEvent)
    return tokens, finish


def suggestion(tokens: list[TokenEvent], finish: FinishEvent) -> str:
    text = "".join(event.text for event in tokens) + finish.tail_text
    assert text == finish.text
    return text


def process_gone(pid: int) -> bool:
    """True once the process no longer exists, not even as a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return True
    return state not in ("R", "S", "D", "Z", "T")


def wait_until(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # a child process, not Qt: nothing to process meanwhile


# ---- the full path: write -> validate -> engine process -> stream -> detokenize --------


@pytest.mark.parametrize("ftype", WEIGHT_TYPES)
def test_phrase_model_continues_its_phrase_for_every_weight_type(
    own_engine, models, tokenizer, ftype
):
    path = phrase_model(models / f"cat-{ftype}.bin", [CAT], ftype=ftype)
    facts = own_engine.load(path)
    assert facts.quantization == ftype
    prompt = "The cat sat"
    tokens, finish = collect(
        own_engine.generate(ask(1, tokenizer.encode(prompt), GREEDY.with_changes(stop_at="length")))
    )
    assert suggestion(tokens, finish) == CAT[len(prompt) :]
    assert finish.reason is FinishReason.EOS
    assert tokenizer.decode([event.token_id for event in tokens]) == CAT[len(prompt) :]


def test_sentence_rule_ends_the_suggestion_at_the_period(engine, tokenizer):
    tokens, finish = collect(
        engine.generate(ask(7, tokenizer.encode("The cat sat"), GREEDY, preceding_text="The cat sat"))
    )
    assert suggestion(tokens, finish) == " on the mat."
    assert finish.reason is FinishReason.STOP and finish.request_id == 7
    assert all(event.request_id == 7 for event in tokens)


def test_paragraph_rule_ends_at_the_newline(engine, tokenizer):
    settings = GREEDY.with_changes(stop_at=StopAt.PARAGRAPH)
    tokens, finish = collect(engine.generate(ask(2, tokenizer.encode("Snow"), settings)))
    assert suggestion(tokens, finish) == " fell softly"
    assert finish.reason is FinishReason.STOP
    # Sentence ends do not stop a paragraph.
    tokens, finish = collect(engine.generate(ask(3, tokenizer.encode("The cat"), settings)))
    assert suggestion(tokens, finish) == " sat on the mat. Then it slept all day!"
    assert finish.reason is FinishReason.EOS


def test_sampling_follows_a_confident_model(engine, tokenizer):
    settings = SamplingSettings(temperature=1.0, top_k=0, seed=5, stop_at=StopAt.SENTENCE)
    tokens, finish = collect(engine.generate(ask(4, tokenizer.encode("The cat sat"), settings)))
    assert suggestion(tokens, finish) == " on the mat."


def test_next_token_probabilities(engine, tokenizer):
    best, *others = engine.next_token_probs(tokenizer.encode("The cat sat on the"), 1.0, 3)
    token_id, text, probability = best
    assert text == " mat" and token_id == tokenizer.encode(" mat")[0]
    assert probability > 0.99
    assert len(others) == 2 and all(alt.probability < 0.01 for alt in others)


def test_probabilities_stream_with_the_tokens(engine, tokenizer):
    tokens, _ = collect(
        engine.generate(ask(5, tokenizer.encode("The cat sat"), GREEDY, with_probs=True, top_n=2))
    )
    assert tokens and all(event.probability > 0.99 for event in tokens)
    assert all(event.alternatives[0].token_id == event.token_id for event in tokens)


def test_prewarm_makes_the_prompt_free(engine, tokenizer):
    prompt = tokenizer.encode("Then it slept all")
    assert engine.prewarm(prompt, max_tokens=GREEDY.max_tokens) == len(prompt)
    _, finish = collect(engine.generate(ask(6, prompt, GREEDY)))
    assert finish.evaluated_tokens == 0 and finish.prompt_tokens == len(prompt)


def test_long_prompt_is_windowed_inside_the_context(engine, tokenizer):
    filler = tokenizer.encode(" lorem ipsum dolor sit amet," * 200)
    prompt = filler + tokenizer.encode(" The cat sat")
    tokens, finish = collect(engine.generate(ask(8, prompt, GREEDY)))
    assert finish.window_start > 0
    assert finish.prompt_tokens == len(prompt) - finish.window_start
    assert finish.prompt_tokens + finish.generated_tokens <= engine.facts.n_ctx
    assert suggestion(tokens, finish) == " on the mat."


# ---- against the numpy reference, and sampling ---------------------------------------


def test_greedy_equals_the_reference_argmax_chain(own_engine, random_model):
    own_engine.load(random_model)
    weights = read_weights(random_model)  # dequantized from the file as ggml stores it
    prompt = [464, 3797, 3332, 319]
    tokens, _ = collect(
        own_engine.generate(ask(1, prompt, GREEDY.with_changes(max_tokens=6, stop_at=StopAt.LENGTH)))
    )
    chain = list(prompt)
    for _ in range(6):
        logits = reference_logits(weights, chain, n_head=4)[-1]
        runner_up, best = np.sort(logits)[-2:]
        assert best - runner_up > 1e-3, "reference too close to a tie to compare"
        chain.append(int(np.argmax(logits)))
    assert [event.token_id for event in tokens] == chain[len(prompt) :]


def test_seeds_reproduce_and_top_k_off_still_samples(own_engine, random_model):
    own_engine.load(random_model)
    settings = LONG.with_changes(max_tokens=10, seed=123)
    prompt = [464, 3797]

    def ids(s: SamplingSettings) -> list[int]:
        return [event.token_id for event in collect(own_engine.generate(ask(1, prompt, s)))[0]]

    first = ids(settings)
    assert ids(settings) == first  # same seed, settings and prompt: same tokens
    others = {tuple(ids(settings.with_changes(seed=seed))) for seed in (1, 2, 3)}
    assert len(others | {tuple(first)}) == 4  # top_k 0 is "off", not greedy
    assert len(ids(settings.with_changes(max_tokens=3))) == 3  # max tokens holds


# ---- isolation, cancellation, crashes ------------------------------------------------------


def test_bad_files_are_rejected_before_the_engine_sees_them(
    own_engine, cat_model, tmp_path, tokenizer
):
    own_engine.load(cat_model)
    pid = own_engine.pid
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + os.urandom(4096))  # would segfault ctransformers
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(cat_model.read_bytes()[:-1000])  # would load with garbage
    for bad in (gguf, truncated):
        with pytest.raises(InvalidModelFile):
            own_engine.load(bad)
    assert own_engine.running and own_engine.pid == pid
    _, finish = collect(own_engine.generate(ask(1, tokenizer.encode("The cat sat"), GREEDY)))
    assert finish.text == " on the mat."  # the previous model is still there


def test_an_unknown_engine_is_refused_and_the_model_stays(own_engine, cat_model, tokenizer):
    own_engine.load(cat_model)
    pid = own_engine.pid
    with pytest.raises(EngineError, match="no engine called 'nonesuch'"):
        own_engine.load(cat_model, engine="nonesuch")
    assert own_engine.pid == pid
    _, finish = collect(own_engine.generate(ask(1, tokenizer.encode("The cat sat"), GREEDY)))
    assert finish.text == " on the mat."


@pytest.mark.parametrize("bad", [[-1], [50257], [10**12], [464, 3.0], [True]])
def test_invalid_token_ids_never_reach_the_engine(engine, bad):
    pid = engine.pid
    with pytest.raises(InvalidTokenError):
        engine.generate(ask(1, bad, GREEDY))
    with pytest.raises(InvalidTokenError):
        engine.next_token_probs(bad, 1.0, 3)
    assert engine.running and engine.pid == pid


def test_generating_before_loading_is_a_clear_error(own_engine):
    with pytest.raises(NoModelLoaded):
        own_engine.generate(ask(1, [464], GREEDY))


def test_cancel_from_another_thread_stops_within_a_token(own_engine, slow_model):
    own_engine.load(slow_model)  # tokens slow enough that this reader keeps up with them
    third_token = threading.Event()
    canceller = threading.Thread(target=lambda: (third_token.wait(30), own_engine.cancel()))
    canceller.start()
    seen_at_cancel = None
    tokens = []
    for event in own_engine.generate(ask(1, [464, 3797], LONG)):
        if isinstance(event, FinishEvent):
            finish = event
            break
        tokens.append(event)
        if len(tokens) == 3:
            third_token.set()
            canceller.join()
            seen_at_cancel = len(tokens)
    assert finish.reason is FinishReason.CANCELLED
    # By the engine's own count: at most the token it was working on when cancel() landed.
    assert seen_at_cancel <= finish.generated_tokens <= seen_at_cancel + 1
    assert len(tokens) == finish.generated_tokens


def test_abandoned_generation_is_cancelled_and_drained(own_engine, random_model):
    own_engine.load(random_model)
    stream = own_engine.generate(ask(1, [464, 3797], LONG))
    next(stream)
    stream.close()
    tokens, finish = collect(own_engine.generate(ask(2, [464], LONG.with_changes(max_tokens=3))))
    assert finish.request_id == 2 and len(tokens) == 3


def test_killed_engine_raises_crashed_and_restarts(own_engine, cat_model, tokenizer):
    own_engine.load(cat_model)
    old_pid = own_engine.pid
    stream = own_engine.generate(ask(1, tokenizer.encode("The"), LONG))
    os.kill(old_pid, signal.SIGKILL)
    with pytest.raises(EngineCrashed, match="SIGKILL") as crash:
        list(stream)
    assert crash.value.exitcode == -signal.SIGKILL
    assert process_gone(old_pid)  # reaped, not a zombie
    with pytest.raises(EngineCrashed):  # no silent restart by default
        own_engine.next_token_probs([464], 1.0, 3)
    facts = own_engine.restart()
    assert facts is not None and facts.path == cat_model and own_engine.pid != old_pid
    tokens, finish = collect(own_engine.generate(ask(2, tokenizer.encode("The cat sat"), GREEDY)))
    assert finish.text == " on the mat."


def test_progress_shows_a_working_engine_and_kill_ends_a_stopped_one(own_engine, slow_model):
    own_engine.load(slow_model)
    stream = own_engine.generate(ask(1, [464, 3797], LONG))
    before = own_engine.progress
    next(stream)
    next(stream)
    assert own_engine.progress > before  # it moves between tokens
    pid = own_engine.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(0.2)  # a child process, not Qt: let a token in progress reach the stop
        stopped_at = own_engine.progress
        time.sleep(0.3)
        assert own_engine.progress == stopped_at  # a stopped engine shows no progress
        # kill() from another thread ends the stream this thread is blocked reading.
        threading.Timer(0.2, own_engine.kill).start()
        with pytest.raises(EngineCrashed, match="SIGKILL"):
            list(stream)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert process_gone(pid)
    own_engine.restart()
    _, finish = collect(own_engine.generate(ask(2, [464], LONG.with_changes(max_tokens=3))))
    assert finish.generated_tokens == 3


def test_auto_restart_after_a_crash_while_idle(cat_model, tokenizer):
    with EngineClient(auto_restart=True) as client:
        client.load(cat_model)
        old_pid = client.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: not client.running)
        best = client.next_token_probs(tokenizer.encode("The cat sat on the"), 1.0, 1)[0]
        assert best.text == " mat"
        assert client.pid != old_pid and process_gone(old_pid)


@pytest.mark.timeout(60)
def test_close_with_a_generation_in_flight_does_not_hang(random_model):
    client = EngineClient()
    client.start()
    client.load(random_model)
    pid = client.pid
    stream = client.generate(ask(1, [464, 3797], LONG))
    next(stream)
    client.close(timeout=5.0)
    assert not client.running and process_gone(pid)
    with pytest.raises(EngineClosed):
        client.generate(ask(2, [464], LONG))


@pytest.mark.timeout(60)
def test_close_from_another_thread_ends_the_stream(random_model):
    client = EngineClient()
    client.start()
    client.load(random_model)
    first_token = threading.Event()
    finishes: list[FinishEvent] = []

    def worker() -> None:
        for event in client.generate(ask(1, [464], LONG.with_changes(max_tokens=256))):
            first_token.set()
            if isinstance(event, FinishEvent):
                finishes.append(event)

    thread = threading.Thread(target=worker)
    thread.start()
    assert first_token.wait(30)
    client.close(timeout=5.0)
    thread.join(30)
    assert not thread.is_alive()
    assert finishes and finishes[0].reason is FinishReason.CANCELLED


def test_the_app_process_never_imports_ctransformers_or_qt_in_the_engine(cat_model):
    script = f"""
import sys
from writer_app.engine.process import EngineClient
from writer_app.engine.protocol import GenerationRequest
from writer_app.engine.sampling import SamplingSettings
with EngineClient() as client:
    client.load({str(cat_model)!r})
    events = list(client.generate(GenerationRequest(1, (464,), SamplingSettings(max_tokens=2))))
assert "ctransformers" not in sys.modules, "ctransformers imported in the app process"
assert not any(name.startswith("PySide6") for name in sys.modules), "Qt imported"
print(len(events))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 2


# ---- gpt2-large at full context ------------------------------------------------------------


def large_model() -> Path:
    """A random gpt2-large-shaped q4_0 file, built once (~40 s) and kept under /tmp."""
    cache = Path(
        os.environ.get(
            "WRITER_APP_TEST_MODEL_CACHE", Path(tempfile.gettempdir()) / "writer-app-test-models"
        )
    )
    path = cache / "gpt2-large-q4_0-seed0.bin"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        shape = GPT2_LARGE_SHAPE
        random_gpt2(
            partial,
            n_layer=shape.n_layer,
            n_embd=shape.n_embd,
            n_head=shape.n_head,
            n_ctx=shape.n_ctx,
            ftype="q4_0",
            seed=0,
        )
        os.replace(partial, path)
    return path


def _evaluate_without_the_batch_policy(path: str) -> None:
    """Runs in a spawned child: one 32-token batch, which gpt2.cc's buffer cannot hold."""
    from writer_app.engine import backend

    backend.EVAL_BUFFER_SAFETY = 100.0  # switch the policy off
    backend.CTransformersBackend.load(path).evaluate([11] * 32)


def _prewarm_the_context_in_batches(path: str, results: multiprocessing.Queue) -> None:
    """Runs in a spawned child: a ~1,020-token prompt prewarmed in the batches the policy
    allows (as the app prewarms), then one token generated from the hot cache."""
    from writer_app.engine.backend import CTransformersBackend

    model = CTransformersBackend.load(path)
    batches: list[int] = []
    evaluate_chunk = model._eval_chunk

    def counted(chunk: list[int]) -> None:
        batches.append(len(chunk))
        evaluate_chunk(chunk)

    model._eval_chunk = counted  # type: ignore[method-assign]
    prompt = [(i * 7919) % 50000 for i in range(model.n_ctx - 5)]  # all the window holds
    evaluated = model.prewarm(prompt, max_tokens=1, should_cancel=lambda: False)
    prewarm_batches = list(batches)
    settings = SamplingSettings(temperature=0.0, max_tokens=1, stop_at=StopAt.LENGTH)
    events = list(model.generate(GenerationRequest(1, tuple(prompt), settings)))
    results.put((model.n_ctx, len(prompt), evaluated, prewarm_batches, events[-1]))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpt2_large_crashes_without_the_batch_policy():
    """The danger the policy avoids is real (and a native crash stays in its process)."""
    child = multiprocessing.get_context("spawn").Process(
        target=_evaluate_without_the_batch_policy, args=(str(large_model()),)
    )
    child.start()
    child.join(240)
    assert child.exitcode is not None and child.exitcode < 0  # killed by a signal


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpt2_large_fills_its_whole_context_in_batches_without_crashing():
    """Batches of 8 crash gpt2-large near 950 tokens of context, 16 near 544; the batch
    policy must get a prewarm (in batches) and a generation all the way to the end of the
    context. Runs in a child process, so a crash fails this test instead of killing
    pytest."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(
        target=_prewarm_the_context_in_batches, args=(str(large_model()), results)
    )
    child.start()
    n_ctx, prompt_tokens, evaluated, batches, finish = results.get(timeout=840)
    child.join(30)
    assert child.exitcode == 0
    assert n_ctx == 1024 and prompt_tokens == 1019
    assert evaluated == sum(batches) == prompt_tokens
    # Batched, as the app prewarms, up to the last tokens: the buffer limit is exercised.
    assert max(batches) > 1 and len(batches) < prompt_tokens / 2
    assert max(batches[-8:]) > 1
    # The generation found the prompt cached and reached the end of the usable context.
    assert finish.evaluated_tokens == 0 and finish.window_start == 0
    assert finish.prompt_tokens + finish.generated_tokens == n_ctx - 4
