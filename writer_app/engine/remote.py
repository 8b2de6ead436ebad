"""The remote engine: generations on any OpenAI-compatible completions server.

Qt-free asyncio on httpx2 (the HTTP client huggingface_hub already brings). One
RemoteClient talks to one server: GET /v1/models to learn what it serves, then one
streaming POST /v1/completions (server-sent events) per suggestion. Closing the stream
(the consumer stops iterating, or its task is cancelled) closes the connection, which
llama.cpp and vLLM take as "stop generating".

The prompt is cut exactly as for the local engines: the caller tokenizes a bounded tail of
the text (prompt_ids_for) and the window is fitted here to the server's context
(fit_window). The vocabulary is GPT-2's, taken from the demo model file the app ships:
every server this is for serves GPT-2 family models, which all share it. Whether the
server's model really uses it is checked once per connection (the server tokenizes a
probe text that BPE merges in non-obvious ways); only then do prompts go as token ids and
generated ids get decoded with our own bytes. Otherwise prompts go as text (the window
decoded back, exactly the same characters) and the server's text is used.

Generated text passes through the project's Utf8Stream + StopScanner exactly as in the
local engines, so suggestions stop in the same places; when the stop rule ends a
suggestion the stream is closed rather than read to max_tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import httpx2

from writer_app.engine.protocol import FinishEvent, GenerationRequest, TokenEvent
from writer_app.engine.remote_config import RemoteConfig
from writer_app.engine.remote_errors import (
    AuthenticationFailed,
    RemoteError,
    ServerBusy,
    ServerRejected,
    ServerTimeout,
    ServerUnreachable,
    StreamCut,
    UnknownModel,
)
from writer_app.engine.remote_events import RemoteRun, no_bytes
from writer_app.engine.tokenizer import Tokenizer
from writer_app.engine.window import fit_window, text_window_start

# Text tokenized per context token at most (as engine/session.py: English averages ~4.5).
CHARS_PER_TOKEN_BUDGET = 4
GPT2_CONTEXT = 1024  # when a server does not say its context, GPT-2's
# BPE merges this in ways a different vocabulary (or a greedy tokenizer) would not.
VOCAB_PROBE = "Hello world, it's 2023: naïve café DEAF 東京 🙂"
MAX_ERROR_CHARS = 200


# ---- the request (the engine seam's GenerationRequest; engine/protocol.py at merge) ------


# ---- what a server can do ----------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """Which sampling controls the server honours; the UI disables the others and says
    why in their tooltip (unsupported())."""

    kind: str  # "llama.cpp", "vLLM" or "OpenAI-compatible"
    token_ids: bool  # prompts go as token ids; generated ids decode with our bytes
    top_k: bool
    repetition_penalty: bool
    repetition_window: bool

    def unsupported(self) -> dict[str, str]:
        """SamplingSettings field -> a sentence saying why the server ignores it."""
        why: dict[str, str] = {}
        generic = (
            f"This {self.kind} server takes only the standard OpenAI settings "
            "(temperature, top-p, length, seed)."
        )
        if not self.top_k:
            why["top_k"] = generic
        if not self.repetition_penalty:
            why["repetition_penalty"] = generic
        if not self.repetition_window:
            why["repetition_window"] = (
                generic if not self.repetition_penalty
                else f"{self.kind} applies the repetition penalty to the whole text, not a window."
            )
        return why


@dataclass(frozen=True)
class ServerInfo:
    models: tuple[str, ...]
    model: str  # the one in use
    n_ctx: int
    capabilities: Capabilities


@functools.cache
def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's exact BPE, from the vocabulary of the demo model file the app ships."""
    from writer_app.assets import demo_model_path
    from writer_app.engine.ggml import read_layout

    return Tokenizer.from_vocab(read_layout(demo_model_path()).vocab)


def prompt_ids_for(text: str, tokenizer: Tokenizer, n_ctx: int) -> list[int]:
    """The prompt tail as token ids, cut as engine/session.py cuts it for local engines."""
    start = text_window_start(text, n_ctx * CHARS_PER_TOKEN_BUDGET)
    return tokenizer.encode(text[start:])


# ---- the client ----------------------------------------------------------------------------


class RemoteClient:
    """One server. Use from one event loop; connect() is optional (generate() does it)."""

    def __init__(self, config: RemoteConfig, tokenizer: Tokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        timeout = httpx2.Timeout(config.read_timeout, connect=config.connect_timeout)
        # trust_env=False: no proxy from the environment; text goes only where configured.
        self._http = httpx2.AsyncClient(
            timeout=timeout, trust_env=False, follow_redirects=False,
            limits=httpx2.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self._info: ServerInfo | None = None
        self._connecting: asyncio.Lock | None = None

    @property
    def info(self) -> ServerInfo | None:
        return self._info

    async def aclose(self) -> None:
        await self._http.aclose()

    def forget(self) -> None:
        """Ask the server again on the next request (it may have restarted or changed)."""
        self._info = None

    # ---- discovery ---------------------------------------------------------------------

    async def connect(self) -> ServerInfo:
        if self._info is not None:
            return self._info
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # N concurrent first requests ask once
            if self._info is None:
                self._info = await self._discover()
        return self._info

    async def _discover(self) -> ServerInfo:
        data = await self._get_json(self.config.base_url + "/models")
        entries = [e for e in (data.get("data") or ()) if isinstance(e, dict) and "id" in e] if isinstance(data, dict) else []
        models = tuple(str(entry["id"]) for entry in entries)
        wanted = self.config.model
        if wanted and models and wanted not in models:
            offered = ", ".join(models[:5]) + (" …" if len(models) > 5 else "")
            raise UnknownModel(f"The server at {self.config.host} has no model named {wanted!r} (it offers: {offered}).")
        if not wanted and not models:
            raise UnknownModel(f"The server at {self.config.host} lists no models; name one in the settings.")
        model = wanted or models[0]
        entry = next((e for e in entries if e["id"] == model), {})
        owner = str(entry.get("owned_by", "")).lower()
        kind = "llama.cpp" if owner == "llamacpp" else "vLLM" if owner == "vllm" else "OpenAI-compatible"
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        n_ctx = int(meta.get("n_ctx") or entry.get("max_model_len") or GPT2_CONTEXT)
        known = kind != "OpenAI-compatible"
        token_ids = known and await self._same_vocabulary(model)
        capabilities = Capabilities(kind, token_ids, top_k=known, repetition_penalty=known,
                                    repetition_window=kind == "llama.cpp")
        return ServerInfo(models, model, n_ctx, capabilities)

    async def _same_vocabulary(self, model: str) -> bool:
        """Does the server tokenize as our GPT-2 tokenizer does? (llama.cpp and vLLM both
        serve /tokenize at the root; the two spell the text field differently.)"""
        body = {"model": model, "content": VOCAB_PROBE, "prompt": VOCAB_PROBE, "add_special": False,
                "add_special_tokens": False}
        try:
            data = await self._post_json(self.config.root_url + "/tokenize", body)
        except (ServerRejected, UnknownModel):
            return False
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return isinstance(tokens, list) and tokens == self.tokenizer.encode(VOCAB_PROBE)

    # ---- generation --------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent | FinishEvent]:
        """Stream one suggestion; the last event is a FinishEvent. Raises RemoteError
        subclasses (each with a sentence for the writer) before or during the stream."""
        info = await self.connect()
        ids = list(request.prompt_ids)
        if not ids and self.tokenizer.eos_id is not None:
            ids = [self.tokenizer.eos_id]  # an empty page: GPT-2 starts a new text
        window = fit_window(ids, n_ctx=info.n_ctx, max_new_tokens=request.settings.max_tokens)
        run = RemoteRun(request, eos_id=self.tokenizer.eos_id, ids_are_ours=info.capabilities.token_ids)
        body = self._completion_body(request, info, window.tokens, window.max_new_tokens, run.seed)
        started = time.perf_counter()
        response = await self._open("POST", self.config.base_url + "/completions", body, stream=True)
        # The stream is read by a task of its own, handing chunks over a queue: when the
        # stop rule ends the suggestion early, cancelling that task unwinds httpx's stack
        # of stream generators in order, in the task that opened them (an abandoned
        # generator would be closed later by the garbage collector, in another task,
        # which httpcore's connection locks do not allow).
        queue: asyncio.Queue[dict | RemoteError | None] = asyncio.Queue()
        reader = asyncio.ensure_future(self._read_stream(response, run, queue))
        first_at: float | None = None
        try:
            while (chunk := await queue.get()) is not None:
                if isinstance(chunk, RemoteError):
                    raise chunk
                first_at = first_at or time.perf_counter()
                for event in run.take(chunk, self._bytes_of(info)):
                    yield event
                if run.done:
                    break
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            await response.aclose()  # a stop-rule end or a cancel: the server stops too
        done = time.perf_counter()
        first_at = first_at or done
        yield run.finish(
            prompt_tokens=len(window.tokens), evaluated_tokens=run.evaluated or len(window.tokens),
            window_start=window.start, prompt_eval_ms=(first_at - started) * 1000,
            generation_ms=(done - first_at) * 1000,
        )

    def _completion_body(self, request: GenerationRequest, info: ServerInfo, tokens: Sequence[int],
                         max_new: int, seed: int) -> dict:
        settings, caps = request.settings, info.capabilities
        body: dict[str, object] = {
            "model": info.model,
            "prompt": list(tokens) if caps.token_ids else self.tokenizer.decode(tokens),
            "max_tokens": max_new,
            "temperature": 0.0 if settings.greedy else settings.temperature,
            "top_p": settings.top_p,
            "seed": seed,
            "stream": True,
        }
        if request.with_probs or caps.token_ids:
            body["logprobs"] = max(1, request.top_n) if request.with_probs else 1
        if caps.kind == "llama.cpp":
            # Its defaults add min_p 0.05; the app's sliders have no such step.
            body.update(min_p=0.0, repeat_penalty=settings.repetition_penalty,
                        repeat_last_n=settings.repetition_window, cache_prompt=True)
            if settings.top_k > 0:
                body["top_k"] = settings.top_k
        elif caps.kind == "vLLM":
            body["repetition_penalty"] = settings.repetition_penalty
            body["top_k"] = settings.top_k if settings.top_k > 0 else -1
            if caps.token_ids:
                body["return_tokens_as_token_ids"] = True
        return body

    def _bytes_of(self, info: ServerInfo) -> Callable[[int], bytes | None]:
        if not info.capabilities.token_ids:
            return no_bytes
        tokenizer = self.tokenizer
        return lambda token_id: tokenizer.token_bytes(token_id) if tokenizer.is_valid_id(token_id) else None

    async def _read_stream(
        self, response: httpx2.Response, run: RemoteRun, queue: asyncio.Queue[dict | RemoteError | None]
    ) -> None:
        try:
            async for chunk in self._chunks(response, run):
                queue.put_nowait(chunk)
        except RemoteError as error:
            queue.put_nowait(error)
        else:
            queue.put_nowait(None)

    async def _chunks(self, response: httpx2.Response, run: RemoteRun) -> AsyncIterator[dict]:
        """The stream's JSON chunks; a cut, a silence or an error event ends in a RemoteError."""
        host = self.config.host
        try:
            async for sse in httpx2.EventSource(response):
                if sse.data.strip() == "[DONE]":
                    # Read on to the end of the body (it ends here): an iteration left
                    # suspended would be closed later by the garbage collector.
                    run.saw_end = True
                    continue
                try:
                    chunk = json.loads(sse.data)
                except json.JSONDecodeError:
                    raise StreamCut(
                        f"The server at {host} sent a garbled stream; the suggestion is incomplete."
                    ) from None
                if isinstance(chunk, dict) and "error" in chunk:
                    raise ServerRejected(f"The server at {host} stopped the completion: {_error_text(chunk)}.")
                if isinstance(chunk, dict):
                    if any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or ()):
                        run.saw_end = True  # some servers close without [DONE]
                    yield chunk
        except httpx2.TimeoutException:
            raise ServerTimeout(
                f"The server at {host} sent nothing for {self.config.read_timeout:g} s; the suggestion was stopped."
            ) from None
        except (httpx2.TransportError, httpx2.StreamError):
            raise StreamCut(
                f"The connection to {host} was cut after {run.generated} tokens; the suggestion is incomplete."
            ) from None
        if not run.saw_end:
            raise StreamCut(
                f"The connection to {host} was cut after {run.generated} tokens; the suggestion is incomplete."
            )

    # ---- HTTP with one-sentence faults ---------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    async def _get_json(self, url: str) -> object:
        return await self._read_json(await self._open("GET", url))

    async def _post_json(self, url: str, body: dict) -> object:
        return await self._read_json(await self._open("POST", url, body))

    async def _read_json(self, response: httpx2.Response) -> object:
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServerRejected(
                f"The server at {self.config.host} answered with something other than JSON; is the address right?"
            ) from None

    async def _open(self, method: str, url: str, body: dict | None = None, *, stream: bool = False) -> httpx2.Response:
        """Send, retrying 429/503 with bounded backoff; a 4xx/5xx becomes a RemoteError."""
        policy, host = self.config.retry, self.config.host
        for attempt in range(policy.retries + 1):
            request = self._http.build_request(method, url, json=body, headers=self._headers())
            try:
                try:
                    response = await self._http.send(request, stream=stream)
                except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError):
                    # A kept-alive connection the server closed just as we reused it
                    # (llama-server drops idle ones after 5 s): once more, on a new one.
                    request = self._http.build_request(method, url, json=body, headers=self._headers())
                    response = await self._http.send(request, stream=stream)
                status = response.status_code
                if status < 400:
                    if not stream:
                        await response.aread()
                    return response
                detail = (await response.aread()).decode("utf-8", "replace")
                await response.aclose()
            except httpx2.ConnectTimeout:
                raise ServerTimeout(
                    f"The server at {host} did not accept a connection within {self.config.connect_timeout:g} s."
                ) from None
            except httpx2.TimeoutException:
                raise ServerTimeout(
                    f"The server at {host} sent nothing for {self.config.read_timeout:g} s; the suggestion was stopped."
                ) from None
            except httpx2.ConnectError:
                raise ServerUnreachable(f"Cannot reach the server at {host}; is it running?") from None
            except httpx2.TransportError:
                raise ServerUnreachable(f"The server at {host} closed the connection without answering.") from None
            if status in (429, 503) and attempt < policy.retries:
                await asyncio.sleep(policy.delay(attempt, response.headers.get("retry-after")))
                continue
            raise self._status_error(status, detail, url, retried=attempt)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _status_error(self, status: int, detail: str, url: str, *, retried: int) -> RemoteError:
        host, message = self.config.host, _error_text(detail)
        if status in (401, 403):
            if not self.config.api_key:
                return AuthenticationFailed(f"The server at {host} needs an API key ({status}).")
            return AuthenticationFailed(
                f"The server at {host} refused the API key {self.config.masked_key} ({status})."
            )
        if status in (429, 503):
            return ServerBusy(
                f"The server at {host} is busy ({status}) and still was after {retried} retries; try again shortly."
            )
        if status == 404 and "model" in message.lower():
            return UnknownModel(f"The server at {host} does not serve the model asked for ({message}).")
        if status == 404:
            path = httpx2.URL(url).path
            return ServerRejected(
                f"The server at {host} has nothing at {path} (404); the address usually ends in /v1."
            )
        return ServerRejected(f"The server at {host} refused the request ({status}: {message}).")


def _error_text(detail: object) -> str:
    """The server's own message, on one short line."""
    data = detail
    if isinstance(detail, str):
        try:
            data = json.loads(detail)
        except json.JSONDecodeError:
            data = detail
    if isinstance(data, dict):
        error = data.get("error", data)
        data = error.get("message", error) if isinstance(error, dict) else error
        if isinstance(data, dict):
            data = data.get("detail") or data.get("message") or json.dumps(data)
    text = " ".join(str(data).split()).rstrip(".") or "no details"
    return text[:MAX_ERROR_CHARS]
