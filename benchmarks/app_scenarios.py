"""What the benchmark does with the app: one function per figure, each returning plain
data (dicts and lists of milliseconds) for app_bench.py to collect.

Timings come from signal handlers (AppHarness.timeline, EngineProbe), never from when a
wait returned, so the waits' own polling does not enter the figures.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.app_harness import AppHarness
from benchmarks.probe import (
    EngineProbe,
    StallMonitor,
    now_ms,
    own_lateness,
    stall_causes,
    wait_for,
    wait_ms,
    wait_until,
)
from benchmarks.procfs import cpu_seconds
from benchmarks.raw_server import RawServer
from benchmarks.stats import median, summary
from benchmarks.texts import HUGE_PARAGRAPH_KINDS, document, huge_paragraph
from benchmarks.whole_app_memory import WholeAppSampler
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.session import CHARS_PER_TOKEN_BUDGET
from writer_app.engine.window import text_window_start
from writer_app.services.inference import InferenceService
from writer_app.services.suggestion import prompt_for

TYPING_PACE_MS = (150.0, 250.0)  # between key presses: ~60 words a minute
AFTER_SUGGESTION_MS = 250.0  # the writer reads the grey text this long, then types on


def log(text: str) -> None:
    print(f"[app] {text}", flush=True)


# ---- generation speed: the app's worker beside raw ctransformers ---------------------------


def generation_speed(
    probe: EngineProbe, path: Path, prompt_text: str, *, threads: int, tokens: int, reps: int,
    engine: str = "ctransformers",
) -> dict:
    """ms per generated token through InferenceService (worker QThread + engine process,
    measured in the GUI thread from request() to finished) on `engine`, taking turns with
    the same engine raw (raw_server.py) on the same file, prompt and thread count; both
    with a hot cache.

    CPU time per token is measured too (engine process vs raw process): unlike wall
    time it hardly changes when other programs compete for the CPUs, so its ratio shows
    the app's own overhead even on a busy machine."""
    service = InferenceService(threads=threads, engine=engine)
    service.load_model(path)
    if not wait_until(lambda: service.facts is not None, 120_000):
        raise RuntimeError(f"{path.name} did not load for the speed test.")
    if service.loaded_engine != engine:
        raise RuntimeError(f"{path.name} loaded with {service.loaded_engine}, not {engine}.")
    engine_pid = probe.latest_session().pid
    finished: dict[int, float] = {}
    service.finished.connect(lambda rid, _reason: finished.setdefault(rid, now_ms()))
    settings = SamplingSettings(max_tokens=tokens, stop_at=StopAt.LENGTH)

    def app_run(request_id: int) -> dict:
        engine_cpu, gui_cpu = cpu_seconds(engine_pid), cpu_seconds()
        started = now_ms()
        service.request(request_id, prompt_text, settings, seed=request_id)
        wait_for(service.finished, lambda rid, _reason: rid == request_id, 600_000)
        finish = probe.request(request_id).finish
        generated = max(1, finish.generated_tokens)
        return {
            "wall": (finished[request_id] - started) / generated,
            "engine": finish.generation_ms / generated,
            "engine_cpu": (cpu_seconds(engine_pid) - engine_cpu) * 1000 / generated,
            "gui_cpu": (cpu_seconds() - gui_cpu) * 1000 / generated,
        }

    # Two raw processes: the app is compared with their mean, and how far the two
    # disagree with each other is the noise floor of this comparison on this machine.
    app_runs, raw_runs, other_runs = [], [], []
    with RawServer(path, threads=threads, engine=engine) as raw, \
            RawServer(path, threads=threads, engine=engine) as other:
        for server in (raw, other):
            server.prepare(prompt_text)
            server.generate(tokens, seed=0)  # warm-up, like the app's first (cold) request
        app_run(1)
        for rep in range(reps):
            raw_runs.append(raw.generate(tokens, seed=rep + 1))
            app_runs.append(app_run(rep + 2))
            other_runs.append(other.generate(tokens, seed=rep + 1))
    service.shutdown()
    hot = probe.request(2).finish
    raw_wall = [(a[0] + b[0]) / 2 for a, b in zip(raw_runs, other_runs, strict=True)]
    raw_cpu = [(a[1] + b[1]) / 2 for a, b in zip(raw_runs, other_runs, strict=True)]
    result = {
        "engine": engine,
        "threads": threads,
        "tokens": tokens,
        "prompt_tokens": hot.prompt_tokens,
        "evaluated_tokens_hot": hot.evaluated_tokens,
        "app_ms_per_token": median([run["wall"] for run in app_runs]),
        "raw_ms_per_token": median(raw_wall),
        "engine_ms_per_token": median([run["engine"] for run in app_runs]),
        # raw time / app time, per turn, then the median: 1.0 = as fast as raw
        "speed_ratio": median([r / a["wall"] for r, a in zip(raw_wall, app_runs, strict=True)]),
        # |raw A - raw B| / their mean: how much two identical raw processes differ
        "raw_spread": median(
            [abs(a[0] - b[0]) * 2 / (a[0] + b[0]) for a, b in zip(raw_runs, other_runs, strict=True)]
        ),
        "engine_cpu_ms_per_token": median([run["engine_cpu"] for run in app_runs]),
        "gui_cpu_ms_per_token": median([run["gui_cpu"] for run in app_runs]),
        "raw_cpu_ms_per_token": median(raw_cpu),
        "app_runs": app_runs,
        "raw_runs": raw_runs,
        "other_raw_runs": other_runs,
    }
    log(
        f"speed t{threads}: app {result['app_ms_per_token']:.1f} ms/token, raw "
        f"{result['raw_ms_per_token']:.1f}, ratio {result['speed_ratio']:.2f} (raw vs raw "
        f"{result['raw_spread']:.0%}); CPU ms/token: "
        f"engine {result['engine_cpu_ms_per_token']:.1f}, raw {result['raw_cpu_ms_per_token']:.1f}"
    )
    return result


# ---- typing at a human pace, pausing for suggestions ---------------------------------------


class KeyPrewarmer:
    """An experiment, not app behaviour: after every key press, ask the engine to
    evaluate the text so far (InferenceService.request_probabilities prewarms the
    prompt in cancellable chunks), cancelling the previous ask. Shows what a hot cache
    at the end of the debounce would give the first grey character."""

    def __init__(self, harness: AppHarness) -> None:
        self._harness = harness
        self._probe_id = 0

    def __call__(self) -> None:
        service = self._harness.service
        if self._probe_id:
            service.cancel_probabilities(self._probe_id)
        self._probe_id += 1
        text = self._harness.editor.toPlainText()[: self._harness.editor.textCursor().position()]
        service.request_probabilities(self._probe_id, prompt_for(text), 0.0, 1)


def _type_words(
    harness: AppHarness,
    words: Iterator[str],
    count: int,
    rng: random.Random,
    pace: tuple[float, float],
    after_key: Callable[[], None] | None = None,
) -> None:
    for _ in range(count):
        for char in " " + next(words):
            wait_ms(rng.uniform(*pace))
            harness.type_char(char)
            if after_key is not None:
                after_key()


def typing_session(
    harness: AppHarness,
    words: Iterator[str],
    *,
    pauses: int,
    rng: random.Random,
    token_ms: float,
    pace: tuple[float, float] = TYPING_PACE_MS,
    after_key: Callable[[], None] | None = None,
) -> list[dict]:
    """Type 2-4 words, pause until the suggestion is complete, read it, type on.
    Per pause: debounce fired -> first grey character, and what the engine evaluated."""
    samples = []
    timeline = harness.timeline
    for _ in range(pauses):
        _type_words(harness, words, rng.randint(2, 4), rng, pace, after_key)
        last_key = timeline.keys[-1][0]
        debounce = harness.controller.preferences.debounce_ms
        wait_until(lambda key=last_key: timeline.first_request_after(key) is not None, debounce + 2000)
        sent = timeline.first_request_after(last_key)
        timeout = 20_000 + 200 * token_ms
        request_id = harness.wait_request_finished(sent or last_key, timeout)
        wait_until(lambda: not harness.controller.busy, timeout)
        record = harness.probe.request(request_id) if request_id else None
        ghost = timeline.first_ghost_after(sent) if sent else None
        finish = record.finish if record else None
        samples.append(
            {
                "debounce_ms": (sent - last_key) if sent else None,
                "latency_ms": (ghost - sent) if ghost and sent else None,
                "worker_first_token_ms": (
                    record.first_token_ms - record.started_ms
                    if record and record.first_token_ms
                    else None
                ),
                # The rest of latency_ms: the request reaching the worker thread, and the
                # worker's first token reaching the screen (both in the GUI process).
                "to_worker_ms": (record.started_ms - sent) if record and sent else None,
                "to_screen_ms": (
                    ghost - record.first_token_ms if record and record.first_token_ms and ghost else None
                ),
                "prompt_tokens": finish.prompt_tokens if finish else None,
                "evaluated_tokens": finish.evaluated_tokens if finish else None,
                "window_start": finish.window_start if finish else None,
                "prompt_eval_ms": finish.prompt_eval_ms if finish else None,
                "engine_ms_per_token": (
                    finish.generation_ms / finish.generated_tokens
                    if finish and finish.generated_tokens
                    else None
                ),
                "reason": finish.reason.value if finish else None,
            }
        )
        wait_ms(AFTER_SUGGESTION_MS)
    shown = [s["latency_ms"] for s in samples if s["latency_ms"] is not None]
    log(
        f"  {len(shown)}/{len(samples)} pauses showed grey text; first character after "
        f"{median(shown):.0f} ms (median); evaluated tokens "
        + ",".join(str(s["evaluated_tokens"]) for s in samples)
    )
    return samples


def warm_up(harness: AppHarness, timeout_ms: float) -> float:
    """Ask once and wait for the engine to finish: the cold prompt evaluation."""
    started = now_ms()
    harness.trigger()
    request_id = harness.wait_request_finished(started, timeout_ms)
    wait_until(lambda: not harness.controller.busy, timeout_ms)
    record = harness.probe.request(request_id) if request_id else None
    harness.escape()
    return record.finish.prompt_eval_ms if record and record.finish else float("nan")


# ---- cancellation ---------------------------------------------------------------------------


def _other_char(ghost: str) -> str:
    """A letter the grey text does not start with, so typing it is an edit that cancels."""
    return next(c for c in "zqxj" if not ghost.startswith(c))


def _cancel_after(harness: AppHarness, since: float, delay_ms: float, wanted_phase: str) -> dict:
    """Wait, type a letter that cancels the running request, time until it stopped."""
    wait_until(lambda: harness.probe.first_request_after(since) is not None, 5000, poll_ms=1)
    record = harness.probe.first_request_after(since)
    wait_ms(delay_ms)
    if record is None or record.finish is not None or not harness.controller.busy:
        return {"phase": "missed"}
    phase = "generation" if record.first_token_ms is not None else "prompt"
    key_at = now_ms()
    harness.type_char(_other_char(harness.editor.ghost_text()))
    stopped = harness.wait_finished_signal(record.request_id, 120_000)
    wait_until(lambda: record.finish is not None, 120_000)
    harness.escape()  # no new suggestion for the typed letter
    finish = record.finish
    return {
        "phase": phase,
        "wanted": wanted_phase,
        "gui_ms": (stopped[0] - key_at) if stopped else None,
        "worker_ms": (record.finished_ms - key_at) if record.finished_ms else None,
        "reason": finish.reason.value if finish else None,
        "evaluated_tokens": finish.evaluated_tokens if finish else None,
        "generated_tokens": finish.generated_tokens if finish else None,
    }


def cancel_during_prompt(harness: AppHarness, trials: int, rng: random.Random) -> list[dict]:
    """On a document the cache has not seen: ask, then edit while the prompt is being
    evaluated. Each trial leaves its evaluated chunks in the cache; the next goes on."""
    harness.set_auto_suggest(False)
    results = []
    for _ in range(trials):
        since = now_ms()
        harness.trigger()
        results.append(_cancel_after(harness, since, rng.uniform(30, 300), "prompt"))
        wait_ms(100)
    harness.set_auto_suggest(True)
    return results


def cancel_during_generation(
    harness: AppHarness, trials: int, rng: random.Random, token_ms: float
) -> list[dict]:
    """Ask for a long suggestion, let a few tokens appear, then type something else."""
    harness.set_auto_suggest(False)
    harness.set_sampling(max_tokens=64, stop_at=StopAt.LENGTH)
    results = []
    for _ in range(trials):
        since = now_ms()
        harness.trigger()
        wait_until(lambda t=since: harness.timeline.first_ghost_after(t) is not None, 60_000)
        ghost_at = harness.timeline.first_ghost_after(since) or now_ms()
        delay = rng.uniform(1, 6) * token_ms - (now_ms() - ghost_at)
        results.append(_cancel_after(harness, since, max(0.0, delay), "generation"))
        wait_ms(100)
    harness.set_sampling()
    harness.set_auto_suggest(True)
    return results


def autosave_cost(harness: AppHarness, times: int) -> dict:
    """The crash-recovery copy the window takes every few seconds while the document has
    unsaved changes: how long the GUI thread's part (the snapshot) takes for this
    document. The disk write happens on the autosaver's own thread; waited for here
    outside the timing, so copies don't coalesce."""
    harness.set_auto_suggest(False)
    costs = []
    autosaver = harness.writer.window.autosaver
    for _ in range(times):
        harness.type_char("x")  # an unsaved change, so there is something to copy
        started = now_ms()
        autosaver.write_now()
        costs.append(now_ms() - started)
        autosaver.flush()
        wait_ms(50)
    harness.escape()
    harness.set_auto_suggest(True)
    return summary(costs)


# ---- GUI stalls while the writer types through a suggestion ------------------------------


def type_through(
    harness: AppHarness,
    monitor: StallMonitor,
    generations: int,
    rng: random.Random,
    pace: tuple[float, float] = TYPING_PACE_MS,
) -> dict:
    """Long suggestions; while each is being generated the writer types the grey text
    letter by letter (so it keeps generating). Lateness of a 1 ms GUI timer then is
    the event-loop stall while generating with keystrokes arriving."""
    harness.set_auto_suggest(False)
    harness.set_sampling(max_tokens=96, stop_at=StopAt.LENGTH)
    first_span = len(harness.busy.spans)
    first_key = len(harness.timeline.keys)
    monitor.clear()
    monitor.start()
    typed = 0
    for _ in range(generations):
        since = now_ms()
        harness.trigger()
        wait_until(lambda t=since: harness.timeline.first_ghost_after(t) is not None, 60_000)
        while harness.controller.busy:
            wait_ms(rng.uniform(*pace))
            ghost = harness.editor.ghost_text()
            if harness.controller.busy and ghost and (ghost[0].isascii() and ghost[0].isprintable()):
                harness.type_char(ghost[0])
                typed += 1
        harness.escape()
        wait_ms(50)
    monitor.stop()
    harness.set_sampling()
    harness.set_auto_suggest(True)
    spans = harness.busy.spans[first_span:]
    ticks = monitor.ticks_within(spans)
    keys = [handled for _, handled in harness.timeline.keys[first_key:]]
    return {
        "generations": generations,
        "keys_typed": typed,
        "busy_ms": sum(end - start for start, end in spans),
        "stall_ms": summary([tick[1] for tick in ticks]),
        "stall_own_ms": summary(own_lateness(ticks)),
        "stall_causes": stall_causes(ticks),
        "key_handling_ms": summary(keys),
    }


def switch_with_monitor(harness: AppHarness, monitor: StallMonitor, path: Path, threads: int) -> dict:
    """Switch models (the old one keeps serving meanwhile if both fit the memory budget,
    services/model_loading.py), watch the GUI thread, and sample the whole app's memory:
    every process at once, the old engine included while it lives."""
    monitor.clear()
    monitor.start()
    with WholeAppSampler() as memory:
        elapsed = harness.load(path, threads=threads)
    monitor.stop()
    session = harness.probe.latest_session()
    return {
        "to": path.name,
        "ms": elapsed,
        "loader_ms": session.open_ms if session else None,
        "stall_ms": summary([tick[1] for tick in monitor.ticks]),
        "stall_own_ms": summary(own_lateness(monitor.ticks)),
        "stall_causes": stall_causes(monitor.ticks),
        "whole_app_memory": memory.result,
    }


# ---- GUI stalls while a suggestion streams onto a huge paragraph ---------------------------


def huge_paragraph_stall(
    harness: AppHarness, monitor: StallMonitor, kinds: tuple[str, ...] = HUGE_PARAGRAPH_KINDS,
    tokens: int = 24,
) -> list[dict]:
    """A suggestion streaming onto the end of one 100,000-character paragraph, per kind
    of text: the lateness of a 1 ms GUI timer from Ctrl+Space until the generation
    ended. Each token changes the grey text; Qt re-lays out a paragraph as a whole, so
    this is what an editor that puts the ghost into the paragraph's layout pays."""
    harness.set_auto_suggest(False)
    harness.set_sampling(max_tokens=tokens, stop_at=StopAt.LENGTH)
    runs = []
    for kind in kinds:
        text = huge_paragraph(kind)
        harness.set_document(text)
        wait_ms(100)
        monitor.clear()
        monitor.start()
        since = now_ms()
        harness.trigger()
        wait_until(lambda t=since: harness.timeline.first_ghost_after(t) is not None, 120_000)
        wait_until(lambda: not harness.controller.busy, 120_000)
        monitor.stop()
        updates = sum(1 for at, ghost in harness.timeline.ghosts if at >= since and ghost)
        harness.escape()
        ticks = monitor.ticks
        run = {
            "kind": kind,
            "chars": len(text),
            "ghost_updates": updates,
            "stall_ms": summary([tick[1] for tick in ticks]),
            "stall_own_ms": summary(own_lateness(ticks)),
            "stall_causes": stall_causes(ticks),
        }
        log(f"huge paragraph ({kind}): stall max {run['stall_ms']['max']:.1f} ms over "
            f"{updates} ghost updates")
        runs.append(run)
    harness.set_document("")
    harness.set_sampling()
    harness.set_auto_suggest(True)
    return runs


# ---- the prompt window moving while the writer types ----------------------------------------


def text_start(harness: AppHarness) -> int:
    """Where the app starts reading the text before the cursor for a prompt: the app's own
    functions (suggestion.prompt_for, window.text_window_start over the session's n_ctx x
    CHARS_PER_TOKEN_BUDGET characters), so a change is the app's window moving."""
    session = harness.probe.latest_session()
    before = harness.editor.toPlainText()[: harness.editor.textCursor().position()]
    return text_window_start(prompt_for(before), session.n_ctx * CHARS_PER_TOKEN_BUDGET)


def window_move_document(n_ctx: int, words_before_move: int = 35) -> str:
    """Prose that ends ~words_before_move typed words (~5.7 characters each, with the
    space) before the app's character window first moves."""
    limit = n_ctx * CHARS_PER_TOKEN_BUDGET - round(words_before_move * 5.7)
    text = " ".join(document(limit // 3).split())  # one paragraph, as typed
    return text[: text.rfind(" ", 0, limit)]


def window_move(
    harness: AppHarness,
    words: Iterator[str],
    *,
    rng: random.Random,
    token_ms: float,
    pace: tuple[float, float],
    pauses_after: int = 3,
    words_before_move: int = 35,
    max_pauses: int = 40,
) -> dict:
    """Type prose with pauses of 2-4 words (typing_session, real key events) from
    ~words_before_move words before the prompt window's first move through `pauses_after` pauses after it.
    Each pause records its text start; the pauses whose start differs from the first
    one's are after the move (a move re-reads the whole new window: GPT-2's positions are
    absolute, so its cache can't be shifted)."""
    session = harness.probe.latest_session()
    harness.set_document(window_move_document(session.n_ctx, words_before_move))
    cold_ms = warm_up(harness, 1_200_000)
    first_start = text_start(harness)
    samples: list[dict] = []
    typed_at_move: int | None = None
    moved_at: list[float] = []  # when the key that moved the start was pressed

    def watch_start() -> None:  # after every key press, outside the timed spans
        if not moved_at and text_start(harness) != first_start:
            moved_at.append(harness.timeline.keys[-1][0])

    while len(samples) < max_pauses:
        (sample,) = typing_session(harness, words, pauses=1, rng=rng, token_ms=token_ms, pace=pace,
                                   after_key=watch_start)
        sample["text_start"] = text_start(harness)
        sample["moved"] = sample["text_start"] != first_start
        # How long the app had to prepare the new window before this pause's request.
        sent = harness.timeline.first_request_after(harness.timeline.keys[-1][0])
        sample["ms_since_move"] = sent - moved_at[0] if moved_at and sent else None
        samples.append(sample)
        if sample["moved"] and typed_at_move is None:
            typed_at_move = len(samples)
        if typed_at_move is not None and len(samples) - typed_at_move + 1 >= pauses_after:
            break
    after = [s for s in samples if s["moved"]][:pauses_after]
    log("window move: " + (f"after pause {typed_at_move}; first grey character at the pauses after it: "
                           + ", ".join(f"{s['latency_ms'] or float('nan'):.0f} ms ({s['evaluated_tokens']} "
                                       f"tokens evaluated, {(s['ms_since_move'] or 0) / 1000:.1f} s "
                                       "after the move)" for s in after)
                           if typed_at_move else f"no move in {len(samples)} pauses"))
    return {
        "n_ctx": session.n_ctx,
        "max_chars": session.n_ctx * CHARS_PER_TOKEN_BUDGET,
        "first_text_start": first_start,
        "cold_prompt_eval_ms": cold_ms,
        "moved_at_pause": typed_at_move,
        "pauses": samples,
    }
