"""The SuggestionSource for a completions server: the remote engine on the Qt event loop.

Each request is an asyncio task (qasync, see qt_asyncio.py) streaming from the server;
cancel() cancels the task, which closes the HTTP stream, so the server stops too. The
controller sees exactly what it sees from the local engine: token/step/finished/failed.

    privacy    text goes only to the configured URL; plain http:// to another machine is
               confirmed once (confirm_plain_http) before the first request
    faults     each ends the request with one sentence (failed); the document is never
               touched. When the server is down, busy, slow or cut us off, the source
               probes it in the background with growing pauses and says `recovered`
               when it answers again, so suggestions come back by themselves
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from writer_app.engine.protocol import FinishEvent, FinishReason, GenerationRequest
from writer_app.engine.remote import (
    RemoteClient,
    ServerInfo,
    gpt2_tokenizer,
    prompt_ids_for,
)
from writer_app.engine.remote_config import RemoteConfig
from writer_app.engine.remote_errors import (
    RemoteError,
    ServerBusy,
    ServerTimeout,
    ServerUnreachable,
    StreamCut,
)
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.tokenizer import Tokenizer
from writer_app.services.qt_asyncio import qt_event_loop
from writer_app.services.suggestion import TokenStep
from writer_app.services.suggestion_controller import SuggestionSource

STEP_CHOICES = 8  # as the local engine's worker
PRECEDING_CHARS = 64
PROBE_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # then every 30 s
TRANSIENT = (ServerUnreachable, ServerTimeout, StreamCut, ServerBusy)
ConfirmPlainHttp = Callable[[str], bool]  # host -> may text go there unencrypted?
log = logging.getLogger(__name__)


class RemoteSource(SuggestionSource):
    statusChanged = Signal(str)  # "Remote: host", or with what is wrong
    connected = Signal(object)  # ServerInfo: model, context, capabilities for the sampling panel
    recovered = Signal()  # the server answers again after a transient fault
    # Next-token probabilities at the cursor, as InferenceService answers them.
    probabilities = Signal(int, object)  # probe id, tuple of protocol.Alternative, best first
    probabilitiesFailed = Signal(int, str)  # probe id, a sentence for the writer
    can_probe = True  # the first probe connects, as the first suggestion does

    def __init__(
        self,
        config: RemoteConfig,
        *,
        tokenizer: Tokenizer | None = None,
        confirm_plain_http: ConfirmPlainHttp | None = None,
        probe_delays: tuple[float, ...] = PROBE_DELAYS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.config = config
        self._client = RemoteClient(config, tokenizer or gpt2_tokenizer())
        self._confirm = confirm_plain_http
        self._plain_http_ok: bool | None = None if config.is_plain_http_to_another_machine else True
        self._probe_delays = probe_delays
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._probe: asyncio.Task[None] | None = None
        self._next_token: tuple[int, asyncio.Task[None]] | None = None  # probe id, its task
        self._status = f"Remote: {config.host}"
        # Per-token probabilities on every step, when the probability panel shows them.
        self.step_probabilities = False

    @property
    def status(self) -> str:
        return self._status

    @property
    def info(self) -> ServerInfo | None:
        return self._client.info

    @property
    def offline(self) -> bool:
        return self._probe is not None and not self._probe.done()

    # ---- SuggestionSource ---------------------------------------------------------------

    def request(
        self, request_id: int, prompt_text: str, settings: SamplingSettings, seed: int,
        forced_ids: tuple[int, ...] = (),
    ) -> None:
        if not self._may_send():
            self.failed.emit(
                request_id,
                f"No suggestions: you chose not to send your text unencrypted to {self.config.host}.",
            )
            return
        task = qt_event_loop().create_task(
            self._generate(request_id, prompt_text, settings.with_changes(seed=seed), forced_ids)
        )
        self._tasks[request_id] = task
        task.add_done_callback(lambda _task, rid=request_id: self._tasks.pop(rid, None))

    def cancel(self, request_id: int) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()  # closes the stream; the server stops generating

    # ---- next-token probabilities at the cursor --------------------------------------------

    def request_probabilities(
        self, probe_id: int, prompt_text: str, temperature: float, top_n: int,
        max_tokens: int = 1,
    ) -> None:
        """The server's top_n likeliest next tokens (from its logprobs for one generated
        token), answered by `probabilities`; a newer probe cancels an older one."""
        if self._next_token is not None:
            self._next_token[1].cancel()
        if not self._may_send():
            self.probabilitiesFailed.emit(probe_id, f"Nothing is sent to {self.config.host}.")
            return
        task = qt_event_loop().create_task(
            self._probabilities(probe_id, prompt_text, temperature, top_n)
        )
        self._next_token = (probe_id, task)

    def cancel_probabilities(self, probe_id: int) -> None:
        if self._next_token is not None and self._next_token[0] <= probe_id:
            self._next_token[1].cancel()

    async def _probabilities(
        self, probe_id: int, prompt_text: str, temperature: float, top_n: int
    ) -> None:
        client = self._client
        settings = SamplingSettings(
            temperature=temperature, max_tokens=1, stop_at=StopAt.LENGTH, seed=0
        )
        try:
            info = await client.connect()
            ids = prompt_ids_for(prompt_text, client.tokenizer, info.n_ctx)
            request = GenerationRequest(
                probe_id, tuple(ids), settings, with_probs=True, top_n=top_n,
                preceding_text=prompt_text[-PRECEDING_CHARS:],
            )
            choices: tuple = ()
            async with contextlib.aclosing(client.generate(request)) as events:
                async for event in events:
                    if not isinstance(event, FinishEvent):
                        choices = event.alternatives
                        break
        except RemoteError as error:
            self.probabilitiesFailed.emit(probe_id, str(error))
            return
        self.probabilities.emit(probe_id, tuple(choices))

    # ---- the remote generation ------------------------------------------------------------

    async def _generate(
        self, request_id: int, prompt_text: str, settings: SamplingSettings, forced_ids: tuple[int, ...]
    ) -> None:
        client, tokenizer = self._client, self._client.tokenizer
        if not all(tokenizer.is_valid_id(token_id) for token_id in forced_ids):
            self.failed.emit(request_id, "This server's model does not use GPT-2's tokens, so a "
                                         "token cannot be chosen for it here.")
            return
        try:
            info = await client.connect()
            ids = prompt_ids_for(prompt_text, tokenizer, info.n_ctx) + list(forced_ids)
            preceding = prompt_text + (tokenizer.decode(forced_ids) if forced_ids else "")
            request = GenerationRequest(
                request_id, tuple(ids), settings, with_probs=self.step_probabilities,
                top_n=STEP_CHOICES, preceding_text=preceding[-PRECEDING_CHARS:],
            )
            async with contextlib.aclosing(client.generate(request)) as events:
                async for event in events:
                    if isinstance(event, FinishEvent):
                        if event.tail_text:
                            self.token.emit(request_id, event.tail_text)
                        self.finished.emit(request_id, event.reason.value)
                        break
                    own = tokenizer.decode([event.token_id]) if tokenizer.is_valid_id(event.token_id) else event.text
                    self.step.emit(request_id, TokenStep(event.token_id, own, event.probability, event.alternatives))
                    if event.text:
                        self.token.emit(request_id, event.text)
        except asyncio.CancelledError:
            self.finished.emit(request_id, FinishReason.CANCELLED.value)
            raise
        except RemoteError as error:
            self.failed.emit(request_id, str(error))
            if isinstance(error, TRANSIENT):
                self._go_offline(error)
            return
        except Exception as error:  # a bug must not leave the controller waiting forever
            log.exception("remote generation failed")
            self.failed.emit(request_id, f"The remote engine failed unexpectedly ({type(error).__name__}); "
                                         "your text is safe.")
            return
        self._set_status(f"Remote: {self.config.host}")
        if info is not None:
            self.connected.emit(info)

    def _may_send(self) -> bool:
        if self._plain_http_ok is None:
            self._plain_http_ok = bool(self._confirm and self._confirm(self.config.host))
        return self._plain_http_ok

    # ---- coming back by itself ------------------------------------------------------------

    def _go_offline(self, error: RemoteError) -> None:
        self._set_status(f"Remote: {self.config.host} (not answering; trying again)")
        if not self.offline:
            self._probe = qt_event_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        attempt = 0
        while True:
            delays = self._probe_delays
            await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
            attempt += 1
            self._client.forget()  # it may have restarted with another model or context
            try:
                info = await self._client.connect()
            except RemoteError:
                continue
            self._set_status(f"Remote: {self.config.host}")
            self.connected.emit(info)
            self.recovered.emit()
            return

    def _set_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self.statusChanged.emit(status)

    # ---- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every request and the probe; the connection pool closes in the background."""
        for task in list(self._tasks.values()):
            task.cancel()
        if self._next_token is not None:
            self._next_token[1].cancel()
        if self._probe is not None:
            self._probe.cancel()
        loop = qt_event_loop()
        if not loop.is_closed():
            loop.create_task(self._client.aclose())
