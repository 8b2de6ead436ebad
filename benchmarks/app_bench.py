"""The app's figures for one model, in one GUI process (run.py starts it):

    python -m benchmarks.app_bench --model gpt2=FILE [--partner gpt2-large=FILE] --out app.json

Order: generation speed (a standalone InferenceService taking turns with raw
ctransformers), then the real WriterApp: load (or: load the partner, switch to the
model), typing with pauses in a short and a 5,000-word document, cancellations, typing
through long suggestions at several engine thread counts and priorities, switching
back, and the resident memory of the GUI and engine processes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"  # the app never needs the network here

from benchmarks import app_scenarios as scenarios  # noqa: E402
from benchmarks.app_harness import AppHarness  # noqa: E402
from benchmarks.probe import EngineProbe, StallMonitor, wait_ms  # noqa: E402
from benchmarks.procfs import Memory, load_average  # noqa: E402
from benchmarks.stats import summary  # noqa: E402
from benchmarks.texts import document, typing_words  # noqa: E402

ALL_SCENARIOS = ("speed", "typing", "cancel", "stall", "load")


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
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


class AppBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name, self.path = args.model
        self.scenarios = set(args.scenarios.split(","))
        self.rng = random.Random(args.seed)
        self.words = iter(typing_words(2000))
        self.probe = EngineProbe().install()
        self.monitor = StallMonitor()
        self.result: dict = {"model": self.name, "load_average_start": load_average()}
        self.token_ms = args.token_ms

    def run(self) -> dict:
        if "speed" in self.scenarios:
            self.speed()
        harness = AppHarness(self.probe)
        try:
            self.load(harness)
            if self.scenarios & {"typing", "cancel"}:
                self.documents(harness)
            if "stall" in self.scenarios:
                self.stall(harness)
            self.result["memory_with_model"] = harness.memory()
            self.switch_back(harness)
        finally:
            harness.shutdown()
        gui = Memory.of()
        self.result["gui_peak_rss_mib"] = gui.hwm_mib if gui else None
        self.result["messages"] = harness.messenger.texts()
        self.result["load_average_end"] = load_average()
        return self.result

    def speed(self) -> None:
        prompt = document(self.args.short_words)
        runs = {}
        for threads in (int(t) for t in self.args.speed_threads.split(",")):
            tokens = self.args.speed_tokens if threads == 1 else max(8, self.args.speed_tokens // 2)
            runs[str(threads)] = scenarios.generation_speed(
                self.probe, self.path, prompt, threads=threads, tokens=tokens,
                reps=self.args.speed_reps,
            )
        self.result["speed"] = runs
        if "1" in runs:
            self.token_ms = runs["1"]["raw_ms_per_token"]

    def load(self, harness: AppHarness) -> None:
        loads: dict = {}
        if self.args.partner:
            partner_name, partner_path = self.args.partner
            loads["cold"] = {"model": partner_name, "ms": harness.load(partner_path)}
            loads["switch_to"] = scenarios.switch_with_monitor(harness, self.monitor, self.path, 1)
        else:
            loads["cold"] = {"model": self.name, "ms": harness.load(self.path)}
        session = self.probe.latest_session()
        loads["loader_ms"] = session.open_ms if session else None
        self.result["load"] = loads
        self.result["memory_after_load"] = harness.memory()
        scenarios.log(f"loaded: {json.dumps(loads, default=str)[:200]}")

    def documents(self, harness: AppHarness) -> None:
        args, typing = self.args, "typing" in self.scenarios
        if typing:
            scenarios.log("short document: typing with pauses")
            harness.set_document(document(args.short_words))
            scenarios.warm_up(harness, 600_000)
            self.result["typing_short"] = self.typing(harness, args.pauses)
        scenarios.log(f"{args.long_words}-word document")
        harness.set_document(document(args.long_words))
        if "cancel" in self.scenarios:
            self.result["cancel_prompt"] = scenarios.cancel_during_prompt(
                harness, args.cancel_trials, self.rng
            )
        self.result["long_cold_prompt_eval_ms"] = scenarios.warm_up(harness, 1_200_000)
        if typing:
            self.result["typing_long"] = self.typing(harness, args.long_pauses)
        if "cancel" in self.scenarios:
            self.result["cancel_generation"] = scenarios.cancel_during_generation(
                harness, args.cancel_trials, self.rng, self.token_ms
            )
        self.result["memory_long_document"] = harness.memory()

    def typing(self, harness: AppHarness, pauses: int) -> dict:
        first_span = len(harness.busy.spans)
        self.monitor.ticks.clear()
        self.monitor.start()
        samples = scenarios.typing_session(
            harness, self.words, pauses=pauses, rng=self.rng, token_ms=self.token_ms
        )
        self.monitor.stop()
        spans = harness.busy.spans[first_span:]
        return {
            "pauses": samples,
            "stall_while_generating_ms": summary(self.monitor.lateness_within(spans)),
            "stall_all_ms": summary([late for _, late in self.monitor.ticks]),
        }

    def stall(self, harness: AppHarness) -> None:
        harness.set_document(document(self.args.short_words))
        scenarios.warm_up(harness, 600_000)
        runs = []
        threads_now = harness.service.threads
        for threads, niceness in self.args.stall_configs:
            if threads != threads_now:
                harness.load(self.path, threads=threads)
                scenarios.warm_up(harness, 600_000)
                threads_now = threads
            harness.renice_engine(niceness)
            generations = self.args.stall_generations if threads == 1 else 2
            run = scenarios.type_through(harness, self.monitor, generations, self.rng)
            run.update(threads=threads, niceness=niceness)
            stall = run["stall_ms"]
            scenarios.log(
                f"type-through t{threads} nice {niceness}: stall max {stall['max']:.1f} ms, "
                f"p99 {stall['p99']:.1f} ms over {stall['count']} ticks, {run['keys_typed']} keys"
            )
            runs.append(run)
            harness.renice_engine(0)
        if threads_now != 1:
            harness.load(self.path, threads=1)
        self.result["stall"] = runs

    def switch_back(self, harness: AppHarness) -> None:
        if self.args.partner and "load" in self.scenarios:
            _name, partner_path = self.args.partner
            self.result["load"]["switch_back"] = scenarios.switch_with_monitor(
                harness, self.monitor, partner_path, 1
            )
            wait_ms(200)


def _quiet_offscreen_warnings() -> None:
    """The offscreen platform warns on every window resize; nothing to learn from it."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(_mode, _context, message: str) -> None:  # type: ignore[no-untyped-def]
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _quiet_offscreen_warnings()
    with tempfile.TemporaryDirectory(prefix="writer-app-bench-home-") as home:
        os.environ["WRITER_APP_HOME"] = home  # settings, recovery: never the user's own
        from writer_app.app import create_qapplication

        create_qapplication()
        result = AppBench(args).run()
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
