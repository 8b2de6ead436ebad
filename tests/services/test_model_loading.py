"""Model switches within the memory budget: beside the current engine, or in its place
(services/model_loading.py), with real engine processes and generated models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import OWL_PHRASE
from tests.services.test_inference import GREEDY, Recorder, load
from writer_app.engine.ggml import validate_model_file
from writer_app.engine.memory import app_resident_bytes
from writer_app.services import model_loading
from writer_app.services.inference import EngineState, InferenceService


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class OpenSpy:
    """Notes, as each model starts loading, whether the engine in use before is alive;
    before_open(path) may change the world first (a file deleted meanwhile)."""

    def __init__(self, monkeypatch, service: InferenceService, before_open=None) -> None:
        self.service = service
        self.opened: list[tuple[str, bool | None]] = []  # (file name, old engine alive)
        self.old_pid: int | None = None
        real = model_loading.open_with_fallback

        def spy(path, **options):
            self.opened.append((Path(path).name, None if self.old_pid is None else alive(self.old_pid)))
            if before_open is not None:
                before_open(Path(path))
            return real(path, **options)

        monkeypatch.setattr(model_loading, "open_with_fallback", spy)

    def note_engine_in_use(self) -> None:
        self.old_pid = self.service._worker.session.client.pid


def budget_for_one_at_a_time(*paths: Path) -> int:
    """Room for the whole app with any one of the models at its full context, not two."""
    return max(app_resident_bytes(validate_model_file(p), validate_model_file(p).n_ctx)
               for p in paths) + 1024 * 1024


@pytest.fixture
def tight_service(qtbot, cat_model, owl_model):
    service = InferenceService(threads=1, memory_budget_bytes=budget_for_one_at_a_time(cat_model, owl_model))
    yield service
    service.shutdown()


def ask(qtbot, service, record, request_id: int, prompt: str) -> str:
    service.request(request_id, prompt, GREEDY, seed=1)
    qtbot.waitUntil(lambda: request_id in record.finished, timeout=30_000)
    assert record.finished[request_id] != "cancelled" and not record.failures
    return record.text.get(request_id, "")


def test_a_switch_the_budget_cannot_hold_twice_closes_the_current_engine_first(
    qtbot, monkeypatch, tight_service, cat_model, owl_model
):
    service = tight_service
    spy = OpenSpy(monkeypatch, service)
    record = Recorder(service)
    load(qtbot, service, cat_model)
    spy.note_engine_in_use()
    old_pid = spy.old_pid
    service.load_model(owl_model)
    qtbot.waitUntil(lambda: not alive(old_pid), timeout=30_000)
    # Closed, the new one not loaded yet: a suggestion asked for now waits for it.
    service.request(1, "An owl", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=60_000)
    assert record.failures == []
    assert record.text[1] == OWL_PHRASE.removeprefix("An owl")
    assert spy.opened[-1] == (owl_model.name, False)
    assert service.facts.path == owl_model and not service.loading
    qtbot.waitUntil(lambda: record.states[-1] == EngineState.IDLE.value, timeout=10_000)
    # The engine that loaded it goes on suggesting (it is not taken for the old one).
    pid = service._worker.session.client.pid
    assert ask(qtbot, service, record, 2, "An owl") == OWL_PHRASE.removeprefix("An owl")
    assert service._worker.session.client.pid == pid and alive(pid)


def test_a_switch_the_budget_holds_keeps_the_current_engine_suggesting(
    qtbot, monkeypatch, cat_model, owl_model
):
    roomy = 2 * budget_for_one_at_a_time(cat_model, owl_model)
    service = InferenceService(threads=1, memory_budget_bytes=roomy)
    try:
        spy = OpenSpy(monkeypatch, service)
        load(qtbot, service, cat_model)
        spy.note_engine_in_use()
        load(qtbot, service, owl_model)
        assert spy.opened[-1] == (owl_model.name, True)
        qtbot.waitUntil(lambda: not alive(spy.old_pid), timeout=10_000)  # ...then closed
    finally:
        service.shutdown()


def test_a_model_that_fails_in_place_of_the_current_one_gives_the_writer_it_back(
    qtbot, monkeypatch, tight_service, cat_model, owl_model, tmp_path
):
    service = tight_service
    doomed = tmp_path / owl_model.name
    doomed.write_bytes(owl_model.read_bytes())
    # Deleted after it was chosen and read, before its engine loads it: a real failure.
    spy = OpenSpy(monkeypatch, service, before_open=lambda p: p == doomed and p.unlink())
    record = Recorder(service)
    load(qtbot, service, cat_model)
    spy.note_engine_in_use()
    with qtbot.waitSignal(service.modelFailed, timeout=60_000) as failure:
        service.load_model(doomed)
    assert failure.args[0] == str(doomed)
    assert "could not be loaded" in failure.args[1] and "either" not in failure.args[1]
    assert [name for name, _ in spy.opened[-2:]] == [doomed.name, cat_model.name]
    assert not alive(spy.old_pid)  # it was closed, and a new engine reopened the model
    assert service.facts.path == cat_model and not service.loading
    assert service.engine_state == EngineState.IDLE.value  # not left "loading"
    assert ask(qtbot, service, record, 1, "The cat") == " sat on the mat."  # its own phrase


def test_when_neither_model_can_be_loaded_the_writer_is_told_there_is_none(
    qtbot, monkeypatch, tight_service, cat_model, owl_model, tmp_path
):
    service = tight_service
    mine = tmp_path / cat_model.name
    mine.write_bytes(cat_model.read_bytes())
    doomed = tmp_path / owl_model.name
    doomed.write_bytes(owl_model.read_bytes())

    def both_gone(path: Path) -> None:
        if path == doomed:
            doomed.unlink()
            mine.unlink()

    OpenSpy(monkeypatch, service, before_open=both_gone)
    record = Recorder(service)
    load(qtbot, service, mine)
    with qtbot.waitSignal(service.modelFailed, timeout=60_000) as failure:
        service.load_model(doomed)
    assert f"{mine.name} could not be reopened either" in failure.args[1]
    assert service.facts is None and not service.can_probe
    assert record.states[-1] == EngineState.NO_MODEL.value
    service.request(1, "The cat", GREEDY, seed=1)
    qtbot.waitUntil(lambda: bool(record.failures), timeout=30_000)
    assert record.failures == [(1, "No model is loaded yet.")]
