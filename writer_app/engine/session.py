"""A loaded model that speaks text: tokenizer + windowing + the engine process.

The CLI and the app's inference worker both talk to the engine through this, so prompt
handling is the same everywhere: only a bounded, prefix-stable tail of the document is
tokenized (text_window_start), turned into the one GenerationRequest that goes down to
the backend unchanged, and the engine process cuts that to the context (fit_window) and
streams back complete UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from writer_app.engine.ggml import ModelFacts, read_layout
from writer_app.engine.memory import context_for_budget
from writer_app.engine.process import EngineClient
from writer_app.engine.protocol import Alternative, FinishEvent, GenerationRequest, TokenEvent
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.tokenizer import Tokenizer, TokenizerCache
from writer_app.engine.window import text_window_start

# Characters of text per context token that we tokenize at most. English prose averages
# ~4.5 characters per GPT-2 token, so 4 gives a tail that usually fits the context
# whole: then the window moves only where this character window does (in steps of half
# of it, on a word boundary), never twice for the same stretch of typing. Denser text
# (numbers, code, CJK) gives more tokens, which fit_window then cuts in its own steps.
CHARS_PER_TOKEN_BUDGET = 4


class TextSession:
    """One model in one engine process. Drive it from one thread (cancel(): any thread)."""

    def __init__(
        self, client: EngineClient, facts: ModelFacts, tokenizer: Tokenizer, n_ctx: int
    ) -> None:
        self.client = client
        self.facts = facts
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx  # the context the engine uses: the model's, or less (memory)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        threads: int = 1,
        memory_budget_bytes: int | None = None,
        tokenizers: TokenizerCache | None = None,
    ) -> TextSession:
        """Start an engine process and load the model (validated before it gets there).

        memory_budget_bytes caps the context so the whole app stays within it (see
        engine/memory.py); tokenizers reuses a tokenizer built for the same vocabulary.
        Raises InvalidModelFile, EngineError or OSError.
        """
        layout = read_layout(path)
        n_ctx = context_for_budget(layout.facts, memory_budget_bytes)
        tokenizer = (tokenizers or TokenizerCache()).get(layout.vocab)
        client = EngineClient(auto_restart=True)
        client.start()
        try:
            facts = client.load(Path(path), threads=threads, context_length=n_ctx)
        except BaseException:
            client.close()
            raise
        return cls(client, facts, tokenizer, n_ctx)

    @property
    def path(self) -> Path:
        return Path(self.facts.path)

    def prompt_ids(self, text: str) -> list[int]:
        start = text_window_start(text, self.n_ctx * CHARS_PER_TOKEN_BUDGET)
        ids = self.tokenizer.encode(text[start:])
        if not ids and self.tokenizer.eos_id is not None:
            # An empty page: GPT-2 was trained with <|endoftext|> between documents, so
            # starting from it asks for the beginning of a new text.
            ids = [self.tokenizer.eos_id]
        return ids

    def generate(
        self,
        request_id: int,
        text: str,
        settings: SamplingSettings,
        *,
        with_probs: bool = False,
        top_n: int = 5,
        forced_ids: tuple[int, ...] = (),
    ) -> Iterator[TokenEvent | FinishEvent]:
        """Continue `text`. forced_ids are tokens the writer already chose to follow it."""
        return self.client.generate(
            self.request(
                request_id, text, settings, with_probs=with_probs, top_n=top_n, forced_ids=forced_ids
            )
        )

    def request(
        self,
        request_id: int,
        text: str,
        settings: SamplingSettings,
        *,
        with_probs: bool = False,
        top_n: int = 5,
        forced_ids: tuple[int, ...] = (),
    ) -> GenerationRequest:
        """The GenerationRequest that continues `text` (after forced_ids)."""
        ids = self.prompt_ids(text) + list(forced_ids)
        preceding = text[-64:] + self.tokenizer.decode(list(forced_ids))
        return GenerationRequest(request_id, tuple(ids), settings, with_probs, top_n, preceding)

    def next_token_probs(self, text: str, temperature: float, top_n: int) -> list[Alternative]:
        return self.client.next_token_probs(self.prompt_ids(text), temperature, top_n)

    def prewarm(self, text: str, max_tokens: int) -> int:
        return self.client.prewarm(self.prompt_ids(text), max_tokens=max_tokens)

    def cancel(self) -> None:
        self.client.cancel()

    def close(self) -> None:
        self.client.close()
