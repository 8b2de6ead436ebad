"""The command line against raw ctransformers at its best thread count, in tight pairs.

The rounds of turns (turns.py) measure raw ctransformers and the CLI up to a minute
apart, and this machine's speed moves more than the target's 5% within seconds: the
rounds of one run put gpt2's `complete` between 0.80x and 1.41x raw, and three runs'
medians at 0.92x, 1.00x and 1.01x. Here each command instead runs right beside the same
work done raw, at every thread count measured, so that both see the same minute:

    trio i:  raw t1, raw t2, CLI      (odd i: CLI, raw t2, raw t1, so drift cancels)

and stands for the pair CLI / the faster raw of its trio. The verdict is the median
over pairs. The work is cli_bench's: `complete` streams N tokens after the 100-word
prompt (raw: the same N on a hot cache), `generate` the 8 prompts x 1 sample of 32
tokens (raw: raw_llama.workload). Raw runs in RawServer processes (one per thread
count, the model loaded once each); the CLI is the real `python -m writer_app`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.cli_bench import complete_rate, generate_rate
from benchmarks.raw_server import RawServer
from benchmarks.remote_bench import MAX_TOKENS, PROMPTS
from benchmarks.stats import median
from benchmarks.texts import document


def _trio_order(threads: list[int], index: int) -> list[int | None]:
    """Raw thread counts and None (the CLI), reversed every other trio."""
    order: list[int | None] = [*threads, None]
    return order if index % 2 == 0 else order[::-1]


def measure_cli_pairs(
    model: Path, engine: str, work: Path, *, pairs: int, complete_tokens: int,
    raw_threads: list[int], log: Callable[[str], None] = print,
) -> dict:
    """{command: {"pairs": [{"cli": tok/s, "raw_t1": tok/s, ...}], "ratios": [...],
    "median_ratio": ..., "best_threads": {t: trios it was fastest in}}} for the CLI on
    `engine`; raw is always ctransformers (the target's reference)."""
    servers = {t: RawServer(model, threads=t) for t in raw_threads}
    try:
        for server in servers.values():
            server.prepare(document(100))
            server.complete(complete_tokens, seed=1)  # warm-up, not counted
        measure: dict[str, Callable[[int | None, int], float | None]] = {
            "complete": lambda t, i: (
                1000 / servers[t].complete(complete_tokens, seed=100 + i) if t else
                complete_rate(model, engine, work, complete_tokens)["tokens_per_s"]),
            "generate": lambda t, i: (
                servers[t].workload(list(PROMPTS), 1, MAX_TOKENS) if t else
                generate_rate(model, engine, work, 1)["tokens_per_s"]),
        }
        result: dict = {"engine": engine, "complete_tokens": complete_tokens, "raw_threads": raw_threads}
        for command, run in measure.items():
            trios = []
            for index in range(pairs):
                trio = {("cli" if t is None else f"raw_t{t}"): run(t, index)
                        for t in _trio_order(raw_threads, index)}
                trios.append(trio)
            result[command] = summarize(trios, raw_threads)
            log(f"[cli pairs {model.name} {engine}] {command}: {result[command]['median_ratio']:.3f}x "
                f"raw ctransformers at its best (pairs: "
                + ", ".join(f"{r:.2f}" for r in result[command]["ratios"]) + ")")
        return result
    finally:
        for server in servers.values():
            server.close()


def summarize(trios: list[dict], raw_threads: list[int]) -> dict:
    """Each trio's CLI against its fastest raw; the median over those that streamed."""
    ratios, best_threads = [], {str(t): 0 for t in raw_threads}
    for trio in trios:
        raws = {t: trio[f"raw_t{t}"] for t in raw_threads if trio.get(f"raw_t{t}")}
        if not raws or not trio.get("cli"):
            continue  # no steady rate (a toy model's stream too short to time)
        best = max(raws, key=raws.__getitem__)
        best_threads[str(best)] += 1
        ratios.append(trio["cli"] / raws[best])
    return {"pairs": trios, "ratios": ratios, "best_threads": best_threads,
            "median_ratio": median(ratios) if ratios else float("nan")}
