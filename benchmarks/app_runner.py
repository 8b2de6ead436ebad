"""AppBench: the app's figures for one model, scenario by scenario (see app_bench.py)."""

from __future__ import annotations

import argparse
import gc
import json
import random

from benchmarks import app_scenarios as scenarios
from benchmarks.app_harness import AppHarness
from benchmarks.probe import (
    EngineProbe,
    StallMonitor,
    now_ms,
    own_lateness,
    stall_causes,
    wait_ms,
    worst_stalls,
)
from benchmarks.procfs import Memory, load_average
from benchmarks.stats import median, summary
from benchmarks.texts import document, typing_words


class AppBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name, self.path = args.model
        self.scenarios = set(args.scenarios.split(","))
        self.rng = random.Random(args.seed)
        self.words = iter(typing_words(2000))
        self.probe = EngineProbe().install()
        self.monitor = StallMonitor()
        self.engine = args.engine
        self.result: dict = {"model": self.name, "engine": self.engine, "load_average_start": load_average()}
        self.token_ms = args.token_ms
        self.pace = (args.pace_ms * 0.75, args.pace_ms * 1.25)

    def run(self) -> dict:
        if "speed" in self.scenarios:
            self.speed()
        harness = AppHarness(self.probe, self.engine)
        self.result["memory_before_load"] = harness.memory()
        try:
            self.load(harness)
            if self.scenarios & {"typing", "cancel", "prewarm"}:
                self.documents(harness)
            if "window" in self.scenarios:
                scenarios.log("typing across the prompt window's move")
                self.result["window_move"] = scenarios.window_move(
                    harness, self.words, rng=self.rng, token_ms=self.token_ms, pace=self.pace,
                    pauses_after=self.args.window_pauses, words_before_move=self.args.window_words,
                )
            if "stall" in self.scenarios:
                self.stall(harness)
            if "huge" in self.scenarios:
                self.result["huge_paragraph"] = scenarios.huge_paragraph_stall(harness, self.monitor)
            self.result["memory_with_model"] = harness.memory()
            self.switch_back(harness)
            self.result["gc"] = self.collections(harness)
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
                reps=self.args.speed_reps, engine=self.engine,
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
        if "prewarm" in self.scenarios:
            scenarios.log("what-if: the same typing with a prewarm after every key press")
            self.result["typing_long_prewarm"] = self.typing(
                harness, args.long_pauses, after_key=scenarios.KeyPrewarmer(harness)
            )
        if "stall" in self.scenarios:
            self.result["autosave_long_ms"] = scenarios.autosave_cost(harness, 5)
        if "cancel" in self.scenarios:
            self.result["cancel_generation"] = scenarios.cancel_during_generation(
                harness, args.cancel_trials, self.rng, self.token_ms
            )
        self.result["memory_long_document"] = harness.memory()

    def typing(self, harness: AppHarness, pauses: int, after_key=None) -> dict:  # type: ignore[no-untyped-def]
        first_span = len(harness.busy.spans)
        self.monitor.clear()
        self.monitor.start()
        samples = scenarios.typing_session(
            harness, self.words, pauses=pauses, rng=self.rng, token_ms=self.token_ms,
            pace=self.pace, after_key=after_key,
        )
        self.monitor.stop()
        ticks = self.monitor.ticks_within(harness.busy.spans[first_span:])
        return {
            "pauses": samples,
            "stall_while_generating_ms": summary([tick[1] for tick in ticks]),
            "stall_while_generating_own_ms": summary(own_lateness(ticks)),
            "worst_stalls": worst_stalls(ticks, self._events(harness)),
            "stall_while_generating_causes": stall_causes(ticks),
            "stall_all_ms": summary([tick[1] for tick in self.monitor.ticks]),
        }

    @staticmethod
    def collections(harness: AppHarness) -> dict:
        """Python's garbage collector in the GUI process: the pauses seen during the run,
        and what one full collection costs now, as the app runs (it gc.freeze()s what
        exists after start-up and each model load, so the collector no longer scans it),
        and with nothing frozen."""
        pauses = list(harness.timeline.collections)  # before ours below add to it
        full = []
        for _ in range(3):
            started = now_ms()
            gc.collect()
            full.append(now_ms() - started)
        frozen_by_app = gc.get_freeze_count()
        gc.unfreeze()
        unfrozen = []
        for _ in range(3):
            started = now_ms()
            gc.collect()
            unfrozen.append(now_ms() - started)
        gc.freeze()  # as the app had it
        return {
            "pauses_over_1ms": len(pauses),
            "pauses_over_5ms": sum(1 for _s, took, _g in pauses if took > 5),
            "longest_pause_ms": max((took for _s, took, _g in pauses), default=0.0),
            "full_collection_ms": median(full),
            "full_collection_unfrozen_ms": median(unfrozen),
            "frozen_objects": frozen_by_app,
            "tracked_objects": len(gc.get_objects()),
        }

    @staticmethod
    def _events(harness: AppHarness) -> dict[str, list[float]]:
        timeline = harness.timeline
        return {
            "keys": [at for at, _handled in timeline.keys],
            "tokens": timeline.tokens,
            "autosaves": timeline.autosaves,
            "collections": [start + took for start, took, _generation in timeline.collections],
            "requests": timeline.requests,
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
            run = scenarios.type_through(harness, self.monitor, generations, self.rng, self.pace)
            run["worst_stalls"] = worst_stalls(
                self.monitor.ticks_within(harness.busy.spans), self._events(harness)
            )
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
