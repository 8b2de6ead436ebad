"""The shipped demo model: present, small, a valid full-vocabulary GPT-2, and it writes English.

Generation goes through the app's own engine (EngineClient: ctransformers in a child
process), so a crash in native code fails these tests instead of killing pytest.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.support.gpt2_vocab import END_OF_TEXT_ID, GPT2_VOCAB_SIZE, gpt2_vocab
from writer_app.assets import demo_model_path, resources_dir
from writer_app.engine.ggml import read_vocab, validate_model_file
from writer_app.engine.process import EngineClient
from writer_app.engine.protocol import FinishEvent, GenerationRequest, TokenEvent
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.tokenizer import Tokenizer

SIZE_LIMIT_BYTES = 5_000_000
PROMPTS = ("It is a truth universally", "She was", "Mr. Darcy")
NEW_TOKENS = 40
ENGLISH_SHARE = 0.9  # of generated words that must be words Austen used
WORD = re.compile(r"[A-Za-z]+")


@cache
def austen_words() -> frozenset[str]:
    """Every word in the training text, lower-cased: our dictionary of "real English"."""
    texts = (resources_dir() / "source" / "austen").glob("*.txt")
    words = frozenset(w.lower() for path in texts for w in WORD.findall(path.read_text("utf-8")))
    assert len(words) > 10_000, "the Austen texts are missing from resources/source/austen"
    return words


def english_share(text: str) -> float:
    words = [w.lower() for w in WORD.findall(text)]
    assert len(words) >= 10, f"too few words to judge: {text!r}"
    return sum(w in austen_words() for w in words) / len(words)


def assert_not_degenerate(token_ids: list[int], text: str) -> None:
    _, most_common = Counter(token_ids).most_common(1)[0]
    assert most_common <= len(token_ids) // 2, f"one token dominates: {text!r}"
    assert len(set(token_ids)) >= 10, f"too few distinct tokens: {text!r}"


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_vocab(read_vocab(demo_model_path()))


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineClient]:
    with EngineClient() as client:
        client.load(demo_model_path(), threads=1)
        yield client


def continuation(
    engine: EngineClient, tokenizer: Tokenizer, prompt: str, settings: SamplingSettings
) -> tuple[list[int], str]:
    token_ids: list[int] = []
    finish = None
    events = engine.generate(
        GenerationRequest(1, tuple(tokenizer.encode(prompt)), settings, preceding_text=prompt)
    )
    for event in events:
        if isinstance(event, TokenEvent):
            token_ids.append(event.token_id)
        elif isinstance(event, FinishEvent):
            finish = event
    assert finish is not None
    return token_ids, finish.text


def test_demo_model_is_shipped_within_the_size_budget() -> None:
    path = demo_model_path()
    assert path.is_file(), f"{path} is missing: run resources/source/build_demo_model.py"
    assert path.stat().st_size <= SIZE_LIMIT_BYTES


def test_demo_model_is_a_valid_gpt2_with_the_full_gpt2_vocabulary() -> None:
    facts = validate_model_file(demo_model_path())
    assert facts.n_vocab == GPT2_VOCAB_SIZE
    assert facts.eos_token_id == END_OF_TEXT_ID
    assert facts.n_ctx >= 128  # room for a paragraph of context plus a suggestion
    assert read_vocab(demo_model_path()) == gpt2_vocab()


def test_models_readme_labels_it_as_a_demo() -> None:
    readme = (demo_model_path().parent / "README.md").read_text("utf-8")
    assert "demo" in readme.lower() and Path(demo_model_path()).name in readme


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_continuation_is_english_and_not_degenerate(
    engine: EngineClient, tokenizer: Tokenizer, prompt: str
) -> None:
    # The app's greedy: temperature 0 with its default repetition penalty. (Without any
    # penalty this model, like small language models generally, loops "I am sure I am sure".)
    greedy = SamplingSettings(temperature=0.0, max_tokens=NEW_TOKENS, stop_at=StopAt.LENGTH)
    token_ids, text = continuation(engine, tokenizer, prompt, greedy)
    assert len(token_ids) == NEW_TOKENS
    assert english_share(text) > ENGLISH_SHARE, text
    assert_not_degenerate(token_ids, text)


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_sampled_continuations_are_english_and_not_degenerate(
    engine: EngineClient, tokenizer: Tokenizer, prompt: str
) -> None:
    for seed in (1, 2, 3):
        sampled = SamplingSettings(max_tokens=NEW_TOKENS, seed=seed, stop_at=StopAt.LENGTH)
        token_ids, text = continuation(engine, tokenizer, prompt, sampled)
        assert english_share(text) > ENGLISH_SHARE, text
        assert_not_degenerate(token_ids, text)


@pytest.mark.slow
def test_words_the_novels_never_use_still_get_an_english_continuation(
    engine: EngineClient, tokenizer: Tokenizer
) -> None:
    prompt = "The smartphone app crashed during the software update, so"
    unknown = [w for w in WORD.findall(prompt) if w.lower() not in austen_words()]
    assert len(unknown) >= 3, unknown  # the prompt really does leave Austen's vocabulary
    sampled = SamplingSettings(max_tokens=NEW_TOKENS, seed=7, stop_at=StopAt.LENGTH)
    token_ids, text = continuation(engine, tokenizer, prompt, sampled)
    assert english_share(text) > ENGLISH_SHARE, text
    assert_not_degenerate(token_ids, text)
