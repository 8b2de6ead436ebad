"""A loaded model that speaks text: tokenizer + windowing + the engine process.

The CLI and the app's inference worker both talk to the engine through this, so prompt
handling is the same everywhere: only a bounded, prefix-stable tail of the document is
tokenized (text_window_start), turned into the one GenerationRequest that goes down to
the backend unchanged, and the engine process cuts that to the context (fit_window) and
streams back complete UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from writer_app.engine.ggml import InvalidModelFile, ModelFacts, ModelLayout, read_layout
from writer_app.engine.gguf_convert import gguf_for
from writer_app.engine.memory import app_resident_bytes, context_for_budget, footprint
from writer_app.engine.process import EngineClient, EngineCrashed
from writer_app.engine.protocol import (
    Alternative,
    EngineError,
    EvaluationError,
    FinishEvent,
    GenerationRequest,
    ModelLoadError,
    TokenEvent,
)
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.tokenizer import Tokenizer, TokenizerCache
from writer_app.engine.window import (
    fit_window,
    prompt_budget,
    text_window_start,
    upcoming_text_window_start,
    upcoming_window_tokens,
)

# Characters of text per context token that we tokenize at most. English prose averages
# ~4.5 characters per GPT-2 token, so 4 gives a tail that usually fits the context
# whole: then the window moves only where this character window does (in steps of half
# of it, on a word boundary), never twice for the same stretch of typing. Denser text
# (numbers, code, CJK) gives more tokens, which fit_window then cuts in its own steps.
CHARS_PER_TOKEN_BUDGET = 4
DEFAULT_ENGINE = "ctransformers"
LLAMA_CPP = "llama.cpp"


class TextSession:
    """One model in one engine process. Drive it from one thread (cancel(): any thread)."""

    def __init__(
        self,
        client: EngineClient,
        facts: ModelFacts,
        tokenizer: Tokenizer,
        n_ctx: int,
        engine: str = DEFAULT_ENGINE,
    ) -> None:
        self.client = client
        self.facts = facts
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx  # the context the engine uses: the model's, or less (memory)
        self.engine = engine  # the engine that runs it (engine/backends.py)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        threads: int = 1,
        memory_budget_bytes: int | None = None,
        tokenizers: TokenizerCache | None = None,
        engine: str = DEFAULT_ENGINE,
        on_preparing: Callable[[], None] | None = None,
        gpu_layers: int = 0,
        layout: ModelLayout | None = None,
    ) -> TextSession:
        """Start an engine process and load the model (validated before it gets there)
        with the named engine (gpu_layers: on a GPU, if the engine finds one).

        memory_budget_bytes caps the context so the whole app stays within it (see
        engine/memory.py); tokenizers reuses a tokenizer built for the same vocabulary.
        For llama.cpp the GGML file is converted to GGUF here, in the caller's thread,
        on first use (cached beside it; gguf_convert.gguf_for), after on_preparing() is
        called if a conversion is needed; the engine process then finds it cached.
        layout: the file's, if the caller has read it already (read_layout).
        Raises InvalidModelFile, EngineError or OSError (e.g. NotEnoughSpace).
        """
        layout = layout or read_layout(path)
        n_ctx = context_for_budget(layout.facts, memory_budget_bytes, engine)
        tokenizer = (tokenizers or TokenizerCache()).get(layout.vocab)
        if engine == LLAMA_CPP:
            _prepare_for_llama_cpp(Path(path), on_preparing)
        client = EngineClient(auto_restart=True)
        client.start()
        try:
            facts = client.load(
                Path(path), threads=threads, context_length=n_ctx, engine=engine,
                gpu_layers=gpu_layers,
            )
        except BaseException:
            client.close()
            raise
        return cls(client, facts, tokenizer, n_ctx, engine)

    @property
    def path(self) -> Path:
        return Path(self.facts.path)

    def prompt_ids(self, text: str) -> list[int]:
        start = text_window_start(text, self._max_chars)
        ids = self.tokenizer.encode(text[start:])
        if not ids and self.tokenizer.eos_id is not None:
            # An empty page: GPT-2 was trained with <|endoftext|> between documents, so
            # starting from it asks for the beginning of a new text.
            ids = [self.tokenizer.eos_id]
        return ids

    @property
    def _max_chars(self) -> int:
        return self.n_ctx * CHARS_PER_TOKEN_BUDGET

    def upcoming_prompt_ids(self, text: str, prompt_ids: list[int], max_tokens: int) -> list[int]:
        """How the prompt will start after its window's next move, as far as the writer
        has typed it ([] when not yet decided). Two cuts can move: the character window's
        (text_window_start) and, in text denser than CHARS_PER_TOKEN_BUDGET, the token
        window's (fit_window); the one with less room left, at the text's own density of
        tokens per character, is the one to prepare."""
        window = fit_window(prompt_ids, n_ctx=self.n_ctx, max_new_tokens=max_tokens)
        tokens_left = window.start + prompt_budget(self.n_ctx, max_tokens) - len(prompt_ids)
        text_start = text_window_start(text, self._max_chars)
        chars_left = text_start + self._max_chars - len(text)
        tokens_per_char = len(prompt_ids) / max(1, len(text) - text_start)
        if tokens_left < chars_left * tokens_per_char:
            return upcoming_window_tokens(prompt_ids, n_ctx=self.n_ctx, max_new_tokens=max_tokens)
        start = upcoming_text_window_start(text, self._max_chars)
        return [] if start is None else self.tokenizer.encode(text[start:])

    def generate(
        self,
        request_id: int,
        text: str,
        settings: SamplingSettings,
        *,
        with_probs: bool = False,
        top_n: int = 5,
        forced_ids: tuple[int, ...] = (),
        interactive: bool = True,
    ) -> Iterator[TokenEvent | FinishEvent]:
        """Continue `text`. forced_ids are tokens the writer already chose to follow it;
        interactive False: no edit will cancel it (GenerationRequest.interactive)."""
        request = self.request(
            request_id, text, settings, with_probs=with_probs, top_n=top_n, forced_ids=forced_ids
        )
        return self.client.generate(request if interactive else replace(request, interactive=False))

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
        return self._request(request_id, text, self.prompt_ids(text), settings, with_probs, top_n, forced_ids)

    def _request(self, request_id: int, text: str, prompt_ids: list[int], settings: SamplingSettings,
                 with_probs: bool, top_n: int, forced_ids: tuple[int, ...] = ()) -> GenerationRequest:
        preceding = text[-64:] + self.tokenizer.decode(list(forced_ids))
        return GenerationRequest(request_id, (*prompt_ids, *forced_ids), settings, with_probs, top_n, preceding)

    def next_token_probs(self, text: str, temperature: float, top_n: int) -> list[Alternative]:
        return self.client.next_token_probs(self.prompt_ids(text), temperature, top_n)

    def prewarm(
        self,
        text: str,
        max_tokens: int,
        *,
        settings: SamplingSettings | None = None,
        with_probs: bool = False,
        top_n: int = 5,
    ) -> int:
        """Evaluate the prompt for `text` ahead of a suggestion; with an engine that keeps
        a second sequence (llama.cpp), also the prompt after the next window move.
        settings (a seed >= 0, with_probs, top_n): the generate() the pause will ask for,
        whose first token llama.cpp then draws now (Backend.prewarm's `ahead`)."""
        ids = self.prompt_ids(text)
        upcoming = (
            self.upcoming_prompt_ids(text, ids, max_tokens)
            if footprint(self.engine).sequences > 1
            else []
        )
        ahead = None
        if settings is not None and settings.seed >= 0 and settings.max_tokens == max_tokens:
            ahead = self._request(0, text, ids, settings, with_probs, top_n)  # tokenized once
        return self.client.prewarm(ids, max_tokens=max_tokens, upcoming_ids=upcoming, ahead=ahead)

    def cancel(self) -> None:
        self.client.cancel()

    def close(self) -> None:
        self.client.close()


def _prepare_for_llama_cpp(path: Path, on_preparing: Callable[[], None] | None) -> None:
    from writer_app.engine.gguf_check import is_gguf, read_gguf_layout
    from writer_app.engine.gguf_convert import RAW_PIECES_KEY, converted_path

    # A GGUF this app wrote is used as it is; any other file is (re)written once.
    needs_writing = not converted_path(path).exists() and not (
        is_gguf(path) and read_gguf_layout(path).metadata.get(RAW_PIECES_KEY) is True
    )
    if needs_writing and on_preparing is not None:
        on_preparing()
    gguf_for(path)


@dataclass(frozen=True)
class OpenedSession:
    session: TextSession
    notice: str | None  # why the engine asked for was not used, or None


def open_with_fallback(
    path: str | Path,
    *,
    engine: str = DEFAULT_ENGINE,
    threads: int = 1,
    memory_budget_bytes: int | None = None,
    tokenizers: TokenizerCache | None = None,
    on_preparing: Callable[[], None] | None = None,
    gpu_layers: int = 0,
    layout: ModelLayout | None = None,
) -> OpenedSession:
    """TextSession.open with `engine`; if llama.cpp cannot load the model (or convert it),
    the model is opened with ctransformers instead and `notice` says so in one sentence.
    A bad model file is not retried (InvalidModelFile): no engine would take it.
    gpu_layers is llama.cpp's (ctransformers has no GPU path for GPT-2); when it finds no
    GPU, the model runs on the CPU and `notice` says that."""
    options = dict(
        threads=threads, memory_budget_bytes=memory_budget_bytes, tokenizers=tokenizers,
        layout=layout,
    )
    if engine == DEFAULT_ENGINE:
        return OpenedSession(TextSession.open(path, **options), None)  # type: ignore[arg-type]
    try:
        session = TextSession.open(
            path, engine=engine, on_preparing=on_preparing, gpu_layers=gpu_layers,
            **options,  # type: ignore[arg-type]
        )
        notice = None
        if gpu_layers > 0 and session.client.gpu_layers == 0:
            notice = f"{engine} found no GPU; {Path(path).name} runs on the CPU"
        return OpenedSession(session, notice)
    except InvalidModelFile:
        raise
    except (EngineError, OSError) as error:
        reason = fallback_reason(error)
    session = TextSession.open(path, **options)  # type: ignore[arg-type]
    notice = f"{engine} could not load {Path(path).name} ({reason}); using {DEFAULT_ENGINE}"
    return OpenedSession(session, notice)


def fallback_reason(error: BaseException) -> str:
    """The reason of a failure in a few words, for inside parentheses on one line."""
    text = (getattr(error, "strerror", None) if isinstance(error, OSError) else None)
    text = " ".join(str(text or error).split()).rstrip(".")
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {Path(error.filename).name}"
    return text or type(error).__name__


# ---- llama.cpp failing while it runs a model ---------------------------------------------


class RunningFallbackRule:
    """Decides when llama.cpp has failed while running a model it loaded, so that the
    model moves to ctransformers (the one home of this rule; the app's inference worker
    and the command line both ask it).

    Only a session on llama.cpp ever falls back (ctransformers has nothing to fall back
    to). On llama.cpp, a command that ended with

      * EvaluationError: falls back at once. llama.cpp itself reported a failed
        evaluation; the request's own problems are other errors (ContextOverflowError,
        InvalidTokenError, WindowError, NoModelLoaded) and are reported as usual.
      * EngineCrashed: the first crash does not; the engine is restarted on llama.cpp
        as before (one crash can be anything: a signal, the OOM killer). A crash while
        an earlier one is still pending, i.e. with no command succeeding since, falls
        back: llama.cpp dies again right after its restart (a crash loop). The restart's
        own reload counts: a child dying while it reloads the model is that second crash.
      * ModelLoadError: falls back. While running, only the automatic restart loads, so
        this is llama.cpp refusing the model it had loaded before.

    Kills the writer asked for (restart_engine) are not failures: don't pass them here.
    Any command that succeeds clears a pending crash (succeeded()).
    """

    def __init__(self) -> None:
        self._crash: EngineCrashed | None = None  # the crash no success has followed yet

    def succeeded(self) -> None:
        self._crash = None

    def verdict(self, engine: str, error: BaseException) -> str | None:
        """The reason to move the model to ctransformers after `error` ended a command
        on `engine`, in a few words for inside parentheses; None: report the error as
        usual (and restart a crashed engine)."""
        if engine != LLAMA_CPP:
            return None
        if isinstance(error, EngineCrashed):
            earlier, self._crash = self._crash, error
            if earlier is None:
                return None
            return f"it stopped again right after a restart, {error.how}"
        if isinstance(error, (EvaluationError, ModelLoadError)):
            return fallback_reason(error)
        return None


def reopen_on_ctransformers(session: TextSession, reason: str, *, threads: int) -> OpenedSession:
    """The model of `session` in a new engine process on ctransformers, with its tokenizer
    and the longest context that takes no more memory than the session's did (the engines
    hold a context differently: engine/memory.py), and the one-line notice saying why.
    The caller swaps it in and closes `session` (after: if this raises, the caller still
    has a session). Raises InvalidModelFile, EngineError or OSError."""
    same_memory = app_resident_bytes(session.facts, session.n_ctx, session.engine)
    n_ctx = min(session.n_ctx, context_for_budget(session.facts, same_memory, DEFAULT_ENGINE))
    client = EngineClient(auto_restart=True)
    client.start()
    try:
        facts = client.load(
            session.path, threads=threads, context_length=n_ctx, engine=DEFAULT_ENGINE
        )
    except BaseException:
        client.close()
        raise
    replacement = TextSession(client, facts, session.tokenizer, n_ctx, DEFAULT_ENGINE)
    notice = (
        f"{session.engine} failed while running {session.path.name} ({reason}); "
        f"using {DEFAULT_ENGINE}"
    )
    return OpenedSession(replacement, notice)
