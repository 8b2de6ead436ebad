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
evaluation that suggestion needs anyway, and leaves the cache hot for it. Suggestions,
probes and prewarms each keep their ids in a RequestLedger (services/ledger.py).

Only signals cross threads; no widget is touched off the GUI thread. Loading a model
happens on a third thread in a NEW engine process, so the current model keeps
suggesting until the new one is ready; then the worker swaps them and closes the old.
When the two would not fit the memory budget together, the worker closes the old one
first and loads the new one in its place (services/model_loading.py).

Failures: every command ends with a message whatever goes wrong, so nothing waits for
ever. If the engine process dies, the writer is told in one sentence, the process is
restarted and the model reloaded, and the next suggestion works again. If llama.cpp
fails while running the model (session.RunningFallbackRule: a failed evaluation, or a
crash right after its restart), the model moves to ctransformers, the command is
answered there, and `engineFallback` says so in one sentence. If it stops
answering (no progress for NOT_RESPONDING_SECONDS while it has work; see
services/engine_watchdog.py), the state becomes NOT_RESPONDING and `notResponding`
fires; restart_engine() then kills and restarts it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import Enum
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from writer_app.engine.cores import Threads, resolve_threads
from writer_app.engine.ggml import InvalidModelFile, ModelFacts, ModelLayout
from writer_app.engine.memory import engine_resident_bytes
from writer_app.engine.process import EngineCrashed
from writer_app.engine.protocol import EngineError, FinishEvent, FinishReason
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.session import (
    DEFAULT_ENGINE,
    OpenedSession,
    RunningFallbackRule,
    TextSession,
    fallback_reason,
    reopen_on_ctransformers,
)
from writer_app.engine.tokenizer import TokenizerCache
from writer_app.engine.window import fit_window
from writer_app.services.engine_watchdog import NOT_RESPONDING_SECONDS, EngineWatchdog
from writer_app.services.ledger import RequestLedger
from writer_app.services.model_loading import LoadOrder, ModelLoader, load_failure
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
    PREPARING = "preparing"  # converting the model for llama.cpp (first use only)
    NOT_RESPONDING = "not responding"  # it has work but shows no progress (hung, stopped)


class _Worker(QObject):
    """Lives on the worker thread; owns the TextSession in use.

    Every command ends with a message whatever goes wrong (_guarded): a suggestion with
    `finished` or `failed`, a probe with `probed` or `probeFailed`, a prewarm with
    `prewarmed` or `failed(-1, ...)`, so nothing waiting on one is left busy.
    """

    token = Signal(int, str)
    step = Signal(int, object)  # request id, TokenStep
    finished = Signal(int, str)  # request id, reason
    failed = Signal(int, str)
    state = Signal(str, str)  # EngineState value, detail
    probed = Signal(int, object)  # probe id, tuple of protocol.Alternative
    prewarmed = Signal(int, int)  # prewarm id, prompt tokens it had to evaluate
    probeFailed = Signal(int, str)  # probe id, a sentence for the writer
    fellBack = Signal(object)  # OpenedSession: llama.cpp failed running, ctransformers took over
    # A load in place of the current model (load_in_place): the new session, or the
    # path, a sentence, and whether the model in use before is back.
    loaded = Signal(object)  # OpenedSession
    loadFailed = Signal(str, str, bool)

    def __init__(self, service: InferenceService) -> None:
        super().__init__()
        self._service = service
        self.session: TextSession | None = None
        self._speed = ""  # of the last generation, for the IDLE state's detail
        self._restart_lock = threading.Lock()
        self._restart_asked = False  # the writer asked for a restart (restart_engine)
        self._rule = RunningFallbackRule()  # when llama.cpp failed while running

    @Slot(int, str, object, object)
    def generate(
        self,
        request_id: int,
        prompt_text: str,
        settings: SamplingSettings,
        forced_ids: tuple[int, ...],
    ) -> None:
        requests = self._service.requests
        with self._command():
            if requests.is_stale(request_id):
                self.finished.emit(request_id, FinishReason.CANCELLED.value)
                return
            session = self.session
            if session is None:
                self.failed.emit(request_id, "No model is loaded yet.")
                return
            self.state.emit(EngineState.THINKING.value, "")
            self._speed = ""
            streamed = [False]  # text of this request reached the writer

            def stream(on: TextSession) -> None:
                self._stream(on, request_id, prompt_text, settings, forced_ids, streamed)

            def again(on: TextSession) -> None:
                # Text the writer already sees can't be taken back, nor continued by
                # another engine's draw: the suggestion ends where it was cut.
                if streamed[0]:
                    self.finished.emit(request_id, FinishReason.CANCELLED.value)
                else:
                    self.state.emit(EngineState.THINKING.value, "")
                    stream(on)

            try:
                with requests.running(request_id):
                    self._run(stream, lambda message: self.failed.emit(request_id, message), again)
            finally:
                state = EngineState.IDLE if self.session else EngineState.NO_MODEL
                self.state.emit(state.value, self._speed)

    def _stream(
        self,
        session: TextSession,
        request_id: int,
        prompt_text: str,
        settings: SamplingSettings,
        forced_ids: tuple[int, ...],
        streamed: list[bool],
    ) -> None:
        requests = self._service.requests
        events = session.generate(
            request_id,
            prompt_text,
            settings,
            with_probs=self._service.step_probabilities,
            top_n=STEP_CHOICES,
            forced_ids=forced_ids,
        )
        for event in events:
            if isinstance(event, FinishEvent):
                if event.tail_text and not requests.is_stale(request_id):
                    self.token.emit(request_id, event.tail_text)  # a held-back "."
                if event.generated_tokens:
                    self._speed = f"{event.tokens_per_second:.0f} tok/s"
                self.finished.emit(request_id, event.reason.value)
            elif requests.is_stale(request_id):
                session.cancel()  # drains the rest of this generation quickly
            else:
                own_text = session.tokenizer.decode([event.token_id])
                self.step.emit(
                    request_id,
                    TokenStep(event.token_id, own_text, event.probability, event.alternatives),
                )
                if event.text:
                    streamed[0] = True
                    self.token.emit(request_id, event.text)

    @Slot(int, str, float, int, int)
    def probe(
        self, probe_id: int, prompt_text: str, temperature: float, top_n: int, max_tokens: int
    ) -> None:
        probes = self._service.probes
        with self._command():
            session = self.session
            if probes.is_stale(probe_id):
                return
            if session is None:
                self.probeFailed.emit(probe_id, "No model is loaded yet.")
                return
            def probe(on: TextSession) -> None:
                # The suggestion's window, in cancellable chunks first; the probabilities
                # then cost one read (the engine's own window of these tokens is all of them).
                ids = on.prompt_ids(prompt_text)
                window = fit_window(ids, n_ctx=on.n_ctx, max_new_tokens=max_tokens)
                on.client.prewarm(window.tokens, max_tokens=max_tokens)
                if probes.is_stale(probe_id):
                    return
                choices = on.client.next_token_probs(window.tokens, temperature, top_n)
                if not probes.is_stale(probe_id):
                    self.probed.emit(probe_id, tuple(choices))

            with probes.running(probe_id):
                self._run(probe, lambda message: self.probeFailed.emit(probe_id, message))

    @Slot(int, str, object)
    def prewarm(self, prewarm_id: int, prompt_text: str, settings: SamplingSettings) -> None:
        """Evaluate the prompt ahead of the suggestion, while the writer is still typing,
        so that when the pause comes only the first new token is left to compute (or
        none: llama.cpp draws it now, from settings and their seed, for the suggestion
        the controller will ask for with them). A
        failure goes out as failed(-1, ...), which no suggestion waits for: a prewarm is
        only an optimisation, and the suggestion that follows reports what's wrong."""
        prewarms = self._service.prewarms
        with self._command():
            session = self.session
            if session is None or prewarms.is_stale(prewarm_id):
                return

            def prewarm(on: TextSession) -> None:
                evaluated = on.prewarm(
                    prompt_text,
                    settings.max_tokens,
                    settings=settings,
                    with_probs=self._service.step_probabilities,
                    top_n=STEP_CHOICES,
                )
                self.prewarmed.emit(prewarm_id, evaluated)

            with prewarms.running(prewarm_id):
                self._run(prewarm, lambda message: self.failed.emit(-1, message))

    @Slot()
    def restart_if_asked(self) -> None:
        """The writer asked for a restart while no command was running: the kill was not
        noticed by one, so restart here (a command that noticed it restarted already)."""
        session = self.session
        if session is None or not self._take_restart_request():
            return
        self.state.emit(EngineState.RESTARTING.value, "")
        self._restart(session, lambda message: self.failed.emit(-1, message))
        self.state.emit(EngineState.IDLE.value, "")

    def ask_restart(self) -> None:
        """Any thread: the next crash the worker sees is the restart the writer asked for."""
        with self._restart_lock:
            self._restart_asked = True

    def _take_restart_request(self) -> bool:
        with self._restart_lock:
            asked, self._restart_asked = self._restart_asked, False
            return asked

    @contextmanager
    def _command(self) -> Iterator[None]:
        watchdog = self._service.watchdog
        watchdog.started()
        try:
            yield
        finally:
            watchdog.done()

    def _run(
        self,
        body: Callable[[TextSession], None],
        fail: Callable[[str], None],
        again: Callable[[TextSession], None] | None = None,
    ) -> None:
        """body(session in use), ending with one sentence through `fail` whatever goes
        wrong. A crashed engine is restarted (and the model reloaded) before the next
        command. When the fallback rule (session.RunningFallbackRule) says llama.cpp
        failed while running, the model moves to ctransformers and the command is
        answered there: again(new session), body by default. Retried, not reported:
        the failure was the engine's, not the request's, and the writer paused for a
        suggestion that ctransformers can give now; the fallback notice is the one
        message (a second one for the same event would only repeat it)."""
        session = self.session
        assert session is not None
        try:
            body(session)
        except EngineCrashed as crash:
            asked = self._take_restart_request()
            reason = None if asked else self._rule.verdict(session.engine, crash)
            if reason is None:
                self.state.emit(EngineState.RESTARTING.value, "")
                fail(RESTARTING_ON_REQUEST if asked else crash_notice(crash))
                self._restart(session, lambda message: self.failed.emit(-1, message))
                self.state.emit(EngineState.IDLE.value, "")
                return
        except (EngineError, ValueError) as error:  # ValueError: e.g. a too-small context
            reason = self._rule.verdict(session.engine, error)
            if reason is None:
                fail(str(error))
                return
        except Exception as error:  # a bug: say so rather than leave the request hanging
            logger.exception("The inference worker failed")
            fail(f"The suggestion engine failed unexpectedly ({type(error).__name__}: {error}).")
            return
        else:
            self._rule.succeeded()
            return
        replacement = self._fall_back(session, reason, fail)
        if replacement is not None:
            self._run(again or body, fail)  # on ctransformers: never falls back again

    def _restart(self, session: TextSession, fail: Callable[[str], None]) -> None:
        """Restart the crashed engine with its model; if that fails, and the fallback
        rule says llama.cpp failed, the model moves to ctransformers."""
        try:
            with self._service.watchdog.excused():  # reloading the model shows no progress
                session.client.restart()
        except (EngineError, InvalidModelFile, OSError) as error:
            reason = self._rule.verdict(session.engine, error)
            if reason is None:
                fail(f"The suggestion engine could not be restarted: {error}")
            else:
                self._fall_back(session, reason, fail)

    def _fall_back(
        self, session: TextSession, reason: str, fail: Callable[[str], None]
    ) -> TextSession | None:
        """Reopen the session's model on ctransformers and use it from now on; the
        writer's choice of engine stays (the next load tries llama.cpp again)."""
        self.state.emit(EngineState.LOADING.value, session.path.name)
        try:
            with self._service.watchdog.excused():  # loading a model shows no progress
                opened = reopen_on_ctransformers(session, reason, threads=self._service.threads)
        except (EngineError, InvalidModelFile, OSError) as error:
            fail(
                f"{session.engine} failed while running {session.path.name} ({reason}), "
                f"and {DEFAULT_ENGINE} could not load it either: {error}"
            )
            return None
        finally:
            self.state.emit(EngineState.IDLE.value, "")
        self.session = opened.session
        session.close()
        self.fellBack.emit(opened)
        return opened.session

    @Slot(object)
    def adopt(self, session: TextSession) -> None:
        self._rule = RunningFallbackRule()  # a new engine process: no crash of its own yet
        old, self.session = self.session, session
        if old is not None and old is not session:  # load_in_place swapped it in already
            old.close()
        self.state.emit(EngineState.IDLE.value, "")

    @Slot(object, object)
    def load_in_place(self, order: LoadOrder, layout: ModelLayout) -> None:
        """Close the engine in use, then load order's model (both would not fit the
        memory budget together). Commands sent meanwhile wait for it here. If the new
        model fails, the one closed is reopened, so the writer keeps a model."""
        old, self.session = self.session, None
        if old is not None:
            old.close()
        self.state.emit(EngineState.LOADING.value, Path(order.path).name)
        tokenizers = self._service.tokenizers
        try:
            with self._service.watchdog.excused():
                opened = order.open(tokenizers, self._preparing(order.path), layout)
        except Exception as error:
            message = load_failure(order.path, error)
            if old is not None:
                back = replace(order, path=str(old.path), engine=old.engine)
                try:
                    with self._service.watchdog.excused():
                        self.session = back.open(tokenizers, self._preparing(back.path)).session
                except Exception as reopen_error:
                    message = (f"{message.rstrip('.')}; {old.path.name} could not be reopened "
                               f"either ({fallback_reason(reopen_error)}).")
            self.loadFailed.emit(order.path, message, self.session is not None)
        else:
            self.session = opened.session
            self.loaded.emit(opened)

    def _preparing(self, path: str) -> Callable[[], None]:
        return lambda: self.state.emit(EngineState.PREPARING.value, Path(path).name)

    @Slot()
    def shutdown(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def crash_notice(crash: EngineCrashed) -> str:
    """What the writer reads when the engine process died under a command."""
    return (
        f"The suggestion engine stopped unexpectedly ({crash.how}); it is restarting, "
        "your text is safe."
    )


RESTARTING_ON_REQUEST = "The suggestion engine is restarting; your text is safe."
NOT_RESPONDING_NOTICE = "The suggestion engine isn't responding."


def engine_threads(requested: Threads, cores: int | None = None) -> int:
    """Threads for the window's engine: "auto" is every physical core but the GUI's, a
    number is capped to the same (engine/cores.py); cores: this machine's by default.

    Measured on 2 cores: with 2 engine threads, ggml's threads take both CPUs and the
    GUI waits for one (stall p99 6-7.5 ms while generating, even with the engine at
    nice 10); with 1, p99 is 1-2.6 ms.
    """
    return resolve_threads(requested, for_window=True, cores=cores)


class InferenceService(SuggestionSource):
    """SuggestionSource backed by the engine process; also owns model switching."""

    _generate = Signal(int, str, object, object)
    _probe = Signal(int, str, float, int, int)
    _prewarm = Signal(int, str, object)  # prewarm_id, prompt_text, SamplingSettings
    _load = Signal(object)  # LoadOrder
    _adopt = Signal(object)
    _shutdown = Signal()
    _restart_if_asked = Signal()

    stateChanged = Signal(str, str)  # EngineState value, detail (e.g. "42 tok/s")
    modelLoaded = Signal(object)  # ModelFacts
    modelFailed = Signal(str, str)  # path, message
    # One sentence: the engine asked for could not load the model, or failed while
    # running it, and another one runs it now ("llama.cpp could not load X (reason);
    # using ctransformers", "llama.cpp failed while running X (reason); using ..."), or
    # it runs without the GPU asked for ("llama.cpp found no GPU; X runs on the CPU").
    engineFallback = Signal(str)
    probabilities = Signal(int, object)  # probe id, tuple of protocol.Alternative, best first
    probabilitiesFailed = Signal(int, str)  # probe id, a sentence for the writer
    prewarmed = Signal(int, int)  # prewarm id, prompt tokens it had to evaluate
    notResponding = Signal()  # the engine has work but made no progress for a while
    respondingAgain = Signal()  # ...and now it moves again (or its work ended)

    def __init__(
        self,
        *,
        threads: int = 1,
        memory_budget_bytes: int | None = None,
        engine: str = DEFAULT_ENGINE,
        gpu_layers: int = 0,
        not_responding_seconds: float = NOT_RESPONDING_SECONDS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.threads = threads  # for the engine's ggml; see engine_threads()
        # The whole app's resident memory to stay within (the context is capped to fit);
        # None: the model's full context.
        self.memory_budget_bytes = memory_budget_bytes
        self.engine = engine  # the engine to load models with (engine/backends.py)
        self.gpu_layers = gpu_layers  # llama.cpp's layers on a GPU, if it finds one
        self.loaded_engine: str | None = None  # the one running the model (after fallback)
        self.facts: ModelFacts | None = None
        self.context_tokens = 0  # of the loaded model: its own context, or the budget's cap
        self.requests = RequestLedger()
        self.probes = RequestLedger()
        self.prewarms = RequestLedger()
        self.watchdog = EngineWatchdog(self._engine_progress, not_responding_seconds, self)
        self.watchdog.stalled.connect(self._on_stalled)
        self.watchdog.recovered.connect(self._on_recovered)
        self.engine_state = EngineState.NO_MODEL.value  # the worker's last reported state
        # Per-token probabilities cost ~15% of generation speed; the token-probability
        # panel turns them on while it is visible.
        self.step_probabilities = False

        self._worker_thread = QThread(self)
        self._worker_thread.setObjectName("inference-worker")
        self._worker = _Worker(self)
        self._worker.moveToThread(self._worker_thread)
        self._loader_thread = QThread(self)
        self._loader_thread.setObjectName("model-loader")
        self.tokenizers = TokenizerCache()  # the loader's and the worker's (load_in_place)
        self._loader = ModelLoader(self.tokenizers)
        self._loader.moveToThread(self._loader_thread)

        self._generate.connect(self._worker.generate)
        self._probe.connect(self._worker.probe)
        self._prewarm.connect(self._worker.prewarm)
        self._worker.prewarmed.connect(self.prewarmed)
        self._adopt.connect(self._worker.adopt)
        self._shutdown.connect(self._worker.shutdown)
        self._restart_if_asked.connect(self._worker.restart_if_asked)
        self._load.connect(self._loader.load)
        self._worker.token.connect(self.token)
        self._worker.step.connect(self.step)
        self._worker.probed.connect(self.probabilities)
        self._worker.probeFailed.connect(self.probabilitiesFailed)
        self._worker.failed.connect(self.failed)
        self._worker.finished.connect(self.finished)
        self._worker.state.connect(self._on_worker_state)
        self._worker.fellBack.connect(self._on_fell_back)
        self._loader.loaded.connect(self._on_loaded)
        self._loader.failed.connect(self._on_load_failed)
        self._loader.preparing.connect(self._on_preparing)
        self._loader.needsRoom.connect(self._worker.load_in_place)  # loader -> worker thread
        self._worker.loaded.connect(self._on_loaded)
        self._worker.loadFailed.connect(self._on_load_failed)
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
        self.requests.note(request_id)
        self.watchdog.sent()
        self._generate.emit(
            request_id, prompt_text, settings.with_changes(seed=seed), tuple(forced_ids)
        )

    def cancel(self, request_id: int) -> None:
        self.requests.cancel(request_id, self._interrupt_engine)

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
        self.probes.note(probe_id)
        self.watchdog.sent()
        self._probe.emit(probe_id, prompt_text, float(temperature), int(top_n), int(max_tokens))

    @property
    def can_probe(self) -> bool:
        """A model is loaded, so next-token probabilities can be asked for."""
        return self.facts is not None

    def cancel_probabilities(self, probe_id: int) -> None:
        """Forget probe `probe_id` (and older): no answer will come for it."""
        # Interrupting stops the prompt evaluation between chunks.
        self.probes.cancel(probe_id, self._interrupt_engine)

    # ---- prewarming ---------------------------------------------------------------------

    def prepare(self, prompt_text: str, settings: SamplingSettings) -> int:
        """Prewarm the prompt while the writer types or moves the cursor. Only the newest
        one matters: a burst of keystrokes queues many, the worker skips all but the
        last, and a prewarm still running is stopped (within one batch of 4 tokens)
        instead of finishing a prompt the writer has left; what it evaluated stays in
        the cache for the next one to reuse. settings are those the suggestion will
        be asked for with, its seed included (llama.cpp draws the first token now)."""
        # Under the ledger's lock the worker can't have moved on to another command, so
        # the interrupt stops the prewarm and nothing sent after it.
        prewarm_id = self.prewarms.issue(self._interrupt_engine)
        self.watchdog.sent()
        self._prewarm.emit(prewarm_id, prompt_text, settings)
        return prewarm_id

    def _interrupt_engine(self) -> None:
        session = self._worker.session
        if session is not None:
            session.cancel()

    # ---- an engine that stops answering ---------------------------------------------------

    def _engine_progress(self) -> int | None:
        session = self._worker.session
        if session is None or session.client.loading:
            return None  # loading a model (e.g. an automatic restart) shows no progress
        return session.client.progress

    def _on_worker_state(self, state: str, detail: str) -> None:
        self.engine_state = state
        self.stateChanged.emit(state, detail)

    def _on_stalled(self) -> None:
        self.stateChanged.emit(EngineState.NOT_RESPONDING.value, "")
        self.notResponding.emit()

    def _on_recovered(self) -> None:
        self.stateChanged.emit(self.engine_state, "")
        self.respondingAgain.emit()

    @property
    def not_responding(self) -> bool:
        return self.watchdog.is_stalled

    def restart_engine(self) -> None:
        """Kill the engine process and start it again with the model (the writer asked,
        e.g. because it isn't responding). What it was doing ends with a message."""
        session = self._worker.session
        if session is None:
            return
        self._worker.ask_restart()
        session.client.kill()  # a blocked command sees the crash and restarts it...
        self._restart_if_asked.emit()  # ...else the worker does, once it is free

    # ---- models -----------------------------------------------------------------------

    @property
    def loading(self) -> bool:
        return self._loading is not None

    def load_model(self, path: str | Path) -> None:
        """Load in the background; the current model keeps suggesting meanwhile, unless
        both would not fit the memory budget (services/model_loading.py)."""
        self._loading = str(path)
        self.stateChanged.emit(EngineState.LOADING.value, Path(path).name)
        current = None
        if self.facts is not None and self.loaded_engine is not None:
            current = engine_resident_bytes(self.facts, self.context_tokens, self.loaded_engine)
        self._load.emit(LoadOrder(
            str(path), self.threads, self.memory_budget_bytes, self.engine, self.gpu_layers,
            current_engine_bytes=current,
        ))

    def _on_preparing(self, path: str) -> None:
        self.stateChanged.emit(EngineState.PREPARING.value, Path(path).name)

    def _on_loaded(self, opened: OpenedSession) -> None:
        session = opened.session
        self._loading = None
        self.facts = session.facts
        self.context_tokens = session.n_ctx
        self.loaded_engine = session.engine
        self._adopt.emit(session)
        if opened.notice:
            self.engineFallback.emit(opened.notice)
        self.modelLoaded.emit(session.facts)

    def _on_fell_back(self, opened: OpenedSession) -> None:
        """llama.cpp failed while running the model and ctransformers runs it now; the
        writer's choice (self.engine) stays for the next load."""
        self.loaded_engine = opened.session.engine
        self.facts = opened.session.facts
        self.context_tokens = opened.session.n_ctx
        self.engineFallback.emit(opened.notice)

    def _on_load_failed(self, path: str, message: str, model_kept: bool = True) -> None:
        self._loading = None
        if not model_kept:  # closed for a load in its place, and it could not be reopened
            self.facts, self.loaded_engine, self.context_tokens = None, None, 0
        self.modelFailed.emit(path, message)
        state = EngineState.IDLE if self.facts else EngineState.NO_MODEL
        self._on_worker_state(state.value, "")  # the worker's last word was "loading"

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Stop generating, close the engine process and the threads. Never hangs."""
        self.requests.cancel_all()
        self.probes.cancel_all()
        self.watchdog.stop()
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

