"""The llama.cpp backend, through xllamacpp in-process: the only module that imports it.

Runs inside the engine process, from one thread, like the ctransformers backend, and
keeps its contract: prompts arrive as token ids, and text is decoded from the model
file's own vocabulary through Utf8Stream + StopScanner (the shared GenerationRun), so
both engines stream and stop identically. llama.cpp only ever sees a file that passed
the project's validator (gguf_check), converted from GGML first if need be.

xllamacpp runs llama-server's engine in this process: Server(params) loads the model and
starts its loop on a thread of its own; handle_completions(request, callback) streams one
OpenAI-style chunk per token (the token id is in its logprobs), and the callback
returning True ends the request. How the app's meanings map onto it:

  * Sampling. The sampler chain is set explicitly to penalties -> temperature -> top_k ->
    top_p (then llama.cpp's seeded draw), which is ctransformers' order: its top_p also
    looks at the distribution after the temperature. llama.cpp's repeat_penalty is
    ctransformers' formula (positive logits divided, negative ones multiplied, each
    distinct recent token once), over the last repeat_last_n tokens of prompt and
    suggestion together, as ctransformers' window. Greedy is temperature 0: llama.cpp
    then keeps only the largest (penalized) logit, the argmax. A seed reproduces per
    engine: llama.cpp seeds one generator per request, ctransformers one per token.
  * Probabilities. llama.cpp reports, per token, the softmax of the raw logits at
    temperature 1 (its pre-sampling probabilities), the same unpenalized distribution
    the ctransformers backend shows, so greedy and temperature 1 agree exactly. At other
    temperatures p_T ~ p_1^(1/T) is renormalized over the top PROBS_SCAN tokens plus an
    estimate of the rest (the rest spread evenly); next_token_probs is exact at any
    temperature (a temperature-only chain, whose post-sampling probabilities are the
    full softmax at T).
  * Cancel. ggml can't stop inside an evaluation, so prompts are read in chunks of
    PROMPT_CHUNK tokens (one request each, each reusing the cache of the one before) and
    the cancel check runs between them; during generation the callback checks it at
    every token, so a cancel lands within one token.
  * Threads: exactly the ones asked for compute (prompt and generation), and one HTTP
    worker: xllamacpp always starts llama-server's HTTP listener (on 127.0.0.1, a random
    port); a random API key locks it, since this app never talks to it.
  * Logging: llama.cpp's log is silenced (verbosity -1); a load failure comes back as
    xllamacpp's RuntimeError, reported as one ModelLoadError line.
  * Two sequences (llama.cpp's slots, memory.py's footprint): the writer's window in one,
    and in the other the window the prompt will have after its next move, prepared by
    prewarm() from the upcoming_ids the session sends (the text after the next cut,
    tokens the writer has already typed). GPT-2's positions are absolute, so a moved
    window can't reuse the old cache; without this, the first suggestion after a move
    re-reads the whole window (gpt2-large: 8-10 s). Every request goes to the slot whose
    cache shares the longest prefix with its prompt, so the first one after the move
    finds the standby slot ready and it becomes the writer's; the old one becomes the
    standby. Typing costs each token after the next cut twice, and the standby is read
    in chunks of STANDBY_CHUNK, so a pause waits for little more than one token.
  * The first token ahead. llama.cpp keeps no logits between requests: a prompt it has
    fully cached still costs one token's evaluation before anything is drawn (the
    server re-reads its last token), where ctransformers draws at once. So every
    generation asks for its first token in a request of its own (the request's seed)
    and streams the rest in a second one (seed derive_seed(seed, 1), the first token
    appended to its prompt: it is evaluated once, as it would be anyway). A prewarm
    handed the request the writer's pause will send (`ahead`: same prompt, settings
    and seed) makes that first request then; generate() finds its answer and shows
    the first token at once, as ctransformers does. Seeds reproduce either way.
  * The first token's head start. Starting the rest of a suggestion wakes three threads
    of this process at once (this one, the request's, llama.cpp's loop), where
    ctransformers simply goes on computing on its one thread. With every core but one
    computing, that took the last core from the app's worker thread while it held
    Python's lock with the first token in hand, and the grey text waited 3-9 ms in one
    pause in ten (gpt2-large, 2 cores; the GUI thread was runnable, waiting for a CPU).
    So an interactive request starts its rest FIRST_TOKEN_HEAD_START_S after handing
    the first token over: the writer sees it first, and the suggestion ends 2 ms later.
  * GPU: `gpu_layers` of the model's layers go to the GPUs llama.cpp finds, if its
    build has any (xllamacpp's CUDA, Metal or Vulkan wheels; the CPU wheel has none,
    and then nothing is offloaded: the backend's gpu_layers says 0).
  * Memory: the weights are read, not mmapped (see memory.py: an mmapped file stays
    resident beside llama.cpp's repacked copy of the q4_0 weights).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from writer_app.engine.generation import GenerationRun, derive_seed, prompt_window
from writer_app.engine.ggml import ModelFacts
from writer_app.engine.gguf_check import read_gguf_layout
from writer_app.engine.gguf_convert import gguf_for
from writer_app.engine.llama_stream import CompletionStream, error_of
from writer_app.engine.memory import footprint
from writer_app.engine.protocol import (
    Alternative,
    CancelCheck,
    ContextOverflowError,
    EvaluationError,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    ModelLoadError,
    TokenEvent,
)
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.window import Window

ENGINE_NAME = "llama.cpp"
# Tokens per prompt request and per llama.cpp batch: a cancel waits for at most one
# chunk, and the evaluation scratch stays small (it grows with the batch). Measured on a
# gpt2-shaped q4_0 file, 1 thread, busy machine: chunks of 8 read 90 tok/s (89 ms each),
# 16 read 116 (138 ms), 32 read 125 (257 ms), 64 read 132 (485 ms).
PROMPT_CHUNK = 16
# Tokens per request while preparing the standby sequence: a suggestion asked for
# meanwhile waits for one such chunk (the writer's own prompt is usually 1-2 tokens).
STANDBY_CHUNK = 4
SEQUENCES = footprint(ENGINE_NAME).sequences  # the writer's window, and the next one
PROBS_SCAN = 64  # tokens read to renormalize probabilities at temperatures other than 1
SAMPLERS = ["penalties", "temperature", "top_k", "top_p"]
FIRST_TOKEN_HEAD_START_S = 0.002  # the screen's time to show a first token (module docs)


class LlamaCppBackend:
    """One GPT-2 model loaded into llama.cpp (xllamacpp), with SEQUENCES sequences."""

    def __init__(
        self,
        server: object,
        facts: ModelFacts,
        vocab: list[bytes],
        threads: int,
        n_ctx: int,
        gpu_layers: int = 0,
    ) -> None:
        # Use load(); this constructor trusts its arguments.
        self._server = server
        self.facts = facts
        self._vocab = vocab
        self._threads = threads
        self.n_ctx = n_ctx
        self.gpu_layers = gpu_layers  # offloaded; 0 when no GPU was found
        # Per sequence (llama.cpp's id_slot), the prompt of its last finished request.
        self._cached: list[list[int]] = [[] for _ in range(SEQUENCES)]
        self._slot = 0  # the sequence holding the writer's window
        self._ahead: _Ahead | None = None  # a first token drawn by prewarm (module docs)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        threads: int = 1,
        context_length: int | None = None,
        should_cancel: CancelCheck | None = None,
        gpu_layers: int = 0,
    ) -> LlamaCppBackend:
        """Validate, convert (GGML, or GGUF from elsewhere: see gguf_convert; cached
        beside the model) and load a GPT-2 model, gpu_layers of its layers on a GPU if
        there is one. Raises InvalidModelFile, ModelLoadError, ConversionCancelled or
        OSError (no room to convert)."""
        path = Path(path)
        gguf_path = gguf_for(path, should_cancel)  # validates the source first
        layout = read_gguf_layout(gguf_path)  # raises InvalidModelFile first
        facts = replace(layout.facts, path=path, file_size=path.stat().st_size)
        n_ctx = min(facts.n_ctx, context_length or facts.n_ctx)
        threads = max(1, threads)
        # llama.cpp counts the output layer as one more: n_layer + 1 is all of them.
        offloaded = min(max(0, gpu_layers), facts.n_layer + 1) if gpu_devices() else 0
        server = _start_server(gguf_path, threads, n_ctx, offloaded)
        return cls(server, facts, layout.vocab, threads, n_ctx, offloaded)

    @property
    def n_vocab(self) -> int:
        return self.facts.n_vocab

    @property
    def eos_id(self) -> int | None:
        return self.facts.eos_token_id

    def close(self) -> None:
        self._server = None  # Server's destructor stops its loop and frees the model

    # ---- prompts ---------------------------------------------------------------------

    def _window(self, prompt_ids: Sequence[int], max_tokens: int) -> Window:
        return prompt_window(prompt_ids, self.facts, self.n_ctx, max_tokens)

    def _slot_for(self, ids: Sequence[int]) -> int:
        """The sequence to serve `ids` in, which then holds the writer's window: the one
        whose cache shares the longest prefix with them (the writer's on a tie)."""
        shared = [_common_prefix(cached, ids) for cached in self._cached]
        best = max(range(SEQUENCES), key=lambda slot: (shared[slot], slot == self._slot))
        self._slot = best
        return best

    def _read_prompt(
        self,
        ids: list[int],
        should_cancel: CancelCheck | None,
        slot: int,
        chunk: int = PROMPT_CHUNK,
    ) -> int:
        """Bring sequence `slot`'s cache up to all but the last token of `ids`, `chunk`
        tokens per request, checking should_cancel between requests; returns the tokens
        evaluated. The last token is left to the request that needs its logits."""
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(
                f"{len(ids)} tokens do not fit in the model's context of {self.n_ctx}."
            )
        done = _common_prefix(self._cached[slot], ids)
        evaluated = 0
        while len(ids) - 1 - done > 0:
            if should_cancel is not None and should_cancel():
                break
            end = min(len(ids) - 1, done + chunk)
            result = self._complete({"prompt": ids[:end], "n_predict": 0, **_CHEAP}, slot)
            evaluated += _prompt_n(result)
            self._cached[slot] = ids[:end]
            done = end
        return evaluated

    def prewarm(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        should_cancel: CancelCheck | None = None,
        upcoming_ids: Sequence[int] = (),
        ahead: GenerationRequest | None = None,
    ) -> int:
        """Evaluate the prompt a later generate() will use, so its cache is hot, and
        draw `ahead`'s first token (module docs); then, in the other sequence,
        upcoming_ids: the prompt's start after the window's next move. Returns the
        tokens evaluated in both."""
        should_cancel = should_cancel or _never
        window = self._window(prompt_ids, max_tokens)
        slot = self._slot_for(window.tokens)
        evaluated = self._read_prompt(window.tokens, should_cancel, slot)
        if should_cancel():
            return evaluated
        if ahead is not None and ahead.settings.seed >= 0:
            ahead_window = self._window(ahead.prompt_ids, ahead.settings.max_tokens)
            if ahead_window.tokens == window.tokens:
                run = GenerationRun(ahead)
                result = self._first_token(ahead_window, run, ahead, slot)
                self._ahead = _Ahead(_ahead_key(ahead_window, ahead), slot, result)
                evaluated += _prompt_n(result)
        if _common_prefix(self._cached[slot], window.tokens) < len(window.tokens):
            result = self._complete({"prompt": window.tokens, "n_predict": 0, **_CHEAP}, slot)
            self._cached[slot] = list(window.tokens)
            evaluated += _prompt_n(result)
        if upcoming_ids and SEQUENCES > 1 and not should_cancel():
            upcoming = self._window(upcoming_ids, max_tokens).tokens
            standby = (slot + 1) % SEQUENCES
            evaluated += self._read_prompt(upcoming, should_cancel, standby, STANDBY_CHUNK)
        return evaluated

    def next_token_probs(
        self, prompt_ids: Sequence[int], temperature: float, top_n: int
    ) -> tuple[Alternative, ...]:
        """The top_n most likely next tokens after the (windowed) prompt, as the softmax
        of the logits at `temperature` (0, greedy, shows the model's own: 1)."""
        window = self._window(prompt_ids, 1)
        slot = self._slot_for(window.tokens)
        self._read_prompt(window.tokens, None, slot)
        top_n = max(0, min(top_n, self.n_vocab))
        result = self._complete(
            {
                "prompt": window.tokens,
                "n_predict": 1,
                "samplers": ["temperature"],
                "temperature": temperature if temperature > 0 else 1.0,
                "n_probs": max(1, top_n),
                "post_sampling_probs": True,
                "cache_prompt": True,
            },
            slot,
        )
        self._cached[slot] = list(window.tokens)
        content = _logprobs(result)
        if not content:
            raise EvaluationError("llama.cpp returned no probabilities.")
        return tuple(
            Alternative(int(p["id"]), self.token_text(int(p["id"])), float(p["prob"]))
            for p in content[0]["top_probs"][:top_n]
        )

    def token_text(self, token_id: int) -> str:
        return self._vocab[token_id].decode("utf-8", errors="replace")

    # ---- generation ------------------------------------------------------------------

    def generate(
        self, request: GenerationRequest, should_cancel: CancelCheck | None = None
    ) -> Iterator[TokenEvent | FinishEvent]:
        """Stream the suggestion token by token; the last event is always a FinishEvent."""
        settings = request.settings
        window = self._window(request.prompt_ids, settings.max_tokens)
        should_cancel = should_cancel or _never
        run = GenerationRun(request)
        started = time.perf_counter()
        slot = self._slot_for(window.tokens)
        evaluated = self._read_prompt(window.tokens, should_cancel, slot)
        prompt_done = time.perf_counter()
        if should_cancel():
            run.reason = FinishReason.CANCELLED
        else:
            first = self._take_ahead(window, request, slot)
            if first is None:
                first = self._first_token(window, run, request, slot)
                evaluated += _prompt_n(first)
                prompt_done += _prompt_ms(first) / 1000
            more = yield from self._first(first, run, request)
            if more and request.interactive:
                _give_the_screen_a_head_start()
            if should_cancel():
                run.reason = FinishReason.CANCELLED
            elif more and window.max_new_tokens > 1:
                token = int(_logprobs(first)[0]["id"])
                rest = Window(window.start, [*window.tokens, token], window.max_new_tokens - 1)
                body = {**self._request_json(rest, run, request), "id_slot": slot}
                body["seed"] = derive_seed(run.seed, 1)
                stream = CompletionStream(self._server, body)
                try:
                    yield from self._tokens(stream, run, request, should_cancel)
                finally:
                    stream.close()
                self._cached[slot] = list(rest.tokens)
                if stream.timings:  # its prompt_n counts the first token: not the prompt's
                    evaluated += max(0, int(stream.timings.get("prompt_n", 0)) - 1)
        yield run.finish(
            prompt_tokens=len(window.tokens),
            evaluated_tokens=evaluated,
            window_start=window.start,
            prompt_eval_ms=(prompt_done - started) * 1000,
            generation_ms=(time.perf_counter() - prompt_done) * 1000,
        )

    def _first_token(
        self, window: Window, run: GenerationRun, request: GenerationRequest, slot: int
    ) -> dict:
        """Draw the first token after the window (its prompt read but for the last
        token): one request of its own, with the request's seed (module docs)."""
        body = {**self._request_json(window, run, request), "n_predict": 1, "stream": False}
        result = self._complete(body, slot)
        self._cached[slot] = list(window.tokens)
        if not _logprobs(result):
            raise EvaluationError("llama.cpp drew no token.")
        return result

    def _take_ahead(self, window: Window, request: GenerationRequest, slot: int) -> dict | None:
        """The first token a prewarm drew for exactly this request, if its sequence still
        holds this window and nothing else; forgotten either way."""
        ahead, self._ahead = self._ahead, None
        if (
            ahead is None
            or request.settings.seed < 0
            or ahead.slot != slot
            or ahead.key != _ahead_key(window, request)
            or self._cached[slot] != list(window.tokens)
        ):
            return None
        return ahead.result

    def _first(
        self, result: dict, run: GenerationRun, request: GenerationRequest
    ) -> Generator[TokenEvent, None, bool]:
        """The first token's event; returns whether the run goes on (not at end-of-text
        nor at a stop)."""
        entry = _logprobs(result)[0]
        token = int(entry["id"])
        if token == self.eos_id:
            run.reason = FinishReason.EOS
            return False
        event = self._accept(entry, token, run, request)
        if event is not None:
            yield event
        return not run.stopped

    def _accept(
        self, entry: dict, token: int, run: GenerationRun, request: GenerationRequest
    ) -> TokenEvent | None:
        probability, alternatives = None, ()
        if request.with_probs:
            temperature = 1.0 if run.settings.greedy else run.settings.temperature
            probability, alternatives = self._at_temperature(entry, token, temperature, request.top_n)
        return run.accept(token, self._vocab[token], probability, alternatives)

    def _request_json(
        self, window: Window, run: GenerationRun, request: GenerationRequest
    ) -> dict[str, object]:
        s: SamplingSettings = run.settings
        probs = request.with_probs
        return {
            "prompt": window.tokens,
            "n_predict": window.max_new_tokens,
            "stream": True,
            "cache_prompt": True,
            "seed": run.seed,
            "samplers": SAMPLERS,
            "temperature": 0.0 if s.greedy else s.temperature,
            "top_k": s.top_k,  # 0 is "off" in both engines
            "top_p": s.top_p,
            "min_p": 0.0,
            "repeat_penalty": s.repetition_penalty,
            "repeat_last_n": s.repetition_window,
            # The token id comes with the probabilities: ask for the cheap post-sampling
            # one unless the request wants the whole distribution.
            "n_probs": max(request.top_n, PROBS_SCAN) if probs else 1,
            "post_sampling_probs": not probs,
        }

    def _tokens(
        self, stream: CompletionStream, run: GenerationRun, request: GenerationRequest, should_cancel: CancelCheck
    ) -> Iterator[TokenEvent]:
        stream.start(should_cancel)
        for entry in stream:
            token = int(entry["id"])
            if should_cancel():
                run.reason = FinishReason.CANCELLED
                return
            if token == self.eos_id:
                run.reason = FinishReason.EOS
                return
            event = self._accept(entry, token, run, request)
            if event is not None:
                yield event
            if run.stopped:
                return
        if stream.error:
            raise EvaluationError(f"llama.cpp failed to generate: {stream.error}")
        if stream.finish_reason == "stop":  # llama.cpp ended at end-of-text on its own
            run.reason = FinishReason.EOS
        else:
            run.reason = FinishReason.CANCELLED if should_cancel() else FinishReason.LENGTH

    def _at_temperature(
        self, entry: dict, token: int, temperature: float, top_n: int
    ) -> tuple[float, tuple[Alternative, ...]]:
        """The chosen token's probability and the top_n alternatives at `temperature`,
        from llama.cpp's temperature-1 log-probabilities (exact at 1; see module docs)."""
        top = [(int(p["id"]), float(p["logprob"])) for p in entry["top_logprobs"]]
        chosen = float(entry["logprob"])
        if temperature == 1.0:
            scale = lambda lp: math.exp(lp)  # noqa: E731
        else:
            inverse = 1.0 / temperature
            known = sum(math.exp(lp * inverse) for _, lp in top)
            rest_mass = max(0.0, 1.0 - sum(math.exp(lp) for _, lp in top))
            rest_count = max(1, self.n_vocab - len(top))
            total = known + rest_count * (rest_mass / rest_count) ** inverse
            scale = lambda lp: math.exp(lp * inverse) / total  # noqa: E731
        alternatives = tuple(
            Alternative(i, self.token_text(i), scale(lp)) for i, lp in top[: max(0, top_n)]
        )
        return scale(chosen), alternatives

    def _complete(self, body: dict[str, object], slot: int) -> dict:
        """One non-streaming request in sequence `slot`; its final JSON, or EvaluationError."""
        result = self._server.handle_completions({**body, "id_slot": slot})  # type: ignore[attr-defined]
        error = error_of(result)
        if error:
            raise EvaluationError(f"llama.cpp failed: {error}")
        return result


@dataclass(frozen=True)
class _Ahead:
    """A first token drawn by prewarm: the request it was drawn for, in which sequence,
    and llama.cpp's answer."""

    key: tuple
    slot: int
    result: dict


def _ahead_key(window: Window, request: GenerationRequest) -> tuple:
    # What the first draw depends on; the window holds the prompt and the room left.
    return (tuple(window.tokens), request.settings, request.with_probs, request.top_n)


# Requests that only read a prompt: greedy over no penalties, nothing sampled for real.
_GREEDY_ONLY = {"samplers": ["temperature"], "temperature": 0.0}
_CHEAP = {**_GREEDY_ONLY, "cache_prompt": True}


def gpu_devices() -> list[str]:
    """The GPUs (integrated ones too) this build of llama.cpp can compute on, by name."""
    import xllamacpp

    kinds = xllamacpp.ggml_backend_dev_type
    gpu = {kinds.GGML_BACKEND_DEVICE_TYPE_GPU, kinds.GGML_BACKEND_DEVICE_TYPE_IGPU}
    return [str(d.get("name", "")) for d in xllamacpp.get_device_info() if d.get("type") in gpu]


def _start_server(gguf_path: Path, threads: int, n_ctx: int, gpu_layers: int = 0) -> object:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path)
    # Explicit: llama.cpp's default (-1) offloads what fits to any GPU it finds, which the
    # writer did not ask for and the memory budget does not expect.
    params.n_gpu_layers = gpu_layers
    # llama.cpp splits its context between the sequences, after rounding it up.
    params.n_ctx = footprint(ENGINE_NAME).allocated_tokens(n_ctx)
    params.n_parallel = SEQUENCES
    params.kv_unified = False  # each sequence its own cache: memory.py's model
    params.load_mode = xllamacpp.llama_load_mode.LLAMA_LOAD_MODE_NONE  # read, not mmapped
    params.n_batch = params.n_ubatch = PROMPT_CHUNK
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_threads_http = 1
    params.api_keys = [secrets.token_hex(16)]  # nobody may use the HTTP listener
    params.ctx_shift = False  # the app windows the prompt itself
    params.cache_prompt = True
    params.cache_ram_mib = 0  # no second prompt cache in RAM beyond the slot's own
    params.warmup = False
    params.verbosity = -1
    params.endpoint_metrics = False
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as error:
        raise ModelLoadError(
            f"llama.cpp could not load {gguf_path.name}: {error}".rstrip(".") + "."
        ) from error
    # Server() returns before its loop has started, and the loop's start clears a stop
    # that came earlier: a Server closed that soon never stops (its destructor waits
    # forever; seen about one load in twenty). One request through the loop first proves
    # it runs.
    server.handle_completions(
        {"prompt": [0], "n_predict": 0, "cache_prompt": False, **_GREEDY_ONLY}
    )
    return server


def _prompt_n(result: dict) -> int:
    return int((result.get("timings") or {}).get("prompt_n", 0))


def _prompt_ms(result: dict) -> float:
    return float((result.get("timings") or {}).get("prompt_ms", 0.0))


def _logprobs(result: dict) -> list[dict]:
    choices = result.get("choices") or [{}]
    return (choices[0].get("logprobs") or {}).get("content") or []


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _give_the_screen_a_head_start() -> None:
    time.sleep(FIRST_TOKEN_HEAD_START_S)


def _never() -> bool:
    return False
