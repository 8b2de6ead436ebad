"""session.RunningFallbackRule, the one rule for when llama.cpp has failed while running a
model: which failures move the model to ctransformers. The engine-level tests
(tests/services/test_inference_engines.py, tests/test_cli_engines.py) make llama.cpp
really crash; these pin the cases a real engine can't be made to produce on demand (a
failed evaluation reported by llama.cpp itself) and the request problems that must
never count."""

from __future__ import annotations

import signal

import pytest

from writer_app.engine.process import EngineCrashed
from writer_app.engine.protocol import (
    ContextOverflowError,
    EvaluationError,
    InvalidTokenError,
    ModelLoadError,
    NoModelLoaded,
)
from writer_app.engine.session import RunningFallbackRule
from writer_app.engine.window import WindowError

SIGBUS = EngineCrashed(-signal.SIGBUS)


def test_a_failed_llama_cpp_evaluation_falls_back_at_once_with_its_reason():
    rule = RunningFallbackRule()
    error = EvaluationError("llama.cpp failed to generate: decode returned -3.")
    assert rule.verdict("llama.cpp", error) == "llama.cpp failed to generate: decode returned -3"
    assert rule.verdict("ctransformers", error) is None  # nothing to fall back to


@pytest.mark.parametrize("error", [
    ContextOverflowError("2000 tokens do not fit in the model's context of 1024."),
    InvalidTokenError("Token id 70000 is not in this model's vocabulary."),
    NoModelLoaded("No model is loaded yet."),
    WindowError("max_tokens leaves no room for the prompt"),
])
def test_a_problem_of_the_request_never_falls_back(error):
    rule = RunningFallbackRule()
    assert rule.verdict("llama.cpp", error) is None
    assert rule.verdict("llama.cpp", error) is None  # however often


def test_a_crash_falls_back_only_when_no_success_came_since_the_last_one():
    rule = RunningFallbackRule()
    assert rule.verdict("llama.cpp", SIGBUS) is None  # restarted on llama.cpp
    rule.succeeded()
    assert rule.verdict("llama.cpp", SIGBUS) is None  # a new, single crash
    assert rule.verdict("llama.cpp", SIGBUS) == (
        "it stopped again right after a restart, killed by signal SIGBUS")
    assert rule.verdict("ctransformers", SIGBUS) is None


def test_a_restart_llama_cpp_cannot_load_falls_back():
    rule = RunningFallbackRule()
    assert rule.verdict("llama.cpp", SIGBUS) is None
    refused = ModelLoadError("llama.cpp could not load cat.bin.x.gguf: failed to load model.")
    assert rule.verdict("llama.cpp", refused) == (
        "llama.cpp could not load cat.bin.x.gguf: failed to load model")
