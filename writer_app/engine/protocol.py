"""The engine seam: what one generation is asked (GenerationRequest), what a loaded model
must do (the Backend Protocol, where every engine plugs in), what it reports
(TokenEvent, FinishEvent), and the messages between the app and the engine process.
Plain picklable dataclasses and a Protocol; no Qt, no ctransformers.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NamedTuple, Protocol

from writer_app.engine.ggml import ModelFacts
from writer_app.engine.sampling import SamplingSettings

# The sentence stop rule needs only the end of the prompt ("Dr." and the like).
PRECEDING_TEXT_CHARS = 64


class EngineError(Exception):
    """Base class for everything the engine reports as a failure."""


class InvalidTokenError(EngineError, ValueError):
    """A token id outside the model's vocabulary was about to reach native code."""


class ContextOverflowError(EngineError, ValueError):
    """More tokens than the model's context can hold were about to be evaluated."""


class ModelLoadError(EngineError):
    """The (already validated) file could not be loaded by ctransformers."""


class EvaluationError(EngineError):
    """ctransformers reported a failed evaluation (the cache is reset)."""


class NoModelLoaded(EngineError):
    """A generation or evaluation was asked for before any model was loaded."""


def check_token_ids(token_ids: Iterable[object], n_vocab: int) -> list[int]:
    """Plain ints inside the vocabulary, or InvalidTokenError: ctransformers indexes its
    tables with token ids unchecked, so a bad one would crash it."""
    ids: list[int] = []
    for token_id in token_ids:
        try:
            if isinstance(token_id, bool):
                raise TypeError
            value = operator.index(token_id)  # ints and numpy ints, never floats
        except TypeError:
            raise InvalidTokenError(f"Token id {token_id!r} is not an integer.") from None
        if not 0 <= value < n_vocab:
            raise InvalidTokenError(
                f"Token id {value} is not in this model's vocabulary "
                f"(valid ids are 0 to {n_vocab - 1})."
            )
        ids.append(value)
    return ids


class FinishReason(str, Enum):
    STOP = "stop"  # the stop rule (sentence / paragraph end) completed the suggestion
    LENGTH = "length"  # max_tokens reached (or the context is full)
    EOS = "eos"  # the model produced its end-of-text token
    CANCELLED = "cancelled"  # cancel() or shutdown interrupted it


class Alternative(NamedTuple):
    """A candidate next token; unpacks as (token_id, text, probability)."""

    token_id: int
    text: str  # the token's bytes decoded for display (U+FFFD where not valid alone)
    probability: float  # softmax of the logits at the request's temperature


@dataclass(frozen=True)
class TokenEvent:
    """One generated token that belongs to the suggestion."""

    request_id: int
    token_id: int
    text: str  # text released at this token: complete characters that passed the stop rule
    probability: float | None = None  # the chosen token's probability (with_probs only)
    alternatives: tuple[Alternative, ...] = ()  # most likely tokens at this step, best first


@dataclass(frozen=True)
class FinishEvent:
    """The last event of every generation."""

    request_id: int
    reason: FinishReason
    text: str  # the whole suggestion: all TokenEvent texts + tail_text
    tail_text: str  # text released only at the end (a held-back period, say)
    prompt_tokens: int  # tokens in the (windowed) prompt
    evaluated_tokens: int  # of those, how many had to be evaluated (the rest was cached)
    window_start: int  # prompt tokens dropped from the front to fit the context
    generated_tokens: int
    prompt_eval_ms: float
    generation_ms: float

    @property
    def tokens_per_second(self) -> float:
        if self.generation_ms <= 0:
            return 0.0
        return self.generated_tokens * 1000.0 / self.generation_ms


# ---- the seam: one request, one backend Protocol ---------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation needs, built once (by the service or the CLI) and passed
    unchanged down to the backend."""

    request_id: int
    prompt_ids: tuple[int, ...]  # the prompt tail as token ids (forced tokens already appended); the backend windows it
    settings: SamplingSettings  # seed: >= 0 reproduces, -1 draws a fresh one
    with_probs: bool = False  # per-token probability + alternatives on every TokenEvent
    top_n: int = 5  # how many alternatives
    preceding_text: str = ""  # the end of the prompt as text (<= 64 chars), for the sentence stop rule
    # True: a writer's edit may cancel it at any moment, so the engine reads the prompt
    # in steps that stop within one token. False (the command line, which has no edits):
    # the engine may read it in larger, faster steps.
    interactive: bool = True

    def __post_init__(self) -> None:
        # Normalised once here, so every engine sees the same thing: a tuple (hashable,
        # picklable, not shared with the caller) and only the tail the stop rule reads.
        object.__setattr__(self, "prompt_ids", tuple(self.prompt_ids))
        if len(self.preceding_text) > PRECEDING_TEXT_CHARS:
            object.__setattr__(self, "preceding_text", self.preceding_text[-PRECEDING_TEXT_CHARS:])


CancelCheck = Callable[[], bool]


class Backend(Protocol):
    """One loaded model in one engine. Driven from one thread.

    generate() streams TokenEvents and always ends with one FinishEvent; should_cancel is
    polled between tokens and between prompt chunks. Token text is decoded from the model
    file's own vocabulary through engine/generation.py's GenerationRun (Utf8Stream +
    StopScanner), so every engine streams and stops identically. Failures are
    EngineError (or WindowError) subclasses, never a crash of the process.
    """

    facts: ModelFacts  # from the project's own validator (GGML or GGUF)
    n_ctx: int  # the context in use (the model's, or less for the memory budget)
    gpu_layers: int  # layers computed on a GPU (0: all on the CPU)

    def generate(
        self, request: GenerationRequest, should_cancel: CancelCheck | None = None
    ) -> Iterator[TokenEvent | FinishEvent]: ...

    def next_token_probs(
        self, prompt_ids: Sequence[int], temperature: float, top_n: int
    ) -> tuple[Alternative, ...]: ...

    def prewarm(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        should_cancel: CancelCheck | None = None,
        upcoming_ids: Sequence[int] = (),
        ahead: GenerationRequest | None = None,
    ) -> int:
        """Evaluate the window of prompt_ids ahead of a generation. upcoming_ids: how the
        prompt will start after the window's next move, for an engine with a sequence to
        prepare it in (llama.cpp); one with a single sequence ignores it. ahead: the
        request the generation will be (same prompt, a seed >= 0), for an engine that
        must evaluate a token before it can draw one (llama.cpp draws its first token
        now); an engine that keeps the last logits ignores it."""
        ...

    def close(self) -> None: ...


# ---- messages from the app to the engine process -------------------------------------


@dataclass(frozen=True)
class LoadCommand:
    path: Path
    threads: int
    context_length: int | None
    engine: str = "ctransformers"  # a name open_backend() knows (engine/backends.py)
    gpu_layers: int = 0  # layers to offload to a GPU, if the engine finds one (llama.cpp)


@dataclass(frozen=True)
class GenerateCommand:
    request: GenerationRequest
    cancel_epoch: int  # cancelled as soon as the shared epoch differs from this


@dataclass(frozen=True)
class ProbsCommand:
    prompt_ids: list[int]
    temperature: float
    top_n: int


@dataclass(frozen=True)
class PrewarmCommand:
    prompt_ids: list[int]
    max_tokens: int  # the window is cut as for a generation of this length
    cancel_epoch: int
    upcoming_ids: list[int] = field(default_factory=list)  # see Backend.prewarm
    ahead: GenerationRequest | None = None  # likewise


@dataclass(frozen=True)
class ShutdownCommand:
    pass


# ---- replies from the engine process ---------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The result of a command other than generate."""

    value: object = None


@dataclass(frozen=True)
class ErrorReply:
    """A command failed in an orderly way; the engine process keeps running."""

    kind: str  # the exception class name, mapped back to an exception in the app
    message: str
    details: dict[str, object] = field(default_factory=dict)
