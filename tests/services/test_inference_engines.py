"""The inference service on llama.cpp (issue 12): the loader converts the model on its
thread first ("preparing"), a killed llama.cpp engine is reported and restarted with
llama.cpp, and a model llama.cpp can't take is loaded with ctransformers, with a notice."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable

import pytest

from tests.services.test_inference import (
    ENDLESS,
    GREEDY,
    KILL_NOTICE,
    Recorder,
    WriterView,
    load,
)
from writer_app.engine.gguf_convert import converted_path
from writer_app.services.inference import EngineState, InferenceService


@pytest.fixture
def llama_service(qtbot):
    service = InferenceService(threads=1, engine="llama.cpp")
    yield service
    service.shutdown()


def test_llama_cpp_suggests_the_phrase_after_preparing_the_model_once(
    qtbot, llama_service, cat_model, tmp_path
):
    model = shutil.copy(cat_model, tmp_path / cat_model.name)
    record = Recorder(llama_service)
    fallbacks: list[str] = []
    llama_service.engineFallback.connect(fallbacks.append)
    load(qtbot, llama_service, model)
    assert record.states[:2] == [EngineState.LOADING.value, EngineState.PREPARING.value]
    assert converted_path(model).is_file()
    assert llama_service.loaded_engine == llama_service._worker.session.engine == "llama.cpp"
    llama_service.request(1, "The cat sat", GREEDY, seed=3)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert (record.text[1], record.finished[1]) == (" on the mat.", "stop")
    record.states.clear()
    load(qtbot, llama_service, model)  # converted already: no preparing
    assert EngineState.PREPARING.value not in record.states and fallbacks == []


def test_a_killed_llama_cpp_engine_is_reported_and_restarted_with_llama_cpp(
    qtbot, llama_service, slow_model
):
    record = Recorder(llama_service)
    load(qtbot, llama_service, slow_model)
    writer = WriterView(llama_service, ENDLESS)
    writer.ask("Once upon a time")
    qtbot.waitUntil(lambda: bool(record.text), timeout=30_000)  # generating now
    client = llama_service._worker.session.client
    old_pid = client.pid
    os.kill(old_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: bool(writer.errors), timeout=30_000)
    assert writer.errors == [KILL_NOTICE]
    assert EngineState.RESTARTING.value in record.states
    qtbot.waitUntil(lambda: record.states[-1] == EngineState.IDLE.value, timeout=60_000)
    assert not writer.controller.busy
    assert client.pid != old_pid and client._last_load.engine == "llama.cpp"
    llama_service.request(100, "The cat sat", GREEDY.with_changes(max_tokens=3), seed=1)
    qtbot.waitUntil(lambda: 100 in record.finished, timeout=30_000)
    assert record.finished[100] == "length" and record.text[100]


def test_a_model_llama_cpp_cannot_take_is_loaded_with_ctransformers_and_said_so(
    qtbot, llama_service, cat_model, tmp_path
):
    model = shutil.copy(cat_model, tmp_path / "cat.bin")
    converted_path(model).mkdir()  # where the converted copy must go is taken
    record = Recorder(llama_service)
    fallbacks: list[str] = []
    llama_service.engineFallback.connect(fallbacks.append)
    load(qtbot, llama_service, model)
    assert fallbacks == [f"llama.cpp could not load cat.bin (Is a directory: "
                         f"{converted_path(model).name}); using ctransformers"]
    assert llama_service.loaded_engine == "ctransformers"
    assert llama_service.engine == "llama.cpp"  # still the writer's choice, for next time
    llama_service.request(1, "The cat sat", GREEDY, seed=3)
    qtbot.waitUntil(lambda: 1 in record.finished, timeout=30_000)
    assert record.text[1] == " on the mat."


def kill_engine(service: InferenceService) -> None:
    """Kill the engine process running the model (SIGKILL): a real crash. Seen by the
    command running, else by the next one only if that one reaches the engine before
    the kernel has ended it (a process already gone is restarted silently:
    EngineClient's auto_restart); crash_at_the_command makes sure it does."""
    os.kill(service._worker.session.client.pid, signal.SIGKILL)


def crash_at_the_command(qtbot, service: InferenceService, send: Callable[[], None]) -> None:
    """A crash that the command `send` starts meets, whatever the timing: the engine is
    stopped (alive, so the command goes to it), and killed once the command is in its
    pipe."""
    client = service._worker.session.client
    pid = client.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        send()
        qtbot.waitUntil(lambda: client._streaming, timeout=30_000)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_llama_cpp_crashing_again_right_after_its_restart_moves_the_model_to_ctransformers(
    qtbot, llama_service, cat_model, tmp_path
):
    """The rule (session.RunningFallbackRule), both sides of it on the real engine: a
    crash, a success, a crash is two single crashes (restarted on llama.cpp); a crash
    and then another before anything succeeds is a crash loop (ctransformers answers)."""
    model = shutil.copy(cat_model, tmp_path / "cat.bin")
    record = Recorder(llama_service)
    fallbacks: list[str] = []
    llama_service.engineFallback.connect(fallbacks.append)
    load(qtbot, llama_service, model)

    def send(request_id: int) -> Callable[[], None]:
        return lambda: llama_service.request(request_id, "The cat sat", GREEDY, seed=3)

    def answered(request_id: int) -> None:
        qtbot.waitUntil(lambda: request_id in record.finished
                        or request_id in dict(record.failures), timeout=60_000)

    def ask(request_id: int) -> None:
        send(request_id)()
        answered(request_id)

    def crashing(request_id: int) -> None:
        crash_at_the_command(qtbot, llama_service, send(request_id))
        answered(request_id)

    def restarted() -> None:
        qtbot.waitUntil(lambda: record.states[-1] == EngineState.IDLE.value, timeout=60_000)

    for request_id in (1, 3):  # crash, restart, success: twice
        crashing(request_id)
        assert record.failures[-1] == (request_id, KILL_NOTICE)
        restarted()
        assert llama_service._worker.session.engine == "llama.cpp"
        ask(request_id + 1)
        assert record.text[request_id + 1] == " on the mat."
    assert fallbacks == [] and llama_service.loaded_engine == "llama.cpp"

    crashing(5)  # reported, restarted on llama.cpp
    restarted()
    with qtbot.waitSignal(llama_service.engineFallback, timeout=60_000) as fallback:
        crashing(6)  # again before anything succeeded: the loop
    assert fallback.args == ["llama.cpp failed while running cat.bin (it stopped again right "
                             "after a restart, killed by signal SIGKILL); using ctransformers"]
    assert fallbacks == fallback.args  # one sentence for the event
    assert (record.text.get(6), record.finished.get(6)) == (" on the mat.", "stop")
    assert [rid for rid, _ in record.failures] == [1, 3, 5]  # 6 was answered, not failed
    assert llama_service.loaded_engine == llama_service._worker.session.engine == "ctransformers"
    assert llama_service.engine == "llama.cpp"  # still the writer's choice, for next time
    ask(7)
    assert record.text[7] == " on the mat."


def test_a_llama_cpp_restart_that_cannot_reload_moves_the_model_to_ctransformers(
    qtbot, llama_service, cat_model, tmp_path
):
    """The restart after a crash is where llama.cpp fails again: its converted copy is
    gone and where the rebuilt one must go is taken by a folder."""
    model = shutil.copy(cat_model, tmp_path / "cat.bin")
    record = Recorder(llama_service)
    load(qtbot, llama_service, model)
    converted = converted_path(model)
    kill_engine(llama_service)
    converted.unlink()
    converted.mkdir()
    with qtbot.waitSignal(llama_service.engineFallback, timeout=60_000) as fallback:
        llama_service.request(1, "The cat sat", GREEDY, seed=3)
    # The crash, reported as ever: the kill, or the restart dying that it led to first.
    assert [rid for rid, _ in record.failures] == [1]
    assert record.failures[0][1] in (KILL_NOTICE, KILL_NOTICE.replace(
        "killed by signal SIGKILL", "exit code 1"))
    assert fallback.args == ["llama.cpp failed while running cat.bin (it stopped again right "
                             "after a restart, exit code 1); using ctransformers"]
    qtbot.waitUntil(lambda: record.states[-1] == EngineState.IDLE.value, timeout=30_000)
    assert llama_service.loaded_engine == "ctransformers" and llama_service.engine == "llama.cpp"
    llama_service.request(2, "The cat sat", GREEDY, seed=3)
    qtbot.waitUntil(lambda: 2 in record.finished, timeout=30_000)
    assert record.text[2] == " on the mat."


def test_a_suggestion_cut_by_the_crash_loop_keeps_its_text_and_ends_there(
    qtbot, llama_service, slow_model, tmp_path
):
    """Text the writer already sees is not streamed again by ctransformers (another
    engine's draw would not continue it): the suggestion ends where llama.cpp stopped."""
    model = shutil.copy(slow_model, tmp_path / "slow.bin")
    record = Recorder(llama_service)
    load(qtbot, llama_service, model)
    crash_at_the_command(qtbot, llama_service,
                         lambda: llama_service.request(1, "Once upon a time", GREEDY, seed=1))
    qtbot.waitUntil(lambda: bool(record.failures), timeout=60_000)  # crash 1: at the prompt
    qtbot.waitUntil(lambda: record.states[-1] == EngineState.IDLE.value, timeout=60_000)
    llama_service.request(2, "Once upon a time", ENDLESS, seed=1)
    qtbot.waitUntil(lambda: bool(record.text.get(2)), timeout=30_000)  # streaming now
    with qtbot.waitSignal(llama_service.engineFallback, timeout=60_000):
        kill_engine(llama_service)  # crash 2, mid-suggestion
    qtbot.waitUntil(lambda: 2 in record.finished, timeout=30_000)
    shown = record.text[2]
    assert record.finished[2] == "cancelled" and shown
    assert [rid for rid, _ in record.failures] == [1]
    assert llama_service.loaded_engine == "ctransformers"
    llama_service.request(3, "Once upon a time", GREEDY.with_changes(max_tokens=3), seed=1)
    qtbot.waitUntil(lambda: 3 in record.finished, timeout=30_000)
    assert record.text[3] and record.text[2] == shown
