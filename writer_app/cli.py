"""Command line: `writer-app` with no arguments starts the editor; subcommands run headless.

Every failure a user can cause (missing model, bad flag value, empty prompt file) ends
as ONE line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from writer_app import __version__
from writer_app.cli_remote import add_server_flags
from writer_app.engine.sampling import SamplingSettings

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's default prints usage too
        raise CliError(f"{self.prog}: {message}")


def _add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    defaults = SamplingSettings()
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=defaults.temperature,
                       help="0 is greedy; higher is more adventurous (0-2)")
    group.add_argument("--top-k", type=int, default=defaults.top_k,
                       help="sample among the K likeliest tokens; 0 turns it off (0-200)")
    group.add_argument("--top-p", type=float, default=defaults.top_p,
                       help="sample among the likeliest tokens covering P of the probability (0-1)")
    group.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty,
                       help="discourage repeating recent tokens (1.0-2.0)")
    group.add_argument("--repetition-window", type=int, default=defaults.repetition_window,
                       help="how many recent tokens the penalty looks at")
    group.add_argument("--max-tokens", type=int, default=defaults.max_tokens,
                       help="longest continuation, in tokens")
    group.add_argument("--seed", type=int, default=None,
                       help="fix the random seed so the same settings reproduce the same text")
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


COMMANDS = ("complete", "generate", "models")


def build_app_parser() -> argparse.ArgumentParser:
    """`writer-app [FILE]` and the app-level flags."""
    parser = _Parser(
        prog="writer-app",
        description=__doc__.splitlines()[0],
        epilog="Headless commands: writer-app {complete,generate,models} --help",
    )
    parser.add_argument("--version", action="version", version=f"writer-app {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="load the demo model in the engine process, produce a suggestion, exit")
    parser.add_argument("--screenshot", metavar="FILE",
                        help="start the editor offscreen with a ghost suggestion showing, save a PNG, exit")
    parser.add_argument("file", nargs="?", help="a document to open")
    parser.set_defaults(command=None)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The headless subcommands."""
    parser = _Parser(prog="writer-app", description=__doc__.splitlines()[0])
    parser.set_defaults(self_test=False, screenshot=None, file=None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    complete = sub.add_parser("complete", help="stream a continuation of PROMPT to stdout")
    complete.add_argument("--model", help="installed model name, or a path to a GGML file")
    _add_sampling_flags(complete)
    add_server_flags(complete)
    complete.add_argument("prompt", help="the text to continue")

    generate = sub.add_parser("generate", help="write sampled continuations of many prompts as JSONL")
    generate.add_argument("--model", help="installed model name, or a path to a GGML file")
    generate.add_argument("--prompts", required=True, metavar="FILE", help="one prompt per line")
    generate.add_argument("--n", type=int, default=1, help="samples per prompt")
    generate.add_argument("--out", required=True, metavar="FILE.jsonl")
    _add_sampling_flags(generate)
    add_server_flags(generate, concurrency=True)

    models = sub.add_parser("models", help="inspect, list, download, import and remove models")
    msub = models.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    info = msub.add_parser("info", help="check a GGML file and print what it contains")
    info.add_argument("path")
    info.add_argument("--json", action="store_true")
    lst = msub.add_parser("list", help="the catalog and what is installed")
    lst.add_argument("--json", action="store_true")
    dl = msub.add_parser("download", help="download a catalog model")
    dl.add_argument("name")
    dl.add_argument("--quant", help="quantization, e.g. q4_0 (default: the catalog's recommendation)")
    imp = msub.add_parser("import", help="copy a local GGML file into the model folder")
    imp.add_argument("path")
    rm = msub.add_parser("remove", help="delete an installed model")
    rm.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from writer_app import commands  # deferred: keeps `--version` instant

    argv = list(sys.argv[1:] if argv is None else argv)
    first_word = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser() if first_word in COMMANDS else build_app_parser()
    try:
        args = parser.parse_args(argv)
        return commands.run(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
