"""TextSession: the memory budget's context cap, and tokenizers shared between models."""

from __future__ import annotations

import pytest

from tests.support.models import random_gpt2
from writer_app.engine.ggml import validate_model_file
from writer_app.engine.memory import CONTEXT_STEP, app_resident_bytes
from writer_app.engine.protocol import FinishEvent
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.session import TextSession, open_with_fallback
from writer_app.engine.tokenizer import TokenizerCache
from writer_app.engine.window import fit_window

SHAPE = dict(n_layer=2, n_embd=64, n_head=4, n_ctx=512)
SETTINGS = SamplingSettings(temperature=0.0, max_tokens=8, stop_at=StopAt.LENGTH)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return random_gpt2(tmp_path_factory.mktemp("session") / "m.bin", **SHAPE, seed=2)


def finish_of(session: TextSession, text: str) -> FinishEvent:
    events = list(session.generate(1, text, SETTINGS))
    assert isinstance(events[-1], FinishEvent)
    return events[-1]


def test_a_memory_budget_caps_the_context_the_engine_uses(model_path):
    facts = validate_model_file(model_path)
    budget = app_resident_bytes(facts, 320 + CONTEXT_STEP // 2)
    session = TextSession.open(model_path, memory_budget_bytes=budget)
    try:
        assert session.n_ctx == 320 and session.facts.n_ctx == 512
        long_text = "the quiet river ran past the mill " * 300  # thousands of tokens
        finish = finish_of(session, long_text)
        # Windowed to the capped context, leaving room for the suggestion; the window
        # moves in steps of half of it, so at least half is used.
        assert 320 // 2 <= finish.prompt_tokens <= 320 - SETTINGS.max_tokens
        assert finish.generated_tokens == SETTINGS.max_tokens
    finally:
        session.close()


def test_without_a_budget_the_models_whole_context_is_used(model_path):
    session = TextSession.open(model_path)
    try:
        assert session.n_ctx == 512
        finish = finish_of(session, "the quiet river ran past the mill " * 300)
        assert 320 < finish.prompt_tokens <= 512 - SETTINGS.max_tokens
    finally:
        session.close()


def test_models_with_one_vocabulary_share_one_tokenizer(model_path, tmp_path):
    other = random_gpt2(tmp_path / "other.bin", n_layer=1, n_embd=32, n_head=2, n_ctx=64)
    tokenizers = TokenizerCache()
    first = TextSession.open(model_path, tokenizers=tokenizers)
    second = TextSession.open(other, tokenizers=tokenizers)
    try:
        assert second.tokenizer is first.tokenizer
        assert second.prompt_ids("Hello there") == first.tokenizer.encode("Hello there")
    finally:
        first.close()
        second.close()


def test_the_tokenizer_cache_keeps_only_the_most_recent_vocabularies():
    tokenizers = TokenizerCache(size=1)
    bytes_only = [bytes([b]) for b in range(256)]
    a = tokenizers.get(bytes_only)
    b = tokenizers.get([*bytes_only, b"<|endoftext|>"])
    assert b is not a and b.eos_id == 256
    assert tokenizers.get(bytes_only) is not a  # a was let go to keep one


# ---- window moves: llama.cpp's second sequence has the next window ready ----------------

PROSE_WORDS = ["the", "quiet", "river", "ran", "past", "the", "old", "mill", "and", "into", "the", "town"]
# ~4 tokens a word: the token window (fit_window) cuts before the character window moves.
DENSE_WORDS = [f"{n * 7919 % 100000:05d}," for n in range(1, 400)]


def _typing_through_a_window_move(session: TextSession, words: list[str]) -> FinishEvent:
    """Type word by word (prewarming as the app does at every edit) until the prompt's
    window has moved once, then ask for a suggestion: what it had to evaluate."""
    text, first_start = "", None
    for index in range(5000):
        text += words[index % len(words)] + " "
        window = fit_window(
            session.prompt_ids(text), n_ctx=session.n_ctx, max_new_tokens=SETTINGS.max_tokens
        )
        start = window.tokens[:8]  # what the engine's window starts with
        if first_start is None and len(text) > 200:
            first_start = start
        if first_start is not None and start != first_start:
            return finish_of(session, text)
        session.prewarm(text, SETTINGS.max_tokens)
    raise AssertionError("the window never moved")


@pytest.mark.parametrize("words", [PROSE_WORDS, DENSE_WORDS], ids=["prose", "dense"])
def test_after_a_window_move_llama_cpp_reads_only_the_newest_tokens(tmp_path, words):
    path = random_gpt2(tmp_path / "move.bin", n_layer=2, n_embd=64, n_head=4, n_ctx=256, seed=4)
    session = TextSession.open(path, engine="llama.cpp")
    try:
        finish = _typing_through_a_window_move(session, words)
    finally:
        session.close()
    assert finish.prompt_tokens > 60
    assert finish.evaluated_tokens <= 8, finish


def test_with_one_sequence_a_window_move_reads_the_window_again(tmp_path):
    path = random_gpt2(tmp_path / "move.bin", n_layer=2, n_embd=64, n_head=4, n_ctx=256, seed=4)
    session = TextSession.open(path)  # ctransformers
    try:
        finish = _typing_through_a_window_move(session, PROSE_WORDS)
    finally:
        session.close()
    assert finish.evaluated_tokens >= finish.prompt_tokens - 2 > 60


# ---- the pause's suggestion, prepared during the prewarm ---------------------------------


@pytest.mark.parametrize("engine", ["ctransformers", "llama.cpp"])
def test_a_prewarm_with_the_pauses_settings_leaves_the_suggestion_nothing_to_read(
    model_path, engine
):
    # The service prewarms with the settings and seed the suggestion will use: on
    # llama.cpp that draws its first token, on ctransformers the logits are kept anyway.
    settings = SETTINGS.with_changes(temperature=0.8, seed=99)
    text = "the quiet river ran past the mill and into the town"
    session = TextSession.open(model_path, engine=engine)
    try:
        cold = list(session.generate(1, text, settings, with_probs=True, top_n=3))
        session.prewarm("something else entirely", settings.max_tokens)
        session.prewarm(text, settings.max_tokens, settings=settings, with_probs=True, top_n=3)
        warm = list(session.generate(2, text, settings, with_probs=True, top_n=3))
    finally:
        session.close()
    assert warm[-1].evaluated_tokens == 0
    assert warm[-1].text == cold[-1].text and warm[-1].generated_tokens == 8


# ---- GPU layers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "gpu_layers", "notice"),
    [
        ("llama.cpp", 999, "llama.cpp found no GPU; m.bin runs on the CPU"),
        ("llama.cpp", 0, None),
        ("ctransformers", 999, None),  # no GPU path for GPT-2: nothing to say each load
    ],
)
def test_gpu_layers_without_a_gpu_open_on_the_cpu_with_a_notice(
    model_path, engine, gpu_layers, notice
):
    opened = open_with_fallback(model_path, engine=engine, gpu_layers=gpu_layers)
    try:
        assert opened.notice == notice
        assert opened.session.engine == engine and opened.session.client.gpu_layers == 0
    finally:
        opened.session.close()
