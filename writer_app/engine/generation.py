"""Generation helpers every engine shares, so all engines sample, stream and stop alike.

    softmax(logits, temperature)       probabilities as the app shows them
    derive_seed(seed, step)            one independent, reproducible seed per token
    penalize(logits, recent, penalty)  ctransformers' meaning of the repetition penalty
    top_alternatives(probs, n, text)   the likeliest tokens, best first
    GenerationRun(request)             the state of one generation: its seed, the UTF-8
                                       stream and stop rule that turn the model file's
                                       vocabulary bytes into text, the counters, and the
                                       FinishEvent at the end

Pure Python + numpy: no native library, no Qt.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence

import numpy as np

from writer_app.engine.ggml import ModelFacts
from writer_app.engine.protocol import (
    Alternative,
    ContextOverflowError,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    TokenEvent,
    check_token_ids,
)
from writer_app.engine.stopping import StopScanner, Utf8Stream
from writer_app.engine.window import Window, fit_window


def derive_seed(request_seed: int, step: int) -> int:
    """An independent, reproducible 31-bit seed for one sampling step of a request."""
    digest = hashlib.blake2b(f"{request_seed}:{step}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at a temperature; 0 (greedy) is shown as the model's own distribution."""
    scaled = logits.astype(np.float64) / (temperature if temperature > 0 else 1.0)
    scaled -= scaled.max()
    np.exp(scaled, out=scaled)
    return scaled / scaled.sum()


def penalize(logits: np.ndarray, recent: Sequence[int], penalty: float) -> None:
    """ctransformers' repetition penalty, in place: shrink positive logits, grow negative
    ones, once per distinct recent token."""
    if penalty == 1.0 or not recent:
        return
    ids = np.fromiter(set(recent), dtype=np.int64)
    values = logits[ids]
    logits[ids] = np.where(values <= 0, values * penalty, values / penalty)


def top_alternatives(
    probs: np.ndarray, top_n: int, token_text: Callable[[int], str]
) -> tuple[Alternative, ...]:
    """The top_n likeliest tokens, best first (ties keep the lower id first)."""
    top_n = max(0, min(top_n, probs.size))
    if top_n == 0:
        return ()
    best = np.argpartition(probs, -top_n)[-top_n:]
    best = best[np.argsort(-probs[best], kind="stable")]
    return tuple(Alternative(int(i), token_text(int(i)), float(probs[i])) for i in best)


class GenerationRun:
    """The mutable state of one generation.

    An engine samples a token, then calls accept() with the token's bytes from the model
    file's vocabulary; accept() returns the TokenEvent to yield (or None when the text is
    held back at a stop) and sets `stopped` once the stop rule completed the suggestion.
    finish() builds the closing FinishEvent.
    """

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.request_id = request.request_id
        self.settings = request.settings
        seed = request.settings.seed
        self.seed = seed if seed >= 0 else secrets.randbits(31)
        self.utf8 = Utf8Stream()  # an unfinished character at the end is dropped, not shown
        self.scanner = StopScanner(request.settings.stop_at, request.preceding_text)
        self.reason = FinishReason.LENGTH
        self.stopped = False
        self.generated = 0
        self.text = ""
        self.tail = ""

    def step_seed(self, step: int) -> int:
        return derive_seed(self.seed, step)

    def accept(
        self,
        token_id: int,
        token_bytes: bytes,
        probability: float | None = None,
        alternatives: tuple[Alternative, ...] = (),
    ) -> TokenEvent | None:
        """Count a generated (non end-of-text) token and release its text."""
        return self.accept_text(token_id, self.utf8.push(token_bytes), probability, alternatives)

    def accept_text(
        self,
        token_id: int,
        text: str,
        probability: float | None = None,
        alternatives: tuple[Alternative, ...] = (),
    ) -> TokenEvent | None:
        """accept() for a token known only as text (a server whose vocabulary isn't ours)."""
        self.generated += 1
        result = self.scanner.feed(text)
        event = None
        if result.stopped and not result.piece_used:
            self.tail += result.text
        else:
            self.text += result.text
            event = TokenEvent(self.request_id, token_id, result.text, probability, alternatives)
        if result.stopped:
            self.stopped = True
            self.reason = FinishReason.STOP
        return event

    def finish(
        self,
        *,
        prompt_tokens: int,
        evaluated_tokens: int,
        window_start: int,
        prompt_eval_ms: float,
        generation_ms: float,
    ) -> FinishEvent:
        if self.reason is not FinishReason.STOP:
            self.tail += self.scanner.finish()
        return FinishEvent(
            request_id=self.request_id,
            reason=self.reason,
            text=self.text + self.tail,
            tail_text=self.tail,
            prompt_tokens=prompt_tokens,
            evaluated_tokens=evaluated_tokens,
            window_start=window_start,
            generated_tokens=self.generated,
            prompt_eval_ms=prompt_eval_ms,
            generation_ms=generation_ms,
        )


def prompt_window(
    prompt_ids: Sequence[int], facts: ModelFacts, n_ctx: int, max_tokens: int
) -> Window:
    """The tokens an engine evaluates for a prompt: checked against the vocabulary (a bad
    id would crash native code), an empty prompt as GPT-2's end-of-text (how it starts a
    new document), cut to the context in use with room for max_tokens (fit_window)."""
    ids = check_token_ids(prompt_ids, facts.n_vocab)
    if not ids:
        if facts.eos_token_id is None:
            raise ContextOverflowError("The prompt is empty and the model has no start token.")
        ids = [facts.eos_token_id]
    return fit_window(ids, n_ctx=n_ctx, max_new_tokens=max_tokens)
