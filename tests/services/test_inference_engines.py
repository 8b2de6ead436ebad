"""The inference service on llama.cpp (issue 12): the loader converts the model on its
thread first ("preparing"), a killed llama.cpp engine is reported and restarted with
llama.cpp, and a model llama.cpp can't take is loaded with ctransformers, with a notice."""

from __future__ import annotations

import os
import shutil
import signal

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
