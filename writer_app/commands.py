"""What each command-line mode does. cli.py parses; this module runs.

User mistakes raise CliError (one line on stderr, exit 2). The engine runs in its own
process here too, so even a native crash ends as a message, not a core dump.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from writer_app.assets import demo_model_path
from writer_app.cli import CliError, sampling_from_args
from writer_app.engine.ggml import InvalidModelFile, ModelFacts, validate_model_file
from writer_app.engine.process import EngineCrashed
from writer_app.engine.protocol import EngineError, FinishEvent
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.session import TextSession
from writer_app.paths import AppPaths


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
    """--model: a path to a GGML file, or the name of an installed model; default demo."""
    if name is None:
        return demo_model_path()
    candidate = Path(name).expanduser()
    if candidate.is_file():
        return candidate
    if "/" in name or os.sep in name:
        raise CliError(f"model file not found: {name}")
    from writer_app.models.errors import ModelsError
    from writer_app.models.store import app_store
    from writer_app.settings import SettingsStore

    paths = AppPaths.default()
    chosen_dir = SettingsStore.for_paths(paths).load().settings.models.models_dir
    try:
        models_dir = Path(chosen_dir).expanduser() if chosen_dir else None
        return app_store(paths, models_dir).find(name).path
    except ModelsError as error:
        # "story.bin" may have meant a file here as much as an installed model.
        raise CliError(f"model file not found: {name}" if candidate.suffix else str(error)) from None


def _open_session(path: Path) -> TextSession:
    try:
        return TextSession.open(path)
    except InvalidModelFile as error:
        raise CliError(str(error)) from None
    except (EngineError, OSError) as error:
        raise CliError(f"could not load {path.name}: {error}") from None


def facts_as_dict(facts: ModelFacts) -> dict[str, object]:
    data = asdict(facts)
    data["path"] = str(facts.path)
    return data


def model_info(args: argparse.Namespace) -> int:
    try:
        facts = validate_model_file(Path(args.path))
    except InvalidModelFile as error:
        raise CliError(str(error)) from None
    except OSError as error:
        raise CliError(f"cannot read {args.path}: {error.strerror or error}") from None
    if args.json:
        print(json.dumps(facts_as_dict(facts), indent=2))
        return 0
    mib = 1024 * 1024
    print(f"{Path(facts.path).name}: a valid GGML GPT-2 model")
    print(f"  quantization   {facts.quantization}")
    print(f"  parameters     {facts.parameter_count:,}")
    print(f"  layers/width   {facts.n_layer} layers, {facts.n_embd} wide, {facts.n_head} heads")
    print(f"  context        {facts.n_ctx} tokens, vocabulary {facts.n_vocab:,}")
    print(f"  file size      {facts.file_size / mib:,.1f} MiB")
    print(f"  RAM needed     ~{facts.estimated_ram_bytes / mib:,.0f} MiB")
    return 0


# ---- generation -----------------------------------------------------------------------


def _stream(session: TextSession, prompt: str, settings: SamplingSettings, out: TextIO | None,
            request_id: int = 1) -> FinishEvent:
    try:
        for event in session.generate(request_id, prompt, settings):
            if isinstance(event, FinishEvent):
                if out is not None and event.tail_text:
                    out.write(event.tail_text)
                    out.flush()
                return event
            if out is not None and event.text:
                out.write(event.text)
                out.flush()
    except EngineCrashed as crash:
        raise CliError(f"the engine stopped unexpectedly: {crash}") from None
    raise CliError("the engine ended a generation without finishing it")


def complete(args: argparse.Namespace) -> int:
    settings = sampling_from_args(args)
    if not args.prompt.strip():
        raise CliError("the prompt is empty")
    session = _open_session(resolve_model(args.model))
    try:
        _stream(session, args.prompt, settings, sys.stdout)
        sys.stdout.write("\n")
    finally:
        session.close()
    return 0


def _read_prompts(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"prompt file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read prompt file {path}: {error}") from None
    prompts = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not prompts:
        raise CliError(f"the prompt file {path} has no prompts (one per line)")
    return prompts


class _ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        # sys.stderr looked up now, not at import: pytest's capture swaps it per test.
        self.total, self.stream, self.done = total, stream or sys.stderr, 0
        self.started = time.monotonic()
        self.tty = self.stream.isatty()

    def advance(self) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(30 * self.done / self.total)
        line = (f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} samples"
                f" · {rate:.2f}/s · {left:.0f}s left")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def generate(args: argparse.Namespace) -> int:
    settings = sampling_from_args(args)
    if args.n < 1:
        raise CliError("--n must be at least 1")
    prompts = _read_prompts(Path(args.prompts))
    out_path = Path(args.out)
    if not out_path.parent.exists():
        raise CliError(f"output folder does not exist: {out_path.parent}")
    model_path = resolve_model(args.model)
    session = _open_session(model_path)
    progress = _ProgressBar(len(prompts) * args.n)
    # A fixed --seed makes the whole file reproducible: sample k of prompt p gets seed+k.
    base_seed = settings.seed if settings.seed >= 0 else int(time.time_ns() % 2**31)
    try:
        with out_path.open("w", encoding="utf-8") as out:
            request_id = 0
            for prompt in prompts:
                for k in range(args.n):
                    request_id += 1
                    seed = (base_seed + k) % 2**31
                    finish = _stream(session, prompt, settings.with_changes(seed=seed), None,
                                     request_id)
                    record = {"prompt": prompt, "text": finish.text,
                              "model": model_path.name, "settings": settings.to_dict(),
                              "seed": seed}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    progress.advance()
    except OSError as error:
        raise CliError(f"cannot write {out_path}: {error.strerror or error}") from None
    finally:
        session.close()
    return 0
