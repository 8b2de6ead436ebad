"""One streamed completion chunk -> the tokens in it, whatever dialect the server speaks,
and those tokens -> the project's TokenEvents and FinishEvent (RemoteRun).

    llama.cpp   logprobs.content = [{id, token, bytes, logprob, top_logprobs: [...]}, ...]
    vLLM        OpenAI's legacy logprobs {tokens, token_logprobs, top_logprobs}, with
                tokens spelled "token_id:N" when asked (return_tokens_as_token_ids)
    others      text only (Ollama, TGI without logprobs): one piece per chunk

A piece carries the token's raw bytes when they are known, so the generation loop can
decode through Utf8Stream exactly as the local engines do; otherwise its text.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from writer_app.engine.generation import GenerationRun
from writer_app.engine.protocol import (
    Alternative,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    TokenEvent,
)

_TOKEN_ID = re.compile(r"^token_id:(\d+)$")
BytesOf = Callable[[int], bytes | None]  # our vocabulary's bytes for an id, None: not trusted


@dataclass(frozen=True)
class Piece:
    token_id: int  # -1: the server did not say
    data: bytes | None  # the token's bytes, when known
    text: str  # the server's text for it (used only when data is None)
    probability: float | None = None
    alternatives: tuple[Alternative, ...] = ()


def pieces_of(choice: dict, bytes_of: BytesOf) -> list[Piece]:
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        return [_llama_piece(entry, bytes_of) for entry in logprobs["content"]]
    if isinstance(logprobs, dict) and isinstance(logprobs.get("tokens"), list):
        return _openai_pieces(logprobs, bytes_of)
    text = choice.get("text") or ""
    return [Piece(-1, None, text)] if text else []


def _probability(logprob: object) -> float | None:
    if isinstance(logprob, int | float) and math.isfinite(logprob):
        return math.exp(logprob)
    return None


def _llama_piece(entry: dict, bytes_of: BytesOf) -> Piece:
    token_id = int(entry.get("id", -1))
    data = bytes_of(token_id) if token_id >= 0 else None
    if data is None and isinstance(entry.get("bytes"), list):
        data = bytes(entry["bytes"])
    alternatives = tuple(
        Alternative(int(alt.get("id", -1)), _display(alt, bytes_of), _probability(alt.get("logprob")) or 0.0)
        for alt in entry.get("top_logprobs") or ()
    )
    return Piece(token_id, data, entry.get("token", ""), _probability(entry.get("logprob")), alternatives)


def _display(alt: dict, bytes_of: BytesOf) -> str:
    token_id = int(alt.get("id", -1))
    data = bytes_of(token_id) if token_id >= 0 else None
    if data is None and isinstance(alt.get("bytes"), list):
        data = bytes(alt["bytes"])
    return data.decode("utf-8", errors="replace") if data is not None else str(alt.get("token", ""))


def _openai_pieces(logprobs: dict, bytes_of: BytesOf) -> list[Piece]:
    tokens = logprobs["tokens"]
    token_logprobs = logprobs.get("token_logprobs") or [None] * len(tokens)
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    pieces = []
    for token, logprob, top in zip(tokens, token_logprobs, tops, strict=False):
        token_id, data, text = _openai_token(str(token), bytes_of)
        alternatives = ()
        if isinstance(top, dict):
            ranked = sorted(top.items(), key=lambda item: -item[1])
            alternatives = tuple(
                Alternative(alt_id, alt_text if alt_data is None else alt_data.decode("utf-8", "replace"),
                            _probability(lp) or 0.0)
                for (alt_id, alt_data, alt_text), lp in ((_openai_token(str(t), bytes_of), lp) for t, lp in ranked)
            )
        pieces.append(Piece(token_id, data, text, _probability(logprob), alternatives))
    return pieces


def _openai_token(token: str, bytes_of: BytesOf) -> tuple[int, bytes | None, str]:
    match = _TOKEN_ID.match(token)
    if match is None:
        return -1, None, token
    token_id = int(match.group(1))
    data = bytes_of(token_id)
    return token_id, data, "" if data is None else data.decode("utf-8", "replace")


def no_bytes(token_id: int) -> None:
    """For a vocabulary that is not ours: no id is decoded with our bytes."""
    return None


def _without_ids(piece: Piece) -> Piece:
    """A token of a vocabulary that is not ours: its text stays, its id means nothing here."""
    return dataclasses.replace(
        piece, token_id=-1, alternatives=tuple(alt._replace(token_id=-1) for alt in piece.alternatives)
    )


class RemoteRun:
    """One remote generation: the server's pieces in, through the GenerationRun every engine
    uses (Utf8Stream + StopScanner), TokenEvents out, a FinishEvent at the end."""

    def __init__(
        self, request: GenerationRequest, eos_id: int | None = None, ids_are_ours: bool = True
    ) -> None:
        self.request = request
        self.eos_id = eos_id
        self.ids_are_ours = ids_are_ours  # False: the server's ids are another vocabulary's
        self.run = GenerationRun(request)
        self.evaluated = 0
        self.done = False  # the stop rule, end of text or the server's finish ended it
        self.saw_end = False  # [DONE] arrived

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def generated(self) -> int:
        return self.run.generated

    def take(self, chunk: dict, bytes_of: Callable[[int], bytes | None]) -> list[TokenEvent]:
        if isinstance(chunk.get("timings"), dict):
            self.evaluated = int(chunk["timings"].get("prompt_n") or 0)
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        events = []
        for piece in pieces_of(choice, bytes_of):
            event = self._feed(piece)
            if event is not None:
                events.append(event)
            if self.done:
                return events
        finish = choice.get("finish_reason")
        if finish:
            # No stop strings are sent, so "stop" means the model's end-of-text token.
            self.run.reason = FinishReason.LENGTH if finish == "length" else FinishReason.EOS
            self.done = True
        return events

    def _feed(self, piece: Piece) -> TokenEvent | None:
        request, run = self.request, self.run
        if not self.ids_are_ours:
            if not piece.data and not piece.text:
                return None  # a control token (its end of text): the finish reason says it
            piece = _without_ids(piece)
        if piece.token_id >= 0 and piece.token_id == self.eos_id:
            run.reason, self.done = FinishReason.EOS, True
            return None
        probability = piece.probability if request.with_probs else None
        alternatives = piece.alternatives[: request.top_n] if request.with_probs else ()
        if piece.data is not None:
            event = run.accept(piece.token_id, piece.data, probability, alternatives)
        else:
            event = run.accept_text(piece.token_id, piece.text, probability, alternatives)
        self.done = self.done or run.stopped
        return event

    def finish(self, **timing: object) -> FinishEvent:
        return self.run.finish(**timing)  # type: ignore[arg-type]
