"""The app's figures for one model, in one GUI process (run.py starts it):

    python -m benchmarks.app_bench --model gpt2=FILE [--partner gpt2-large=FILE] \
        [--engine llama.cpp] --out app.json

--engine sets the app's engine setting (Model > Engine, before the first load) and the
standalone InferenceService's engine; the raw reference is then the same engine raw.
Order: generation speed (a standalone InferenceService taking turns with the raw
engine), then the real WriterApp: load (or: load the partner, switch to the model),
typing with pauses in a short and a 5,000-word document, cancellations, typing across
the prompt window's move, typing through long suggestions at several engine thread
counts and priorities, switching back, and the resident memory of the GUI and engine
processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

# Nothing heavy is imported at module level: the engine and raw processes are spawned,
# and a spawned child imports the parent's main module again. Importing Qt and the app
# here would make every engine process start slower and take more memory than the
# real app's engine does.

ALL_SCENARIOS = ("speed", "typing", "cancel", "prewarm", "window", "stall", "huge", "load")


def _named_path(value: str) -> tuple[str, Path]:
    name, _, path = value.partition("=")
    if not path:
        raise argparse.ArgumentTypeError("expected NAME=FILE")
    return name, Path(path)


def _stall_config(value: str) -> list[tuple[int, int]]:
    """"1:0,2:0,2:10" -> [(threads, niceness), ...]"""
    configs = []
    for item in value.split(","):
        threads, _, nice = item.partition(":")
        configs.append((int(threads), int(nice or 0)))
    return configs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=_named_path, required=True)
    parser.add_argument("--partner", type=_named_path, help="switch from/to this model")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    parser.add_argument("--engine", default="ctransformers", choices=("ctransformers", "llama.cpp"))
    parser.add_argument("--window-pauses", type=int, default=3, help="pauses judged after the move")
    parser.add_argument("--window-words", type=int, default=35, help="words typed before the move")
    parser.add_argument("--token-ms", type=float, default=20.0,
                        help="raw ms per token, if the speed scenario does not run")
    parser.add_argument("--speed-threads", default="1")
    parser.add_argument("--speed-tokens", type=int, default=64)
    parser.add_argument("--speed-reps", type=int, default=3)
    parser.add_argument("--short-words", type=int, default=100)
    parser.add_argument("--long-words", type=int, default=5000)
    parser.add_argument("--pauses", type=int, default=12)
    parser.add_argument("--long-pauses", type=int, default=12)
    parser.add_argument("--cancel-trials", type=int, default=6)
    parser.add_argument("--stall-configs", type=_stall_config, default=[(1, 0)])
    parser.add_argument("--stall-generations", type=int, default=4)
    parser.add_argument("--pace-ms", type=float, default=200.0,
                        help="mean time between key presses (each is +-25%%)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def _quiet_offscreen_warnings() -> None:
    """The offscreen platform warns on every window resize; nothing to learn from it."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(_mode, _context, message: str) -> None:  # type: ignore[no-untyped-def]
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the app never needs the network here
    _quiet_offscreen_warnings()
    with tempfile.TemporaryDirectory(prefix="writer-app-bench-home-") as home:
        os.environ["WRITER_APP_HOME"] = home  # settings, recovery: never the user's own
        from benchmarks.app_runner import AppBench
        from writer_app.app import create_qapplication

        create_qapplication()
        result = AppBench(args).run()
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
