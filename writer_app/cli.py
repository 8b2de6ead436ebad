"""Command line: `writer-app` with no arguments starts the editor; subcommands run headless.

Every failure a user can cause (missing model, bad flag value, empty prompt file) ends
as ONE line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from writer_app import __version__
from writer_app.cli_common import (
    EXIT_BROKEN_PIPE,
    EXIT_USAGE,
    CliError,
    OutputClosed,
    Parser,
    add_engine_flags,
    add_sampling_flags,
    discard_stdout,
)
from writer_app.cli_remote import add_server_flags
from writer_app.engine.printable import printable

COMMANDS = ("complete", "generate", "models")
MODEL_HELP = ("installed model name, a path to a GGML file, or demo (the built-in demo "
              "model, also the default)")


def build_app_parser() -> argparse.ArgumentParser:
    """`writer-app [FILE]` and the app-level flags."""
    parser = Parser(
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
    parser = Parser(prog="writer-app", description=__doc__.splitlines()[0])
    parser.set_defaults(self_test=False, screenshot=None, file=None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    complete = sub.add_parser("complete", help="stream a continuation of PROMPT to stdout")
    complete.add_argument("--model", help=MODEL_HELP)
    add_engine_flags(complete)
    add_sampling_flags(complete)
    add_server_flags(complete)
    complete.add_argument("prompt", help="the text to continue")

    generate = sub.add_parser("generate", help="write sampled continuations of many prompts as JSONL")
    generate.add_argument("--model", help=MODEL_HELP)
    generate.add_argument("--prompts", required=True, metavar="FILE", help="one prompt per line")
    generate.add_argument("--n", type=int, default=1, help="samples per prompt")
    generate.add_argument("--out", required=True, metavar="FILE.jsonl")
    add_engine_flags(generate)
    add_sampling_flags(generate)
    add_server_flags(generate, concurrency=True)

    models = sub.add_parser("models", help="inspect, list, download, import and remove models")
    msub = models.add_subparsers(dest="models_command", required=True, parser_class=Parser)
    info = msub.add_parser("info", help="check a GGML file and print what it contains")
    info.add_argument("path")
    info.add_argument("--json", action="store_true")
    lst = msub.add_parser("list", help="the catalog and what is installed")
    lst.add_argument("--json", action="store_true")
    dl = msub.add_parser("download", help="download a catalog model")
    dl.add_argument("name")
    dl.add_argument("--quant", help="quantization, e.g. q4_0 (default: the catalog's recommendation)")
    imp = msub.add_parser("import", help="add a GGML file, or convert a Hugging Face GPT-2 "
                          "checkpoint folder, into the model folder")
    imp.add_argument("path")
    imp.add_argument("--quant", choices=["f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"],
                     help="a checkpoint's quantization (default: the catalog's recommendation)")
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
        if args.command is None and not (args.self_test or args.screenshot):
            from writer_app.qt_preflight import problem  # the window: can Qt start on X11?

            if message := problem():
                raise CliError(message)
        return commands.run(args)
    except CliError as exc:
        # printable() again: whatever a message quotes, it stays one line on the terminal.
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (OutputClosed, BrokenPipeError):
        discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
