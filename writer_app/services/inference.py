"""The inference service: suggestions from the engine process, on a background thread.

    GUI thread                         worker QThread                 engine process
    InferenceService.request() ──sig──▶ _Worker.generate() ──pipe──▶ ctransformers
    controller ◀──token/finished────── (one event per token) ◀──────
    InferenceService.cancel() ─────────────── shared counter ─────────▶ stops within a token

Every generated token also comes with a TokenStep (its probability and the likeliest
tokens at that step), and a request may force tokens the writer picked (forced_ids).
Next-token probabilities for the cursor position ("probes") run on the same worker,
with their own ids: a newer probe makes older ones stale, cancel_probabilities() stops
one mid-prompt, and a probe evaluates exactly the window a suggestion of the given
length would (fit_window depends on the length), so it never costs more than the prompt
evaluation that suggestion needs anyway, and leaves the cache hot for it.

Only signals cross threads; no widget is touched off the GUI thread. Loading a model
happens on a third thread in a NEW engine process, so the current model keeps
suggesting until the new one is ready; then the worker swaps them and closes the old.
If the engine process dies, the writer is told, the process is restarted and the model
reloaded (EngineClient auto_restart), and the next suggestion works again.
"""

from __future__ import annotations

import logging
import os
import threading
from enum import Enum
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from writer_app.engine.ggml import InvalidModelFile, ModelFacts
from writer_app.engine.process import EngineCrashed
from writer_app.engine.protocol import EngineError, FinishEvent, FinishReason
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.session import TextSession
from writer_app.engine.tokenizer import TokenizerCache
from writer_app.engine.window import fit_window
from writer_app.services.suggestion import TokenStep
from writer_app.services.suggestion_controller import SuggestionSource

# How many of the likeliest tokens each generated token's step reports.
logger = logging.getLogger(__name__)
STEP_CHOICES = 8


class EngineState(str, Enum):
    NO_MODEL = "no model"
    LOADING = "loading"
    IDLE = "idle"
    THINKING = "thinking"
    RESTARTING = "restarting"


class _Worker(QObject):
    """Lives on the worker thread; owns the TextSession in use."""

    token = Signal(int, str)
    step = Signal(int, object)  # request id, TokenStep
    finished = Signal(int, str)  # request id, reason
    failed = Signal(int, str)
    state = Signal(str, str)  # EngineState value, detail
    probed = Signal(int, object)  # probe id, tuple of protocol.Alternative
    prewarmed = Signal(int, int)  # prewarm id, prompt tokens it had to evaluate
    probeFailed = Signal(int, str)  # probe id, a sentence for the writer

    def __init__(self, service: InferenceService) -> None:
        super().__init__()
        self._service = service
        self.session: TextSession | None = None

    @Slot(int, str, object, object)
    def generate(
        self,
        request_id: int,
        prompt_text: str,
        settings: SamplingSettings,
        forced_ids: tuple[int, ...],
    ) -> None:
        service = self._service
        if service.is_stale(request_id):
            self.finished.emit(request_id, FinishReason.CANCELLED.value)
            return
        session = self.session
        if session is None:
            self.failed.emit(request_id, "No model is loaded yet.")
            return
        self.state.emit(EngineState.THINKING.value, "")
        speed = ""
        try:
            service.begin(request_id)
            events = session.generate(
                request_id,
                prompt_text,
                settings,
                with_probs=service.step_probabilities,
                top_n=STEP_CHOICES,
                forced_ids=forced_ids,
            )
            for event in events:
                if isinstance(event, FinishEvent):
                    if event.tail_text and not service.is_stale(request_id):
                        self.token.emit(request_id, event.tail_text)  # a held-back "."
                    if event.generated_tokens:
                        speed = f"{event.tokens_per_second:.0f} tok/s"
                    self.finished.emit(request_id, event.reason.value)
                elif service.is_stale(request_id):
                    session.cancel()  # drains the rest of this generation quickly
                else:
                    own_text = session.tokenizer.decode([event.token_id])
                    self.step.emit(
                        request_id,
                        TokenStep(event.token_id, own_text, event.probability, event.alternatives),
                    )
                    if event.text:
                        self.token.emit(request_id, event.text)
        except EngineCrashed as crash:
            self.state.emit(EngineState.RESTARTING.value, "")
            self.failed.emit(
                request_id,
                f"The suggestion engine stopped unexpectedly ({crash}). It is being "
                "restarted; your text is safe.",
            )
            self._restart(session)
        except EngineError as error:
            self.failed.emit(request_id, str(error))
        finally:
            service.finish(request_id)
            state = EngineState.IDLE if self.session else EngineState.NO_MODEL
            self.state.emit(state.value, speed)

    @Slot(int, str, float, int, int)
    def probe(
        self, probe_id: int, prompt_text: str, temperature: float, top_n: int, max_tokens: int
    ) -> None:
        service = self._service
        session = self.session
        if service.is_stale_probe(probe_id):
            return
        if session is None:
            self.probeFailed.emit(probe_id, "No model is loaded yet.")
            return
        try:
            service.begin_probe(probe_id)
            # The suggestion's window, in cancellable chunks first; the probabilities
            # then cost one read (the engine's own window of these tokens is all of them).
            ids = session.prompt_ids(prompt_text)
            window = fit_window(ids, n_ctx=session.n_ctx, max_new_tokens=max_tokens)
            session.client.prewarm(window.tokens, max_tokens=max_tokens)
            if service.is_stale_probe(probe_id):
                return
            choices = session.client.next_token_probs(window.tokens, temperature, top_n)
        except EngineCrashed as crash:
            self.state.emit(EngineState.RESTARTING.value, "")
            self.probeFailed.emit(
                probe_id, f"The suggestion engine stopped unexpectedly ({crash})."
            )
            self._restart(session)
            self.state.emit(EngineState.IDLE.value, "")
        except EngineError as error:
            self.probeFailed.emit(probe_id, str(error))
        else:
            if not service.is_stale_probe(probe_id):
                self.probed.emit(probe_id, tuple(choices))
        finally:
            service.finish_probe(probe_id)

    @Slot(int, str, int)
    def prewarm(self, prewarm_id: int, prompt_text: str, max_tokens: int) -> None:
        """Evaluate the prompt ahead of the suggestion, while the writer is still typing,
        so that when the pause comes only the first new token is left to compute."""
        session = self.session
        if session is None or self._service.is_stale_prewarm(prewarm_id):
            return
        try:
            self._service.begin_prewarm(prewarm_id)
            evaluated = session.prewarm(prompt_text, max_tokens)
        except EngineCrashed as crash:
            self.state.emit(EngineState.RESTARTING.value, "")
            self.failed.emit(-1, f"The suggestion engine stopped unexpectedly ({crash}).")
            self._restart(session)
            self.state.emit(EngineState.IDLE.value, "")
        except EngineError:
            return  # a prewarm is only an optimisation; the suggestion will say what's wrong
        else:
            self.prewarmed.emit(prewarm_id, evaluated)
        finally:
            self._service.finish_prewarm(prewarm_id)

    def _restart(self, session: TextSession) -> None:
        try:
            session.client.restart()
        except EngineError as error:
            self.failed.emit(-1, f"The suggestion engine could not be restarted: {error}")

    @Slot(object)
    def adopt(self, session: TextSession) -> None:
        old, self.session = self.session, session
        if old is not None:
            old.close()
        self.state.emit(EngineState.IDLE.value, "")

    @Slot()
    def shutdown(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def engine_threads(requested: int, cpus: int | None = None) -> int:
    """Threads for the engine: as asked, but always leaving one CPU to the GUI thread.

    Measured on 2 cores: with 2 engine threads, ggml's threads take both CPUs and the
    GUI waits for one (stall p99 6-7.5 ms while generating, even with the engine at
    nice 10); with 1, p99 is 1-2.6 ms.
    """
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(requested, cpus - 1))


class _Loader(QObject):
    """Loads a model in a fresh engine process on its own thread."""

    loaded = Signal(object)  # TextSession
    failed = Signal(str, str)  # path, message

    def __init__(self) -> None:
        super().__init__()
        self._tokenizers = TokenizerCache()  # only this thread uses it

    @Slot(str, int, object)
    def load(self, path: str, threads: int, memory_budget_bytes: int | None) -> None:
        try:
            session = TextSession.open(
                path,
                threads=threads,
                memory_budget_bytes=memory_budget_bytes,
                tokenizers=self._tokenizers,
            )
        except InvalidModelFile as error:
            self.failed.emit(path, str(error))
        except (EngineError, OSError) as error:
            self.failed.emit(path, f"The model {Path(path).name} could not be loaded: {error}")
        except Exception as error:  # a bug: say so rather than stay "loading…" for ever
            logger.exception("Loading %s failed", path)
            self.failed.emit(path, f"The model {Path(path).name} could not be loaded ({error!r}).")
        else:
            self.loaded.emit(session)


class InferenceService(SuggestionSource):
    """SuggestionSource backed by the engine process; also owns model switching."""

    _generate = Signal(int, str, object, object)
    _probe = Signal(int, str, float, int, int)
    _prewarm = Signal(int, str, int)
    _load = Signal(str, int, object)
    _adopt = Signal(object)
    _shutdown = Signal()

    stateChanged = Signal(str, str)  # EngineState value, detail (e.g. "42 tok/s")
    modelLoaded = Signal(object)  # ModelFacts
    modelFailed = Signal(str, str)  # path, message
    probabilities = Signal(int, object)  # probe id, tuple of protocol.Alternative, best first
    probabilitiesFailed = Signal(int, str)  # probe id, a sentence for the writer
    prewarmed = Signal(int, int)  # prewarm id, prompt tokens it had to evaluate

    def __init__(
        self,
        *,
        threads: int = 1,
        memory_budget_bytes: int | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.threads = threads  # for the engine's ggml; see engine_threads()
        # The whole app's resident memory to stay within (the context is capped to fit);
        # None: the model's full context.
        self.memory_budget_bytes = memory_budget_bytes
        self.facts: ModelFacts | None = None
        self.context_tokens = 0  # of the loaded model: its own context, or the budget's cap
        self._lock = threading.Lock()
        self._latest_request = 0
        self._cancelled_upto = 0
        self._active_request: int | None = None
        self._latest_probe = 0
        self._cancelled_probe_upto = 0
        self._active_probe: int | None = None
        self._latest_prewarm = 0
        self._active_prewarm: int | None = None
        # Per-token probabilities cost ~15% of generation speed; the token-probability
        # panel turns them on while it is visible.
        self.step_probabilities = False

        self._worker_thread = QThread(self)
        self._worker_thread.setObjectName("inference-worker")
        self._worker = _Worker(self)
        self._worker.moveToThread(self._worker_thread)
        self._loader_thread = QThread(self)
        self._loader_thread.setObjectName("model-loader")
        self._loader = _Loader()
        self._loader.moveToThread(self._loader_thread)

        self._generate.connect(self._worker.generate)
        self._probe.connect(self._worker.probe)
        self._prewarm.connect(self._worker.prewarm)
        self._worker.prewarmed.connect(self.prewarmed)
        self._adopt.connect(self._worker.adopt)
        self._shutdown.connect(self._worker.shutdown)
        self._load.connect(self._loader.load)
        self._worker.token.connect(self.token)
        self._worker.step.connect(self.step)
        self._worker.probed.connect(self.probabilities)
        self._worker.probeFailed.connect(self.probabilitiesFailed)
        self._worker.failed.connect(self.failed)
        self._worker.finished.connect(self.finished)
        self._worker.state.connect(self.stateChanged)
        self._loader.loaded.connect(self._on_loaded)
        self._loader.failed.connect(self._on_load_failed)
        self._worker_thread.start()
        self._loader_thread.start()
        self._loading: str | None = None

    # ---- SuggestionSource ------------------------------------------------------------

    def request(
        self,
        request_id: int,
        prompt_text: str,
        settings: SamplingSettings,
        seed: int,
        forced_ids: tuple[int, ...] = (),
    ) -> None:
        with self._lock:
            self._latest_request = max(self._latest_request, request_id)
        self._generate.emit(
            request_id, prompt_text, settings.with_changes(seed=seed), tuple(forced_ids)
        )

    def cancel(self, request_id: int) -> None:
        with self._lock:
            self._cancelled_upto = max(self._cancelled_upto, request_id)
            session = self._worker.session
            running = self._active_request
            if session is not None and running is not None and running <= request_id:
                session.cancel()

    # ---- next-token probabilities at the cursor -----------------------------------------

    def request_probabilities(
        self,
        probe_id: int,
        prompt_text: str,
        temperature: float,
        top_n: int,
        max_tokens: int = SamplingSettings().max_tokens,
    ) -> None:
        """The top_n likeliest tokens after `prompt_text` at `temperature` (0 shows the
        model's own distribution), answered by `probabilities` with the same id. Ids
        must increase; a newer probe makes older ones stale. max_tokens: the length of
        the suggestions being asked for, whose prompt window the probe shares."""
        with self._lock:
            self._latest_probe = max(self._latest_probe, probe_id)
        self._probe.emit(probe_id, prompt_text, float(temperature), int(top_n), int(max_tokens))

    def cancel_probabilities(self, probe_id: int) -> None:
        """Forget probe `probe_id` (and older): no answer will come for it."""
        with self._lock:
            self._cancelled_probe_upto = max(self._cancelled_probe_upto, probe_id)
            session = self._worker.session
            running = self._active_probe
            if session is not None and running is not None and running <= probe_id:
                session.cancel()  # stops the prompt evaluation between chunks

    # ---- used by the worker thread ----------------------------------------------------

    def prepare(self, prompt_text: str, settings: SamplingSettings) -> int:
        """Prewarm the prompt while the writer types or moves the cursor. Only the newest
        one matters: a burst of keystrokes queues many, the worker skips all but the
        last, and a prewarm still running is stopped (within one batch of 8 tokens)
        instead of finishing a prompt the writer has left; what it evaluated stays in
        the cache for the next one to reuse."""
        with self._lock:
            self._latest_prewarm += 1
            prewarm_id = self._latest_prewarm
            session = self._worker.session
            if session is not None and self._active_prewarm is not None:
                # Under the lock the worker can't have moved on to another command, so
                # this stops the prewarm and nothing sent after it.
                session.cancel()
        self._prewarm.emit(prewarm_id, prompt_text, settings.max_tokens)
        return prewarm_id

    def begin_prewarm(self, prewarm_id: int) -> None:
        with self._lock:
            self._active_prewarm = prewarm_id

    def finish_prewarm(self, prewarm_id: int) -> None:
        with self._lock:
            if self._active_prewarm == prewarm_id:
                self._active_prewarm = None

    def is_stale_prewarm(self, prewarm_id: int) -> bool:
        with self._lock:
            return prewarm_id < self._latest_prewarm

    def is_stale_probe(self, probe_id: int) -> bool:
        with self._lock:
            return probe_id <= self._cancelled_probe_upto or probe_id < self._latest_probe

    def begin_probe(self, probe_id: int) -> None:
        with self._lock:
            self._active_probe = probe_id

    def finish_probe(self, probe_id: int) -> None:
        with self._lock:
            if self._active_probe == probe_id:
                self._active_probe = None

    def is_stale(self, request_id: int) -> bool:
        with self._lock:
            return request_id <= self._cancelled_upto or request_id < self._latest_request

    def begin(self, request_id: int) -> None:
        """Mark the request that is running, so cancel() knows whether to interrupt it."""
        with self._lock:
            self._active_request = request_id

    def finish(self, request_id: int) -> None:
        with self._lock:
            if self._active_request == request_id:
                self._active_request = None

    # ---- models -----------------------------------------------------------------------

    @property
    def loading(self) -> bool:
        return self._loading is not None

    def load_model(self, path: str | Path) -> None:
        """Load in the background; the current model keeps suggesting meanwhile."""
        self._loading = str(path)
        self.stateChanged.emit(EngineState.LOADING.value, Path(path).name)
        self._load.emit(str(path), self.threads, self.memory_budget_bytes)

    def _on_loaded(self, session: TextSession) -> None:
        self._loading = None
        self.facts = session.facts
        self.context_tokens = session.n_ctx
        self._adopt.emit(session)
        self.modelLoaded.emit(session.facts)

    def _on_load_failed(self, path: str, message: str) -> None:
        self._loading = None
        self.modelFailed.emit(path, message)
        state = EngineState.IDLE if self.facts else EngineState.NO_MODEL
        self.stateChanged.emit(state.value, "")

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Stop generating, close the engine process and the threads. Never hangs."""
        with self._lock:
            self._cancelled_upto = max(self._cancelled_upto, self._latest_request)
            self._cancelled_probe_upto = max(self._cancelled_probe_upto, self._latest_probe)
        session = self._worker.session
        if session is not None:
            session.cancel()
        self._shutdown.emit()
        for thread in (self._worker_thread, self._loader_thread):
            thread.quit()
            if not thread.wait(timeout_ms):
                thread.terminate()
                thread.wait()
        if self._worker.session is not None:  # the queued shutdown never ran
            self._worker.session.close()

