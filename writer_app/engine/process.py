"""Crash isolation: ctransformers runs in its own process, the app talks to it by pipe.

ctransformers 0.2.27 can segfault or abort (bad files, threads, some batch shapes); in a
child process that costs a restart instead of the writer's document. The child is
started with multiprocessing's "spawn" context (never fork: the app has Qt threads), its
entry point engine_main() is a top-level function of this Qt-free module (so it also
works in a frozen app, whose __main__ calls multiprocessing.freeze_support()), and it
serves one command at a time, so all model calls are serialized on one thread. It opens
models through engine/backends.py's open_backend() and drives them only through the
Backend Protocol (engine/protocol.py), so any registered engine runs here alike.

EngineClient (in the app process; never imports ctransformers):

    client = EngineClient()              # or: with EngineClient() as client:
    client.start()
    facts = client.load(path, threads=1)  # validated here first, then in the child
    for event in client.generate(GenerationRequest(request_id, prompt_ids, settings)):
        ...                               # TokenEvent*, then one FinishEvent
    client.next_token_probs(prompt_ids, temperature, top_n) -> list[Alternative]
    client.prewarm(prompt_ids, max_tokens=24) -> tokens evaluated
    client.cancel()                       # from ANY thread
    client.restart()                      # after EngineCrashed: new child, same model
    client.kill()                         # from ANY thread: end a child that hangs
    client.progress                       # a counter the child bumps as it works
    client.close(timeout=5.0)

Threading: drive it from one worker thread. cancel() is the exception: it bumps a
shared counter the child reads between tokens and between prompt chunks, so it takes
effect within one token even while the worker thread is blocked reading the stream.
A generator abandoned half-way is cancelled and drained before the next command.
kill() is the other: it ends the child at once (even a stopped one), and the call
waiting on it raises EngineCrashed.

Progress: the child bumps a shared counter at every cancel check, i.e. between prompt
chunks and between tokens, so a watcher can tell a busy engine from one that stopped
answering (SIGSTOP, a native hang) without a message through the pipe.

Crashes: if the child dies (segfault, abort, kill) any call, including a generation
in progress, raises EngineCrashed with the exit code or signal; the child is reaped
(no zombies), and a dead child is noticed at once (no hang). The client does NOT
restart by itself unless constructed with auto_restart=True, in which case the next
call after a crash restarts the child and reloads the last model first. A call that was
waiting on the child when it died always raises; a crash noticed before a call is sent
(the child died while idle) is restarted silently with auto_restart.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Protocol

from writer_app.engine.backends import check_engine, open_backend
from writer_app.engine.ggml import InvalidModelFile, ModelFacts, validate_model_file
from writer_app.engine.protocol import (
    Alternative,
    Backend,
    ContextOverflowError,
    EngineError,
    ErrorReply,
    EvaluationError,
    FinishEvent,
    FinishReason,
    GenerateCommand,
    GenerationRequest,
    InvalidTokenError,
    LoadCommand,
    ModelLoadError,
    NoModelLoaded,
    PrewarmCommand,
    ProbsCommand,
    Reply,
    ShutdownCommand,
    TokenEvent,
    check_token_ids,
)
from writer_app.engine.window import WindowError


class EngineCrashed(EngineError):
    """The engine process died; restart() brings it back."""

    def __init__(self, exitcode: int | None) -> None:
        if exitcode is not None and exitcode < 0:
            try:
                how = f"killed by signal {signal.Signals(-exitcode).name}"
            except ValueError:
                how = f"killed by signal {-exitcode}"
        else:
            how = f"exit code {exitcode}"
        super().__init__(f"The text engine stopped unexpectedly ({how}). Restart it to continue.")
        self.exitcode = exitcode
        self.how = how  # "killed by signal SIGKILL", for messages worded by the caller


class EngineClosed(EngineError):
    """The engine was closed (or never started)."""


_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        InvalidTokenError,
        ContextOverflowError,
        EvaluationError,
        ModelLoadError,
        NoModelLoaded,
        WindowError,
        EngineError,
    )
}


# ---- the child -------------------------------------------------------------------------


class _Counter(Protocol):
    """A multiprocessing Value / RawValue of an integer."""

    value: int


def engine_main(conn: Connection, cancel_epoch: _Counter, progress: _Counter | None = None) -> None:
    """Entry point of the engine process: serve commands until shutdown or EOF."""
    # Ctrl+C in a terminal reaches the whole process group; the app decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    backend: Backend | None = None
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            return  # the app is gone
        if isinstance(command, ShutdownCommand):
            return
        try:
            if isinstance(command, LoadCommand):
                check_engine(command.engine)
                if backend is not None:
                    backend.close()
                    backend = None
                backend = open_backend(command)
                conn.send(Reply((backend.facts, backend.gpu_layers)))
                continue
            if backend is None:
                raise NoModelLoaded("No model is loaded yet.")
            _serve(conn, backend, command, cancel_epoch, progress)
        except InvalidModelFile as error:
            conn.send(ErrorReply("InvalidModelFile", error.reason, {"path": str(error.path)}))
        except (EngineError, ValueError) as error:
            conn.send(ErrorReply(type(error).__name__, str(error)))


def _serve(
    conn: Connection,
    backend: Backend,
    command: object,
    cancel_epoch: _Counter,
    progress: _Counter | None,
) -> None:
    def cancelled_since(epoch: int) -> bool:
        # Called between prompt chunks and between tokens: the place to show progress.
        if progress is not None:
            progress.value += 1
        return cancel_epoch.value != epoch

    if isinstance(command, GenerateCommand):
        epoch = command.cancel_epoch
        for event in backend.generate(command.request, lambda: cancelled_since(epoch)):
            conn.send(event)
    elif isinstance(command, ProbsCommand):
        probs = backend.next_token_probs(command.prompt_ids, command.temperature, command.top_n)
        conn.send(Reply(list(probs)))
    elif isinstance(command, PrewarmCommand):
        epoch = command.cancel_epoch
        evaluated = backend.prewarm(
            command.prompt_ids,
            command.max_tokens,
            lambda: cancelled_since(epoch),
            command.upcoming_ids,
            command.ahead,
        )
        conn.send(Reply(evaluated))
    else:
        raise EngineError(f"Unknown engine command {type(command).__name__}.")


# ---- the app side ------------------------------------------------------------------------


class EngineClient:
    """The app's handle on the engine process. See the module docstring for the rules."""

    def __init__(self, *, auto_restart: bool = False) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._auto_restart = auto_restart
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._cancel_epoch = self._context.Value("q", 0)
        # Written by the child only, read here: no lock needed for a word-sized counter.
        self._progress = self._context.RawValue("q", 0)
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._crashed: EngineCrashed | None = None
        self._closing = False
        self._streaming = False  # a generation's events may still be in the pipe
        self._last_load: LoadCommand | None = None
        self._loading = False
        self.facts: ModelFacts | None = None
        self.gpu_layers = 0  # of the loaded model, computed on a GPU

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=engine_main,
            args=(child_conn, self._cancel_epoch, self._progress),
            name="writer-app-engine",
            daemon=True,  # never outlive the app
        )
        process.start()
        child_conn.close()
        self._process, self._conn = process, parent_conn
        self._crashed, self._closing, self._streaming = None, False, False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def progress(self) -> int:
        """A counter the child bumps between prompt chunks and tokens (any thread)."""
        return int(self._progress.value)

    @property
    def loading(self) -> bool:
        """A model is being loaded (also by a restart), which shows no progress."""
        return self._loading

    def kill(self) -> None:
        """End the child at once, even a stopped or hung one. Safe from any thread: the
        call waiting on it raises EngineCrashed; restart() (or auto_restart) brings it
        back with the model."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child: cancel what runs, ask it to exit, kill it if it does not."""
        process, conn = self._process, self._conn
        if process is None or conn is None:
            return
        self._closing = True
        self.cancel()
        try:
            with self._send_lock:
                conn.send(ShutdownCommand())
        except OSError:
            pass  # already gone
        # Keep emptying the pipe while waiting, so a child blocked on a full pipe can
        # finish; unless the worker thread is reading it right now.
        deadline = _Deadline(timeout)
        at_eof = False
        while process.is_alive() and not deadline.passed:
            if not at_eof and self._recv_lock.acquire(blocking=False):
                try:
                    at_eof = _discard_pending(conn)
                finally:
                    self._recv_lock.release()
            wait([process.sentinel], min(0.05, deadline.remaining))
        self._reap(process)
        with self._recv_lock:
            conn.close()
        self._process, self._conn = None, None
        self._streaming = False

    def restart(self) -> ModelFacts | None:
        """A fresh child with the last loaded model (if any); returns its facts."""
        self.close(timeout=1.0)
        self.start()
        if self._last_load is None:
            return None
        return self._load(self._last_load)

    def __enter__(self) -> EngineClient:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- commands --------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running (and any already sent) generation or prewarm within a token.
        Safe from any thread."""
        with self._cancel_epoch.get_lock():
            self._cancel_epoch.value += 1

    def load(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int = 1,
        context_length: int | None = None,
        engine: str = "ctransformers",
        gpu_layers: int = 0,
    ) -> ModelFacts:
        """Load a model (replacing the current one) with the named engine (see
        engine/backends.py), gpu_layers on a GPU if it finds one (then self.gpu_layers
        says how many went there). Raises InvalidModelFile for a bad file before the
        child ever sees it, ModelLoadError if the engine refuses it, EngineError for an
        unknown engine."""
        check_engine(engine)
        validate_model_file(path)
        command = LoadCommand(Path(path), max(1, threads), context_length, engine, gpu_layers)
        return self._load(command)

    def _load(self, command: LoadCommand) -> ModelFacts:
        self._loading = True
        try:
            facts, gpu_layers = self._request(command)  # type: ignore[misc]
        finally:
            self._loading = False
        assert isinstance(facts, ModelFacts)
        self._last_load, self.facts, self.gpu_layers = command, facts, int(gpu_layers)
        return facts

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent | FinishEvent]:
        """Start a generation; iterate for its events (TokenEvent*, then FinishEvent).

        Checked before anything is sent: the token ids (InvalidTokenError). The request
        goes to the backend unchanged; the engine windows the prompt to fit the context.
        """
        self._checked_ids(request.prompt_ids)
        self._prepare()
        self._send(GenerateCommand(request, self._cancel_epoch.value))
        self._streaming = True
        return self._events(request.request_id)

    def next_token_probs(
        self, prompt_ids: Sequence[int], temperature: float = 1.0, top_n: int = 10
    ) -> list[Alternative]:
        result = self._request(ProbsCommand(self._checked_ids(prompt_ids), temperature, top_n))
        return list(result)  # type: ignore[call-overload]

    def prewarm(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int = 24,
        upcoming_ids: Sequence[int] = (),
        ahead: GenerationRequest | None = None,
    ) -> int:
        """Evaluate the prompt ahead of a generation (and upcoming_ids, ahead:
        Backend.prewarm); returns the tokens it evaluated."""
        ids = self._checked_ids(prompt_ids)
        upcoming = self._checked_ids(upcoming_ids) if upcoming_ids else []
        self._prepare()
        command = PrewarmCommand(ids, max_tokens, self._cancel_epoch.value, upcoming, ahead)
        self._send(command)
        return int(self._reply())  # type: ignore[call-overload]

    # ---- plumbing --------------------------------------------------------------------

    def _checked_ids(self, prompt_ids: Sequence[int]) -> list[int]:
        if self.facts is None:
            raise NoModelLoaded("Load a model before generating.")
        return check_token_ids(prompt_ids, self.facts.n_vocab)

    def _request(self, command: object) -> object:
        self._prepare()
        self._send(command)
        return self._reply()

    def _prepare(self) -> None:
        """Ready for a new command: running, and no stale events left in the pipe."""
        process = self._process
        died_while_idle = process is not None and not self._closing and not process.is_alive()
        if self._crashed is None and died_while_idle:
            self._died()
        if self._crashed is not None:
            if not self._auto_restart:
                raise self._crashed
            self.restart()
        if self._process is None or self._closing:
            raise EngineClosed("The text engine is not running; start() it first.")
        if self._streaming:
            self.cancel()
            for _event in self._events(None):
                pass

    def _send(self, command: object) -> None:
        assert self._conn is not None
        try:
            with self._send_lock:
                self._conn.send(command)
        except OSError:
            raise self._died() from None

    def _reply(self) -> object:
        message = self._receive()
        if isinstance(message, ErrorReply):
            raise _error_from(message)
        if not isinstance(message, Reply):
            raise EngineError(f"Unexpected message from the engine: {type(message).__name__}.")
        return message.value

    def _events(self, request_id: int | None) -> Iterator[TokenEvent | FinishEvent]:
        try:
            while self._streaming:
                try:
                    message = self._receive()
                except EngineClosed:
                    self._streaming = False
                    yield _cancelled(request_id)
                    return
                if isinstance(message, ErrorReply):
                    self._streaming = False
                    raise _error_from(message)
                if isinstance(message, FinishEvent):
                    self._streaming = False
                yield message  # type: ignore[misc]
        finally:
            # Abandoned half-way: stop the child's work; the next command drains the rest.
            if self._streaming:
                self.cancel()

    def _receive(self) -> object:
        """The next message from the child; raises EngineCrashed if it died instead."""
        process, conn = self._process, self._conn
        if process is None or conn is None:
            raise EngineClosed("The text engine was closed.")
        while True:
            try:
                ready = wait([conn, process.sentinel])
                with self._recv_lock:
                    if conn.poll():
                        return conn.recv()
            except (EOFError, OSError):
                # The child's end of the pipe closed, or close() closed ours.
                raise self._died() from None
            if process.sentinel in ready:
                raise self._died()

    def _died(self) -> EngineError:
        """The exception for a child that is gone: closed on purpose, or crashed."""
        process = self._process
        if process is not None:
            self._reap(process)
        self._streaming = False
        if self._closing:
            return EngineClosed("The text engine was closed.")
        self._crashed = EngineCrashed(process.exitcode if process is not None else None)
        return self._crashed

    @staticmethod
    def _reap(process: multiprocessing.process.BaseProcess) -> None:
        process.join(timeout=0.5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        import time

        self._clock = time.monotonic
        self._end = self._clock() + max(0.0, seconds)

    @property
    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    @property
    def passed(self) -> bool:
        return self.remaining <= 0.0


def _discard_pending(conn: Connection) -> bool:
    """Drop whatever the child has sent; True once its end of the pipe is closed."""
    try:
        while conn.poll():
            conn.recv()
    except (EOFError, OSError):
        return True
    return False


def _error_from(message: ErrorReply) -> Exception:
    if message.kind == "InvalidModelFile":
        return InvalidModelFile(str(message.details.get("path", "model")), message.message)
    return _ERRORS.get(message.kind, EngineError)(message.message)


def _cancelled(request_id: int | None) -> FinishEvent:
    return FinishEvent(
        request_id=request_id if request_id is not None else -1,
        reason=FinishReason.CANCELLED,
        text="",
        tail_text="",
        prompt_tokens=0,
        evaluated_tokens=0,
        window_start=0,
        generated_tokens=0,
        prompt_eval_ms=0.0,
        generation_ms=0.0,
    )
