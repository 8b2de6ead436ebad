"""The inference service with the real worker thread, engine process and generated models.

Also home of two generated models the sampling tests share (tests/ui uses them too):
a small random GPT-2, and a "table model" whose next-token logits after a few chosen
tokens are set by hand, so a sampling rule can be made to decide visibly between them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CAT_PHRASE, OWL_PHRASE
from tests.support.gpt2_vocab import encode, gpt2_vocab
from tests.support.models import random_gpt2, random_weights
from tests.support.reference import reference_logits
from writer_app.engine.ggml import validate_model_file
from writer_app.engine.ggml_writer import write_gpt2
from writer_app.engine.memory import app_resident_bytes
from writer_app.engine.protocol import FinishEvent
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.session import TextSession
from writer_app.services.inference import (
    STEP_CHOICES,
    EngineState,
    InferenceService,
    engine_threads,
)
from writer_app.services.suggestion import TokenStep
from writer_app.services.suggestion_controller import SuggestionController, SuggestionPreferences

# ---- shared generated models ------------------------------------------------------------

RANDOM_SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_ctx": 128}
RANDOM_SEED = 3
TABLE_SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_ctx": 64}
# After the key token, the table model gives the listed next tokens these logits and
# every other token BASE_LOGIT (so ~0 probability at any temperature up to 2).
TABLE = {
    " sat": {" mat": 3.0, " rug": 2.5},  # a repeated " mat" may lose to " rug"
    " slept": {" cat": -1.0, " dog": -1.5},  # all negative: the penalty's other branch
    " ran": {" home": 1.0, " away": 0.5, " off": 0.0, " out": -0.5},  # a spread to sample
    # ...and on from " home", so a sampled suggestion reads like words (for screenshots).
    " home": {" before": 1.5, " to": 1.0, ".": 0.8, " again": 0.2},
    " before": {" dark": 2.0, " dinner": 1.5, " the": 0.5},
    " dark": {".": 3.0, ",": 1.5, " fell": 0.5},
}
BASE_LOGIT = -30.0


def token(word: str) -> int:
    (token_id,) = encode(word)
    return token_id


def table_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2 weights whose logits after each TABLE key are (nearly) that row.

    Each key token embeds along its own zero-mean unit direction u (scaled so layer norm
    keeps it); ln_f adds a further direction b, long (sqrt(n_embd)) so that the layers'
    noise along it barely shifts BASE_LOGIT. The untied head gives every token
    BASE_LOGIT along b, and each listed token (logit - BASE_LOGIT) along u of its key.
    The transformer layers keep GPT-2-like noise: the reference forward, not this
    construction, says what the exact logits are.
    """
    shape = TABLE_SHAPE
    e = shape["n_embd"]
    noise = random_weights(n_layer=shape["n_layer"], n_embd=e, n_ctx=shape["n_ctx"], seed=seed)
    weights = {name: noise[name] for name in noise if name != "transformer.wte.weight"}
    rng = np.random.default_rng(seed)
    columns = rng.standard_normal((e, len(TABLE) + 1))
    columns -= columns.mean(axis=0)
    directions, _ = np.linalg.qr(columns)  # orthonormal and still zero-mean
    *keys, bias = directions.T
    n_vocab = len(gpt2_vocab())
    wte = rng.standard_normal((n_vocab, e)).astype(np.float32)
    head = np.tile((BASE_LOGIT / np.sqrt(e) * bias).astype(np.float32), (n_vocab, 1))
    for u, (key, row) in zip(keys, TABLE.items(), strict=True):
        wte[token(key)] = u * np.sqrt(e)
        for word, logit in row.items():
            head[token(word)] += ((logit - BASE_LOGIT) / np.sqrt(e) * u).astype(np.float32)
    weights["transformer.wte.weight"] = wte
    weights["lm_head.weight"] = head
    weights["transformer.ln_f.weight"] = np.ones(e, dtype=np.float32)
    weights["transformer.ln_f.bias"] = (np.sqrt(e) * bias).astype(np.float32)
    return weights


def shared_model(tmp_path_factory, kind: str) -> Path:
    """The "random" or "table" model, written once per test session."""
    folder = tmp_path_factory.getbasetemp() / "sampling-models"
    folder.mkdir(exist_ok=True)
    path = folder / f"{kind}-f32.bin"
    if not path.exists():
        if kind == "random":
            random_gpt2(path, **RANDOM_SHAPE, seed=RANDOM_SEED)
        else:
            write_gpt2(path, table_weights(), vocab=gpt2_vocab(), n_ctx=TABLE_SHAPE["n_ctx"],
                       n_head=TABLE_SHAPE["n_head"], ftype="f32")
    return path


def random_reference_logits(token_ids: list[int]) -> np.ndarray:
    """The random model's next-token logits after `token_ids`, from the numpy forward."""
    weights = random_weights(
        n_layer=RANDOM_SHAPE["n_layer"], n_embd=RANDOM_SHAPE["n_embd"],
        n_ctx=RANDOM_SHAPE["n_ctx"], seed=RANDOM_SEED,
    )
    return reference_logits(weights, token_ids, n_head=RANDOM_SHAPE["n_head"])[-1]


def table_reference_logits(token_ids: list[int]) -> np.ndarray:
    return reference_logits(table_weights(), token_ids, n_head=TABLE_SHAPE["n_head"])[-1]


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits / (temperature if temperature > 0 else 1.0)
    scaled = np.exp(scaled - scaled.max())
    return scaled / scaled.sum()


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    return shared_model(tmp_path_factory, "random")


# ---- the service ----------------------------------------------------------------------------

GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_tokens=32)
ENDLESS = SamplingSettings(
    temperature=1.0, top_k=0, top_p=1.0, max_tokens=256, stop_at=StopAt.LENGTH
)


class Recorder:
    """Collects what the service reports, per request id."""

    def __init__(self, service: InferenceService) -> None:
        self.text: dict[int, str] = {}
        self.finished: dict[int, str] = {}
        self.steps: dict[int, list[TokenStep]] = {}
        self.probabilities: dict[int, tuple] = {}
        self.probe_failures: list[tuple[int, str]] = []
        self.failures: list[tuple[int, str]] = []
        self.states: list[str] = []
        service.token.connect(lambda rid, piece: self.text.update({rid: self.text.get(rid, "") + piece}))
        service.finished.connect(lambda rid, reason: self.finished.update({rid: reason}))
        service.step.connect(lambda rid, step: self.steps.setdefault(rid, []).append(step))
        service.probabilities.connect(lambda pid, found: self.probabilities.update({pid: found}))
        service.probabilitiesFailed.connect(
            lambda pid, message: self.probe_failures.append((pid, message))
        )
        service.failed.connect(lambda rid, message: self.failures.append((rid, message)))
        service.stateChanged.connect(lambda state, detail: self.states.append(state))


@pytest.fixture
def service(qtbot):
    service = InferenceService(threads=1)
    yield service
    service.shutdown()


def load(qtbot, service: InferenceService, path) -> None:
    with qtbot.waitSignal(service.modelLoaded, timeout=60_000):
        service.load_model(path)
    # ...and the worker has adopted it (tests reach into the worker's session).
    qtbot.waitUntil(lambda: service._worker.session is not None
                    and service._worker.session.path == Path(path), timeout=10_000)


def test_suggestion_streams_the_models_continuation(qtbot, service, cat_model):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.request(1, "The cat sat", GREEDY, seed=3)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.text[1] == " on the mat."
    assert record.finished[1] == "stop"
    assert EngineState.THINKING.value in record.states
    assert record.states[-1] == EngineState.IDLE.value


class EngineReads:
    """What the worker reads from the engine: a pass-through around the real session's
    generate() that counts token events and keeps the engine's own FinishEvents, and
    may act at the moment the worker has read a given number of tokens."""

    def __init__(self, service: InferenceService) -> None:
        self.tokens = 0
        self.finishes: list[FinishEvent] = []
        self.at_token: dict[int, Callable[[], None]] = {}
        session = service._worker.session
        real = session.generate

        def generate(*args, **kwargs):
            self.tokens = 0
            for event in real(*args, **kwargs):
                if isinstance(event, FinishEvent):
                    self.finishes.append(event)
                else:
                    self.tokens += 1
                    self.at_token.pop(self.tokens, lambda: None)()
                yield event

        session.generate = generate


def test_cancel_stops_a_long_generation_within_one_token(qtbot, service, slow_model):
    record = Recorder(service)
    load(qtbot, service, slow_model)
    reads = EngineReads(service)
    # Cancelled on the worker thread the moment it has read 3 tokens, so the count the
    # engine reports can be compared with what was generated when the cancel came.
    reads.at_token[3] = lambda: service.cancel(1)
    service.request(1, "Once upon a time", ENDLESS, seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.finished[1] == "cancelled"
    (finish,) = reads.finishes
    # At most the token the engine was working on when the cancel landed.
    assert 3 <= finish.generated_tokens <= 3 + 1


def test_a_superseded_request_never_runs(qtbot, service, slow_model):
    record = Recorder(service)
    load(qtbot, service, slow_model)
    endless = SamplingSettings(temperature=1.0, top_k=0, max_tokens=256, stop_at=StopAt.LENGTH)
    service.request(1, "Once upon a time", endless, seed=1)
    qtbot.waitUntil(lambda: 1 in record.text, timeout=30_000)  # the worker is busy...
    service.request(2, "Once upon a time", endless, seed=2)  # ...so these two queue up
    service.request(3, "Once upon a time", endless.with_changes(max_tokens=4), seed=3)
    service.cancel(1)
    qtbot.waitUntil(lambda: 3 in record.finished, timeout=30_000)
    assert record.finished[1] == "cancelled"
    assert record.finished[2] == "cancelled"  # superseded by 3 before it started
    assert 2 not in record.text
    assert record.finished[3] == "length" and record.text[3]

def test_request_without_a_model_fails_clearly(qtbot, service):
    with qtbot.waitSignal(service.failed, timeout=10_000) as blocker:
        service.request(1, "Hello", GREEDY, seed=1)
    assert blocker.args == [1, "No model is loaded yet."]


def test_a_bad_model_file_is_reported_not_raised(qtbot, service, tmp_path):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"GGUF" + os.urandom(64))
    with qtbot.waitSignal(service.modelFailed, timeout=10_000) as blocker:
        service.load_model(bad)
    assert "GGUF" in blocker.args[1]


class WriterView:
    """The suggestion controller on the real service: what the writer is shown."""

    def __init__(self, service: InferenceService, settings: SamplingSettings) -> None:
        self.controller = SuggestionController(
            service, settings, SuggestionPreferences(auto_trigger=False)
        )
        self.errors: list[str] = []
        self.controller.errorOccurred.connect(self.errors.append)
        self._revision = 0

    def ask(self, text: str) -> None:
        """Type `text` into an empty page and press Ctrl+Space."""
        self._revision += 1
        self.controller.update_context(text, "", len(text), self._revision)
        assert self.controller.trigger()


KILL_NOTICE = (
    "The suggestion engine stopped unexpectedly (killed by signal SIGKILL); it is "
    "restarting, your text is safe."
)


def test_a_killed_engine_is_one_plain_sentence_and_restarts(qtbot, service, slow_model):
    record = Recorder(service)
    load(qtbot, service, slow_model)
    writer = WriterView(service, ENDLESS)
    writer.ask("Once upon a time")
    qtbot.waitUntil(lambda: bool(record.text), timeout=30_000)  # generating now
    old_pid = service._worker.session.client.pid
    os.kill(old_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: bool(writer.errors), timeout=30_000)
    assert writer.errors == [KILL_NOTICE]
    assert EngineState.RESTARTING.value in record.states
    qtbot.waitUntil(lambda: record.states[-1] == EngineState.IDLE.value, timeout=30_000)
    assert not writer.controller.busy
    # A new engine process with the model reloaded answers the next request.
    assert service._worker.session.client.pid != old_pid
    service.request(100, "The cat sat", GREEDY.with_changes(max_tokens=3), seed=1)
    qtbot.waitUntil(lambda: 100 in record.finished, timeout=30_000)
    assert record.finished[100] == "length" and record.text[100]


def test_an_engine_killed_while_idle_is_restarted_silently_for_the_next_request(
    qtbot, service, cat_model
):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    client = service._worker.session.client
    old_pid = client.pid
    os.kill(old_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: not client.running, timeout=10_000)
    service.request(1, "The cat sat", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.text[1] == " on the mat."  # nothing was lost, so nothing to say
    assert record.failures == [] and client.pid != old_pid


def test_any_failure_in_the_worker_ends_each_request_with_a_message(
    qtbot, service, cat_model, monkeypatch
):
    """Whatever goes wrong on the worker thread ends the request with one sentence. (A
    WindowError from a model with a 5-token context used to escape the worker and leave
    the writer's suggestion busy for good; the validator now refuses such files, so a
    planted bug in the prompt path stands in for the next unforeseen failure.)"""
    record = Recorder(service)
    load(qtbot, service, cat_model)
    writer = WriterView(service, GREEDY)

    def planted_bug(self, text):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(TextSession, "prompt_ids", planted_bug)
    failed = "The suggestion engine failed unexpectedly (RuntimeError: planted bug)."
    prewarm_id = service.prepare("The cat", GREEDY)
    writer.ask("The cat sat")
    qtbot.waitUntil(lambda: bool(writer.errors), timeout=30_000)
    assert writer.errors == [failed]
    assert not writer.controller.busy
    assert (-1, failed) in record.failures  # the prewarm ended with a message too
    assert prewarm_id not in record.finished
    service.request_probabilities(1, "The cat", 1.0, 5)
    qtbot.waitUntil(lambda: bool(record.probe_failures), timeout=30_000)
    assert record.probe_failures == [(1, failed)]
    # The next request is answered too: by the same message, then, the bug gone, with text.
    writer.ask("The cat sat on")
    qtbot.waitUntil(lambda: len(writer.errors) == 2, timeout=30_000)
    assert writer.errors[1] == failed and not writer.controller.busy
    monkeypatch.undo()
    writer.ask("The cat sat")
    qtbot.waitUntil(lambda: not writer.controller.busy, timeout=30_000)
    assert writer.controller.suggestion.text == " on the mat."


def test_a_stopped_engine_is_reported_not_responding_and_a_restart_recovers(qtbot, slow_model):
    service = InferenceService(threads=1, not_responding_seconds=1.0)
    try:
        record = Recorder(service)
        load(qtbot, service, slow_model)
        writer = WriterView(service, ENDLESS)
        # A cold prompt of ~700 tokens goes one token per call: busy, but progressing.
        writer.ask(" ".join(f"word{i}" for i in range(250)))
        qtbot.waitUntil(lambda: bool(record.text), timeout=60_000)
        assert EngineState.NOT_RESPONDING.value not in record.states
        pid = service._worker.session.client.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            with qtbot.waitSignal(service.notResponding, timeout=10_000):
                pass
            assert record.states[-1] == EngineState.NOT_RESPONDING.value
            assert writer.controller.busy and not writer.errors
            os.kill(pid, signal.SIGCONT)  # it wakes up: back to work, and it says so
            with qtbot.waitSignal(service.respondingAgain, timeout=10_000):
                pass
            assert record.states[-1] == EngineState.THINKING.value
            os.kill(pid, signal.SIGSTOP)
            with qtbot.waitSignal(service.notResponding, timeout=10_000):
                pass
            service.restart_engine()  # what the writer's "Restart" does
            qtbot.waitUntil(lambda: bool(writer.errors), timeout=30_000)
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed by the restart, as it should be
                os.kill(pid, signal.SIGCONT)
        assert writer.errors == ["The suggestion engine is restarting; your text is safe."]
        qtbot.waitUntil(lambda: record.states[-1] == EngineState.IDLE.value, timeout=30_000)
        assert not writer.controller.busy
        assert service._worker.session.client.pid != pid
        service.request(100, "Once upon a time", GREEDY.with_changes(max_tokens=3), seed=1)
        qtbot.waitUntil(lambda: 100 in record.finished, timeout=30_000)
        assert record.finished[100] == "length"
    finally:
        service.shutdown()


def test_switching_models_keeps_suggesting_until_the_new_one_is_ready(
    qtbot, service, cat_model, owl_model
):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.load_model(owl_model)  # loads in the background, in a new engine process
    service.request(1, "The cat sat", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.text[1] == " on the mat."  # answered by the old model
    qtbot.waitUntil(lambda: not service.loading, timeout=60_000)
    assert service.facts.n_embd == 96
    service.request(2, "An owl", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 2 in record.finished, timeout=30_000)
    assert record.text[2] == OWL_PHRASE.removeprefix("An owl")


def test_a_newer_prepare_stops_a_prewarm_still_running(qtbot, service, slow_model):
    load(qtbot, service, slow_model)
    reports: dict[int, int] = {}
    service.prewarmed.connect(lambda pid, evaluated: reports.update({pid: evaluated}))
    long_text = " ".join(f"word{i}" for i in range(250))  # a cold prompt of ~700 tokens
    first = service.prepare(long_text, GREEDY)
    qtbot.waitUntil(lambda: service.prewarms.active == first, timeout=30_000)
    second = service.prepare("A short, different text.", GREEDY)
    qtbot.waitUntil(lambda: second in reports, timeout=30_000)
    full = len(service._worker.session.prompt_ids(long_text))
    assert full < 1024 - GREEDY.max_tokens - 4  # the whole prompt fits: nothing windowed
    assert reports[first] < full  # stopped part-way, not finished
    assert reports[second] > 0


def test_a_memory_budget_caps_the_loaded_models_context(qtbot, service, tmp_path):
    path = random_gpt2(tmp_path / "wide.bin", n_layer=2, n_embd=64, n_head=4, n_ctx=512)
    service.memory_budget_bytes = app_resident_bytes(validate_model_file(path), 300)
    record = Recorder(service)
    load(qtbot, service, path)
    assert service.context_tokens == 288  # the longest multiple of 32 within the budget
    service.request(1, "a long afternoon of rain " * 200, GREEDY.with_changes(max_tokens=4), 1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.finished[1] == "length"
    service.memory_budget_bytes = None
    load(qtbot, service, path)
    assert service.context_tokens == 512


def test_an_unexpected_error_while_loading_is_reported_not_left_loading(
    qtbot, service, cat_model, monkeypatch
):
    def broken_open(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(TextSession, "open", broken_open)
    with qtbot.waitSignal(service.modelFailed, timeout=30_000) as failure:
        service.load_model(cat_model)
    assert "could not be loaded" in failure.args[1] and "nobody expected" in failure.args[1]
    assert not service.loading


@pytest.mark.parametrize(
    ("asked", "cpus", "used"), [(1, 2, 1), (2, 2, 1), (4, 2, 1), (4, 8, 4), (8, 4, 3), (3, 1, 1)]
)
def test_the_engine_always_leaves_one_cpu_to_the_gui(asked, cpus, used):
    assert engine_threads(asked, cpus) == used


def test_shutdown_with_a_generation_in_flight_does_not_hang(qtbot, slow_model):
    service = InferenceService(threads=1)
    record = Recorder(service)
    load(qtbot, service, slow_model)
    service.request(1, "Once upon a time", ENDLESS, seed=1)
    qtbot.waitUntil(lambda: 1 in record.text, timeout=30_000)
    pid = service._worker.session.client.pid
    service.shutdown()
    assert not service._worker_thread.isRunning()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)



# ---- token steps, forced tokens, probability probes ------------------------------------------


def test_every_token_comes_with_its_probability_and_the_likeliest_choices(
    qtbot, service, cat_model
):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.step_probabilities = True  # what the visible probability panel asks for
    service.request(1, "The cat sat", GREEDY.with_changes(temperature=0.0), seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    steps = record.steps[1]
    assert [step.token_id for step in steps] == encode(" on the mat.")
    assert "".join(step.text for step in steps) == record.text[1] == " on the mat."
    for step in steps:
        assert len(step.choices) == STEP_CHOICES
        assert step.choices[0].token_id == step.token_id  # greedy took the top choice
        assert step.probability == pytest.approx(step.choices[0].probability)
        assert step.probability > 0.99  # a phrase model is sure of its phrase
        probabilities = [choice.probability for choice in step.choices]
        assert probabilities == sorted(probabilities, reverse=True)


def test_forced_tokens_are_continued_but_not_sent_again(qtbot, service, cat_model):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    forced = tuple(encode(" on the"))
    service.request(1, "The cat sat", GREEDY, seed=1, forced_ids=forced)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.text[1] == " mat."
    # A forced token from the other phrase: the bigram model follows that phrase.
    service.request(2, "The cat sat", GREEDY.with_changes(stop_at=StopAt.LENGTH), seed=1,
                    forced_ids=(token(" softly"),))
    qtbot.waitUntil(lambda: 2 in record.finished, timeout=30_000)
    assert record.text[2] == "\nover quiet hills"


def test_probabilities_are_the_softmax_of_the_reference_logits(qtbot, service, random_model):
    record = Recorder(service)
    load(qtbot, service, random_model)
    prompt = "The cat sat on the"
    reference = random_reference_logits(encode(prompt))
    for probe_id, temperature in ((1, 0.7), (2, 1.6), (3, 0.0)):
        service.request_probabilities(probe_id, prompt, temperature, 10)
        qtbot.waitUntil(lambda pid=probe_id: pid in record.probabilities, timeout=30_000)
        expected = softmax(reference, temperature)  # 0: the model's own distribution
        shown = record.probabilities[probe_id]
        assert len(shown) == 10
        for choice in shown:
            assert choice.probability == pytest.approx(expected[choice.token_id], rel=1e-3)
            assert choice.text == gpt2_vocab()[choice.token_id].decode("utf-8", "replace")
        # They are the ten likeliest (up to float32 rounding at the boundary).
        tenth = np.sort(expected)[-10]
        assert min(choice.probability for choice in shown) >= tenth * (1 - 1e-3)
    # A sharper temperature makes the top token more likely.
    assert record.probabilities[1][0].probability > record.probabilities[2][0].probability


def test_only_the_newest_probe_is_answered(qtbot, service, cat_model):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.request_probabilities(1, "The cat", 1.0, 5)
    service.request_probabilities(2, "The cat sat", 1.0, 5)
    service.request_probabilities(3, "Snow fell", 1.0, 5)
    service.cancel_probabilities(3)
    service.request_probabilities(4, "The cat sat on", 1.0, 5)
    qtbot.waitUntil(lambda: 4 in record.probabilities, timeout=30_000)
    assert set(record.probabilities) == {4}
    assert record.probabilities[4][0].token_id == token(" the")


def test_a_cancelled_probe_stops_and_suggestions_go_on(qtbot, service, slow_model):
    record = Recorder(service)
    load(qtbot, service, slow_model)
    long_text = "It was a dark and stormy night, and the rain fell in torrents. " * 12
    service.request_probabilities(1, long_text, 1.0, 5)
    qtbot.waitUntil(lambda: service.probes.active == 1, timeout=30_000)
    service.cancel_probabilities(1)
    service.request(1, "Once upon a time", GREEDY.with_changes(max_tokens=3), seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.finished[1] == "length"
    assert record.probabilities == {} and record.probe_failures == []


def test_a_probe_without_a_model_fails_clearly(qtbot, service):
    with qtbot.waitSignal(service.probabilitiesFailed, timeout=10_000) as blocker:
        service.request_probabilities(1, "Hello", 1.0, 5)
    assert blocker.args == [1, "No model is loaded yet."]


def test_a_probe_then_a_suggestion_for_the_same_text(qtbot, service, cat_model):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.request_probabilities(1, CAT_PHRASE[:11], 1.0, 3)
    service.request(1, CAT_PHRASE[:11], GREEDY, seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished and 1 in record.probabilities, timeout=30_000)
    assert record.text[1] == " on the mat."
    assert record.probabilities[1][0].token_id == token(" on")


def test_a_probe_leaves_the_cache_hot_for_a_suggestion_of_that_length(
    qtbot, service, random_model
):
    record = Recorder(service)
    load(qtbot, service, random_model)
    # 200 tokens, more than the 128-token context holds: the window starts at token 128
    # for 24 new tokens, at token 96 for one (cut points move in steps of 32).
    words = [" the", " cat", " sat", " on", " a", " mat", " and"]
    text = "".join(words[i % len(words)] for i in range(200))
    assert len(encode(text)) == 200
    settings = GREEDY.with_changes(max_tokens=24, stop_at=StopAt.LENGTH)

    def evaluated_by_a_suggestion() -> int:
        # The worker is idle now; drive the session directly to read the engine's count.
        *_tokens, finish = service._worker.session.generate(99, text, settings)
        return finish.evaluated_tokens

    for probe_id, max_tokens in ((1, 24), (2, 1)):
        service.request_probabilities(probe_id, text, 1.0, 3, max_tokens=max_tokens)
        qtbot.waitUntil(lambda pid=probe_id: pid in record.probabilities, timeout=30_000)
        evaluated = evaluated_by_a_suggestion()
        if max_tokens == settings.max_tokens:
            assert evaluated == 0  # the probe evaluated exactly the suggestion's window
        else:
            assert evaluated > 50  # another window start: evaluated all over again


def test_without_the_probability_panel_tokens_come_without_probabilities(
    qtbot, service, cat_model
):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    assert not service.step_probabilities  # off until the panel is shown
    service.request(1, "The cat sat", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.text[1] == " on the mat."
    assert [step.token_id for step in record.steps[1]] == encode(" on the mat.")
    assert all(step.probability is None and not step.choices for step in record.steps[1])


# ---- prewarming while the writer types ----------------------------------------------------


def test_prepare_evaluates_the_prompt_ahead_so_the_request_finds_it_cached(
    qtbot, service, slow_model
):
    load(qtbot, service, slow_model)
    reports: list[tuple[int, int]] = []
    service.prewarmed.connect(lambda pid, evaluated: reports.append((pid, evaluated)))
    text = "It was a bright cold morning in early spring, and the village"
    first = service.prepare(text, GREEDY)
    qtbot.waitUntil(lambda: any(pid == first for pid, _ in reports), timeout=30_000)
    assert reports[-1][1] == len(encode(text))  # a cold cache: all of it
    again = service.prepare(text, GREEDY)
    qtbot.waitUntil(lambda: any(pid == again for pid, _ in reports), timeout=30_000)
    assert reports[-1][1] <= 1  # hot: nothing (or only the last token) left to do
    longer = service.prepare(text + " was", GREEDY)
    qtbot.waitUntil(lambda: any(pid == longer for pid, _ in reports), timeout=30_000)
    assert 1 <= reports[-1][1] <= 2  # only the typed word


def test_a_burst_of_keystrokes_prewarms_only_the_newest_text(qtbot, service, slow_model):
    load(qtbot, service, slow_model)
    reports: list[int] = []
    service.prewarmed.connect(lambda pid, evaluated: reports.append(pid))
    text = "Once upon a time there was a little house by the river"
    ids = [service.prepare(text[:n], GREEDY) for n in range(20, len(text) + 1)]
    qtbot.waitUntil(lambda: ids[-1] in reports, timeout=30_000)
    assert len(reports) < len(ids) / 2  # the stale ones were skipped

