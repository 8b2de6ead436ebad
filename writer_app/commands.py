"""What each command-line mode does. cli.py parses; this module runs.

User mistakes raise CliError (one line on stderr, exit 2). The engine runs in its own
process here too, so even a native crash ends as a message, not a core dump; a first
crash is restarted and the generation tried again, and if llama.cpp fails while running
(engine/session.py's RunningFallbackRule) the run goes on with ctransformers after one
line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from writer_app.assets import demo_model_path
from writer_app.cli_common import (
    DEMO_MODEL_NAME,
    CliError,
    SampleProgress,
    engine_from_args,
    engine_threads_from_args,
    read_prompts,
    refuse_engine_flags_with_server,
    require_stdout,
    sampling_from_args,
    say,
    write_out,
)
from writer_app.engine.ggml import InvalidModelFile, ModelFacts, validate_model_file
from writer_app.engine.printable import printable
from writer_app.engine.process import EngineCrashed
from writer_app.engine.protocol import EngineError, FinishEvent
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.session import (
    RunningFallbackRule,
    TextSession,
    open_with_fallback,
    reopen_on_ctransformers,
)
from writer_app.engine.tokenizer import TokenizerError
from writer_app.engine.window import WindowError
from writer_app.model_choice import memory_quote, models_folder
from writer_app.paths import AppPaths
from writer_app.settings import Settings


def run(args: argparse.Namespace) -> int:
    if args.self_test:
        from writer_app import selftest

        return selftest.run()
    if args.screenshot:
        from writer_app.screenshot import save_screenshot

        return save_screenshot(Path(args.screenshot))
    if args.command in ("complete", "generate"):
        from writer_app import cli_remote

        if args.server:
            refuse_engine_flags_with_server(args)
            return cli_remote.run(args)
        cli_remote.refuse_server_flags_without_server(args)
    if args.command == "complete":
        return complete(args)
    if args.command == "generate":
        return generate(args)
    if args.command == "models":
        if args.models_command == "info":
            return model_info(args)
        from writer_app import cli_models

        return cli_models.run(args)
    from writer_app.app import run_gui

    return run_gui(args.file)


# ---- models ------------------------------------------------------------------------


def resolve_model(name: str | None) -> Path:
    """--model: a path to a GGML file, the name of an installed model, or "demo" (also the
    default). A path that exists but is not a regular file goes on to the validator, which
    refuses it with the reason."""
    if name is None or name == DEMO_MODEL_NAME:
        return demo_model_path()
    candidate = Path(name).expanduser()
    try:
        if not stat.S_ISDIR(candidate.stat().st_mode):
            return candidate
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as error:  # a folder we may not enter, a name too long, ...
        raise CliError(f"cannot use the model {printable(name)}: {error.strerror or error}") from None
    if "/" in name or os.sep in name:
        raise CliError(f"model file not found: {printable(name)}")
    from writer_app.models.errors import ModelsError
    from writer_app.models.store import app_store

    paths = AppPaths.default()
    try:
        return app_store(paths, models_folder(_settings(paths), paths)).find(name).path
    except ModelsError as error:
        # "story.bin" may have meant a file here as much as an installed model.
        raise CliError(f"model file not found: {printable(name)}" if candidate.suffix
                       else str(error)) from None


class _Engine:
    """The session a run generates with. If llama.cpp fails while running the model
    (session.RunningFallbackRule decides), the model moves to ctransformers after one
    line on stderr and the run goes on there."""

    def __init__(self, session: TextSession, threads: int) -> None:
        self.session = session
        self.rule = RunningFallbackRule()
        self._threads = threads

    def fall_back(self, reason: str) -> None:
        old = self.session
        try:
            opened = reopen_on_ctransformers(old, reason, threads=self._threads)
        except (InvalidModelFile, EngineError, OSError) as error:
            raise CliError(f"{old.engine} failed while running {printable(old.path.name)} "
                           f"({reason}), and ctransformers could not load it: {error}") from None
        self.session = opened.session
        old.close()
        note(printable(opened.notice or ""))

    def close(self) -> None:
        self.session.close()


def _open_engine(path: Path, args: argparse.Namespace) -> _Engine:
    """The model on --engine with --threads; if llama.cpp can't take it, ctransformers
    does, after one line on stderr saying why."""
    engine = engine_from_args(args)
    threads = engine_threads_from_args(args)

    def preparing() -> None:
        note(f"preparing {printable(path.name)} for llama.cpp (converting it to GGUF once, "
             "cached beside the model)…")

    try:
        opened = open_with_fallback(path, engine=engine, threads=threads, on_preparing=preparing,
                                    gpu_layers=args.gpu_layers or 0)
    except InvalidModelFile as error:
        raise CliError(str(error)) from None
    except (EngineError, OSError, TokenizerError, WindowError) as error:
        raise CliError(f"could not load {printable(path.name)}: {error}") from None
    if opened.notice:
        note(printable(opened.notice))
    return _Engine(opened.session, threads)


def note(line: str) -> None:
    """A line on stderr that is not an error: the run goes on."""
    print(line, file=sys.stderr, flush=True)


def facts_as_dict(facts: ModelFacts) -> dict[str, object]:
    data = asdict(facts)
    data["path"] = str(facts.path)  # json.dumps escapes what isn't printable
    return data


def model_info(args: argparse.Namespace) -> int:
    try:
        facts = validate_model_file(Path(args.path))
    except InvalidModelFile as error:
        raise CliError(str(error)) from None
    except OSError as error:
        raise CliError(f"cannot read {printable(args.path)}: {error.strerror or error}") from None
    if args.json:
        say(json.dumps(facts_as_dict(facts), indent=2))
        return 0
    mib = 1024 * 1024
    say(f"{printable(Path(facts.path).name)}: a valid GGML GPT-2 model")
    say(f"  quantization   {facts.quantization}")
    say(f"  parameters     {facts.parameter_count:,}")
    say(f"  layers/width   {facts.n_layer} layers, {facts.n_embd} wide, {facts.n_head} heads")
    say(f"  context        {facts.n_ctx} tokens, vocabulary {facts.n_vocab:,}")
    say(f"  file size      {facts.file_size / mib:,.1f} MiB")
    paths = AppPaths.default()
    quote = memory_quote(_settings(paths))
    needed = quote.ram_bytes(facts)
    context = (f"at the context a {quote.budget_bytes // 1_000_000:,} MB budget allows" if quote.budget_bytes
               else "at the full context")
    say(f"  RAM needed     ~{needed / mib:,.0f} MiB (the whole app on {quote.engine}, {context})")
    return 0


def _settings(paths: AppPaths) -> Settings:
    from writer_app.settings import SettingsStore

    return SettingsStore.for_paths(paths).load().settings  # damaged: the defaults


# ---- generation -----------------------------------------------------------------------


def _stream(engine: _Engine, prompt: str, settings: SamplingSettings,
            out: Callable[[str], None] | None, request_id: int = 1) -> FinishEvent:
    """One generation. It is tried again, from the start, after a crash (once: the
    engine restarts with the model) and on ctransformers when the fallback rule says
    llama.cpp failed while running; but never once text went to `out`, which can't be
    taken back: then the failure ends the run."""
    crashed = False
    while True:
        session, written = engine.session, False
        try:
            # No edit can cancel it here, so the engine may read the prompt in batches.
            for event in session.generate(request_id, prompt, settings, interactive=False):
                if isinstance(event, FinishEvent):
                    if out is not None and event.tail_text:
                        out(event.tail_text)
                    engine.rule.succeeded()
                    return event
                if out is not None and event.text:
                    out(event.text)
                    written = True
        except EngineError as error:
            reason = engine.rule.verdict(session.engine, error)
            if written or (reason is None and (crashed or not isinstance(error, EngineCrashed))):
                if isinstance(error, EngineCrashed):
                    raise CliError(f"the engine stopped unexpectedly: {error}") from None
                raise CliError(f"the engine failed: {error}") from None
            if reason is not None:
                engine.fall_back(reason)
            else:  # a first crash: the next call restarts the engine with the model
                crashed = True
                assert isinstance(error, EngineCrashed)
                note(f"{session.engine} stopped unexpectedly ({error.how}); restarting it")
            continue
        raise CliError("the engine ended a generation without finishing it")


def complete(args: argparse.Namespace) -> int:
    settings = sampling_from_args(args)
    if not args.prompt.strip():
        raise CliError("the prompt is empty")
    require_stdout()  # before loading a model for nothing
    engine = _open_engine(resolve_model(args.model), args)
    try:
        _stream(engine, args.prompt, settings, write_out)
        write_out("\n")
    finally:
        engine.close()
    return 0


def generate(args: argparse.Namespace) -> int:
    settings = sampling_from_args(args)
    if args.n < 1:
        raise CliError("--n must be at least 1")
    prompts = read_prompts(Path(args.prompts))
    out_path = Path(args.out)
    try:
        folder_exists = out_path.parent.exists()
    except OSError as error:  # a folder we may not enter, a name too long
        raise CliError(f"cannot write {printable(str(out_path))}: {error.strerror or error}") from None
    if not folder_exists:
        raise CliError(f"output folder does not exist: {printable(str(out_path.parent))}")
    model_path = resolve_model(args.model)
    engine = _open_engine(model_path, args)
    progress = SampleProgress(len(prompts) * args.n)
    # A fixed --seed makes the whole file reproducible: sample k of prompt p gets seed+k.
    base_seed = settings.seed if settings.seed >= 0 else int(time.time_ns() % 2**31)
    try:
        with out_path.open("w", encoding="utf-8") as out:
            request_id = 0
            for prompt in prompts:
                for k in range(args.n):
                    request_id += 1
                    seed = (base_seed + k) % 2**31
                    finish = _stream(engine, prompt, settings.with_changes(seed=seed), None,
                                     request_id)
                    record = {"prompt": prompt, "text": finish.text,
                              "model": printable(model_path.name),
                              "engine": engine.session.engine,  # seeds reproduce per engine
                              "settings": settings.to_dict(),
                              "seed": seed}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    progress.advance()
    except OSError as error:
        raise CliError(f"cannot write {printable(str(out_path))}: {error.strerror or error}") from None
    finally:
        engine.close()
    return 0
