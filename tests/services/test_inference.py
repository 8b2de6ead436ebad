"""The inference service with the real worker thread, engine process and generated models."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import OWL_PHRASE
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.services.inference import EngineState, InferenceService

GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_tokens=32)
ENDLESS = SamplingSettings(
    temperature=1.0, top_k=0, top_p=1.0, max_tokens=256, stop_at=StopAt.LENGTH
)


class Recorder:
    """Collects what the service reports, per request id."""

    def __init__(self, service: InferenceService) -> None:
        self.text: dict[int, str] = {}
        self.finished: dict[int, str] = {}
        self.failures: list[tuple[int, str]] = []
        self.states: list[str] = []
        service.token.connect(lambda rid, piece: self.text.update({rid: self.text.get(rid, "") + piece}))
        service.finished.connect(lambda rid, reason: self.finished.update({rid: reason}))
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


def test_suggestion_streams_the_models_continuation(qtbot, service, cat_model):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.request(1, "The cat sat", GREEDY, seed=3)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.text[1] == " on the mat."
    assert record.finished[1] == "stop"
    assert EngineState.THINKING.value in record.states
    assert record.states[-1] == EngineState.IDLE.value


def test_cancel_stops_a_long_generation(qtbot, service, slow_model):
    record = Recorder(service)
    load(qtbot, service, slow_model)
    service.request(1, "Once upon a time", ENDLESS, seed=1)
    qtbot.waitUntil(lambda: 1 in record.text, timeout=30_000)
    service.cancel(1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=10_000)
    assert record.finished[1] == "cancelled"
    # Far fewer than the 256 tokens asked for reached us.
    assert len(record.text[1]) < 200


def test_a_superseded_request_never_runs(qtbot, service, cat_model):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.request(1, "The cat", GREEDY, seed=1)
    service.request(2, "Then it", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 2 in record.finished, timeout=30_000)
    assert record.text[2] == " slept all day!"
    assert record.finished.get(1) == "cancelled"
    assert 1 not in record.text


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


def test_a_killed_engine_is_reported_and_restarted(qtbot, service, cat_model):
    record = Recorder(service)
    load(qtbot, service, cat_model)
    service.request(1, "The cat sat", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    os.kill(service._worker.session.client.pid, signal.SIGKILL)
    service.request(2, "The cat sat", GREEDY, seed=1)
    # Either the kill is noticed mid-request (failure + restart) or before it (silent
    # restart); in both cases a following request works with the model reloaded.
    qtbot.waitUntil(lambda: 2 in record.finished or bool(record.failures), timeout=30_000)
    service.request(3, "The cat sat", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 3 in record.finished, timeout=30_000)
    assert record.text[3] == " on the mat."


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

