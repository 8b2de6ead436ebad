"""What every command-line module shares: the one-line error, the sampling flags, output.

cli.py (parsing), commands.py and cli_models.py (running) all import this module and it
imports none of them, so the three form no circle.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TextIO

from writer_app.engine.backends import ENGINES, GPU_ALL_LAYERS
from writer_app.engine.cores import resolve_threads
from writer_app.engine.printable import printable
from writer_app.engine.sampling import SamplingSettings

EXIT_USAGE = 2
# What a shell reports for a program that SIGPIPE ended: a reader that went away (e.g.
# `| head -c1`) is not a mistake, so it ends quietly with the status Unix tools give.
EXIT_BROKEN_PIPE = 128 + 13

# The name `--model` accepts for the model that ships with the app.
DEMO_MODEL_NAME = "demo"


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


class OutputClosed(Exception):
    """Whoever read standard output has gone away: stop quietly."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's default prints usage too
        raise CliError(f"{self.prog}: {message}")


# ---- sampling flags: ranges and help generated from SamplingSettings.LIMITS ---------------

# flag -> (the SamplingSettings field, its type, what it does)
_SAMPLING_FLAGS: dict[str, tuple[str, type, str]] = {
    "--temperature": ("temperature", float, "0 is greedy; higher is more adventurous"),
    "--top-k": ("top_k", int, "sample among the K likeliest tokens; 0 turns it off"),
    "--top-p": ("top_p", float, "sample among the likeliest tokens covering P of the probability"),
    "--repetition-penalty": ("repetition_penalty", float, "discourage repeating recent tokens"),
    "--repetition-window": ("repetition_window", int, "how many recent tokens the penalty looks at"),
    "--max-tokens": ("max_tokens", int, "longest continuation, in tokens"),
}


def limits_text(field: str) -> str:
    low, high = SamplingSettings.LIMITS[field]
    return f"{low} to {high}"


def _number_in(low: float, high: float, kind: type = int) -> Callable[[str], object]:
    """An argparse type that parses `kind` and refuses values outside low to high."""

    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{printable(text)!r} is not {'a number' if kind is float else 'a whole number'}"
            ) from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{printable(text)} is outside {low} to {high}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _ranged(flag: str, field: str, kind: type) -> Callable[[str], object]:
    """An argparse type for a sampling flag: `kind` within SamplingSettings.LIMITS[field]."""
    low, high = SamplingSettings.LIMITS[field]
    return _number_in(low, high, kind)


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    defaults = SamplingSettings()
    group = parser.add_argument_group("sampling")
    for flag, (field, kind, what) in _SAMPLING_FLAGS.items():
        group.add_argument(flag, type=_ranged(flag, field, kind), default=getattr(defaults, field),
                           help=f"{what} ({limits_text(field)}; default %(default)s)")
    group.add_argument("--seed", type=_ranged("--seed", "seed", int), default=None,
                       help=f"fix the random seed so the same settings reproduce the same text "
                            f"({limits_text('seed')}; -1 or no flag: a new one each run)")
    group.add_argument("--stop-at", choices=["sentence", "paragraph", "length"], default="length",
                       help="where a continuation may end (default: only the length limit)")


def sampling_from_args(args: argparse.Namespace) -> SamplingSettings:
    try:
        return SamplingSettings(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            repetition_window=args.repetition_window,
            max_tokens=args.max_tokens,
            seed=-1 if args.seed is None else args.seed,
            stop_at=args.stop_at,
        )
    except ValueError as exc:
        raise CliError(f"invalid sampling setting: {exc}") from None


# ---- engine flags ------------------------------------------------------------------------

MAX_THREADS = 64


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=ENGINES, default=None,
                       help=f"which engine runs the model (default: {ENGINES[0]}); llama.cpp "
                            "converts a GGML file to GGUF on first use, cached beside it")
    group.add_argument("--threads", type=_number_in(1, MAX_THREADS), default=None,
                       help="engine threads (default: every physical core; never more "
                            "than there are)")
    group.add_argument("--gpu-layers", type=_number_in(0, GPU_ALL_LAYERS), default=None, metavar="N",
                       help=f"llama.cpp: compute N layers on a GPU, {GPU_ALL_LAYERS} for all "
                            "(default 0; a build without GPU support runs on the CPU and "
                            "says so)")


def engine_from_args(args: argparse.Namespace) -> str:
    return args.engine or ENGINES[0]


def refuse_engine_flags_with_server(args: argparse.Namespace) -> None:
    """--engine, --threads and --gpu-layers choose how a local model runs: with --server they would
    mean nothing, so say so rather than ignore them."""
    for flag, value in (("--engine", args.engine), ("--threads", args.threads),
                        ("--gpu-layers", args.gpu_layers)):
        if value is not None:
            raise CliError(f"{flag} is for a local model; it can't be used with --server")


def engine_threads_from_args(args: argparse.Namespace) -> int:
    """--threads, or "auto": every physical core (the command line keeps no window)."""
    return resolve_threads(args.threads if args.threads is not None else "auto",
                           for_window=False)


# ---- standard output -------------------------------------------------------------------------


def write_out(text: str) -> None:
    """Write to stdout now. A reader that went away raises OutputClosed; a closed or failing
    stdout (`>&-`, `> /dev/full`) is a CliError."""
    stream = sys.stdout
    if stream is None:  # Python's view of a closed file descriptor 1
        raise CliError("standard output is closed, so there is nowhere to write the result")
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        discard_stdout()
        raise OutputClosed from None
    except (OSError, ValueError) as error:  # ValueError: the stream object was closed
        discard_stdout()
        reason = getattr(error, "strerror", None) or str(error)
        raise CliError(f"cannot write to standard output: {reason}") from None


def say(line: str = "") -> None:
    write_out(line + "\n")


def discard_stdout() -> None:
    """Point file descriptor 1 at the null device, so what Python still holds in its buffer
    is flushed there at exit instead of failing again as "Exception ignored" noise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def require_stdout() -> None:
    """Fail now, before any work, when standard output is closed."""
    write_out("")


def read_prompts(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"prompt file not found: {printable(str(path))}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read prompt file {printable(str(path))}: {error}") from None
    prompts = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not prompts:
        raise CliError(f"the prompt file {printable(str(path))} has no prompts (one per line)")
    return prompts


class SampleProgress:
    """A one-line progress bar of samples on stderr (rewritten in place on a terminal, a
    line per sample otherwise); samples resumed from an earlier run count as done."""

    def __init__(self, total: int, already: int = 0, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr  # looked up now: pytest's capture swaps it per test
        self.total, self.done, self.new = total, already, 0
        self.stream, self.started, self.tty = stream, time.monotonic(), stream.isatty()
        if already:
            stream.write(f"resuming: {already} of {total} samples are already in the output\n")

    def advance(self) -> None:
        self.done += 1
        self.new += 1
        elapsed = time.monotonic() - self.started
        rate = self.new / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(30 * self.done / self.total)
        line = (f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} samples"
                f" · {rate:.2f}/s · {left:.0f}s left")
        end = "\n" if not self.tty or self.done == self.total else ""
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()
