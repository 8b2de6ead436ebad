"""The two engines side by side, for one model (issue 12 point 6): one row per figure
with the ctransformers value, the llama.cpp value, their ratio and PASS/FAIL.

  a. raw engines (gpt2-large judged): llama.cpp reads a 512-token prompt (each engine
     at its best batch) >= 2.5x as fast as ctransformers and generates >= 1.1x as
     fast, at the same thread count, for every thread count measured.
  b. the CLI (`complete`, `generate`, default threads) on each engine >= 0.95x raw
     ctransformers at its best thread count, doing the same work.
  c. the app on each engine: its speed against its own raw engine, first grey
     character, GUI stalls, cancel, load and memory; llama.cpp's first grey character
     and stalls no worse than ctransformers' (within NO_WORSE_SLACK: these are 2-10 ms
     figures on a shared machine).
  d. the first pauses after the prompt window moved (report.window_rows), per engine.
"""

from __future__ import annotations

import math

from benchmarks.report import (
    GB_MIB,
    LATENCY_SLACK_MS,
    SPEED_RATIO_TARGET,
    STALL_MAX_MS,
    STALL_P99_MS,
    Row,
    _ms,
    _verdict,
    token_ms_at,
)
from benchmarks.stats import median, percentile

CT, LLAMA = "ctransformers", "llama.cpp"
READ_SPEEDUP_TARGET, GENERATION_SPEEDUP_TARGET = 2.5, 1.1
CLI_RATIO_TARGET = 0.95
# "No worse": llama.cpp's figure may exceed ctransformers' by 10% or 1 ms, whichever is
# larger, before it counts as worse (two runs of one engine differ by that much).
NO_WORSE_SLACK = (0.10, 1.0)
JUDGED_RAW_MODELS = ("gpt2-large", "tiny-large")  # target a is set for gpt2-large


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _best_read(raw: dict) -> tuple[float, str] | None:
    reads = raw.get("read_ms_per_token") or {}
    if not reads:
        return None
    batch = min(reads, key=reads.__getitem__)
    return reads[batch], batch


def raw_rounds(figures: dict) -> dict[str, list[dict]]:
    """{threads: [the raw run of each round]} (runs before turns.py had one round)."""
    return figures.get("raw_rounds") or {t: [run] for t, run in figures.get("raw_threads", {}).items()}


def cli_rounds(figures: dict) -> list[dict]:
    return figures.get("cli_rounds") or ([figures["cli"]] if figures.get("cli") else [])


def _per_round(ratios: list[float]) -> str:
    """The median ratio, with every round's when there were several."""
    shown = f"{median(ratios):.2f}x"
    return shown if len(ratios) < 2 else f"{shown} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"


def raw_rows(name: str, engines: dict) -> list[Row]:
    """Target a: the engines raw, at each thread count both measured, judged on the
    median over rounds of each round's ratio (turns.py: measured back to back)."""
    ct, llama = raw_rounds(engines.get(CT, {})), raw_rounds(engines.get(LLAMA, {}))
    judged = name in JUDGED_RAW_MODELS
    rows = []
    for threads in sorted(set(ct) & set(llama), key=int):
        pairs = list(zip(ct[threads], llama[threads], strict=False))
        reads = [(_best_read(a), _best_read(b)) for a, b in pairs]
        reads = [(a, b) for a, b in reads if a and b]
        if reads:
            speedup = [a[0] / b[0] for a, b in reads]
            rows.append(Row(
                f"raw: reading a cold {pairs[0][1].get('read_tokens')}-token prompt, t{threads}, each at its "
                "best batch: ms/token (round 1's batch), median over rounds",
                f"{_ms(median([a[0] for a, _ in reads]))} ({reads[0][0][1]})",
                f"{_ms(median([b[0] for _, b in reads]))} ({reads[0][1][1]})", f"{_per_round(speedup)} faster",
                f">= {READ_SPEEDUP_TARGET}x faster" if judged else "",
                _verdict(median(speedup) >= READ_SPEEDUP_TARGET) if judged else "",
            ))
        speedup = [a["gen_ms_per_token"] / b["gen_ms_per_token"] for a, b in pairs]
        gen_a, gen_b = median([a["gen_ms_per_token"] for a, _ in pairs]), median([b["gen_ms_per_token"] for _, b in pairs])
        rows.append(Row(
            f"raw: generation, t{threads}, hot cache: ms/token (tok/s), median over rounds",
            f"{_ms(gen_a)} ({1000 / gen_a:.1f})", f"{_ms(gen_b)} ({1000 / gen_b:.1f})",
            f"{_per_round(speedup)} faster",
            f">= {GENERATION_SPEEDUP_TARGET}x faster" if judged else "",
            _verdict(median(speedup) >= GENERATION_SPEEDUP_TARGET) if judged else "",
        ))
    return rows


def best_ctransformers(runs: dict[str, dict]) -> dict | None:
    """Raw ctransformers at its best thread count ({threads: one run each}): generation
    and generate's workload (tokens/s), each the best over the thread counts measured."""
    if not runs:
        return None
    gen = max(runs.items(), key=lambda item: 1000 / item[1]["gen_ms_per_token"])
    work = [(t, r["workload"]["tokens_per_s"]) for t, r in runs.items()
            if (r.get("workload") or {}).get("tokens_per_s")]
    best_work = max(work, key=lambda item: item[1]) if work else (None, None)
    return {"gen_tokens_per_s": 1000 / gen[1]["gen_ms_per_token"], "gen_threads": gen[0],
            "workload_tokens_per_s": best_work[1], "workload_threads": best_work[0]}


def cli_rows(engines: dict) -> list[Row]:
    """Target b: the CLI per engine against raw ctransformers at its best thread count in
    the same round (or the first round's, if the raw side had fewer), median over rounds."""
    ct_raw = raw_rounds(engines.get(CT, {}))
    count = min((len(runs) for runs in ct_raw.values()), default=0)
    best = [best_ctransformers({t: runs[i] for t, runs in ct_raw.items()}) for i in range(count)]
    cli = {engine: cli_rounds(engines.get(engine, {})) for engine in (CT, LLAMA)}
    if not any(cli.values()):
        return []
    rows = []
    for command, raw_key, threads_key, what in (
        ("complete", "gen_tokens_per_s", "gen_threads", "generation, hot cache"),
        ("generate", "workload_tokens_per_s", "workload_threads", "the same prompts and samples"),
    ):
        def reference(i: int) -> dict | None:
            return best[i] if i < len(best) else (best[0] if best else None)

        values, ratios = {}, {}
        for engine, runs in cli.items():
            values[engine] = [run[command]["tokens_per_s"] for run in runs]
            ratios[engine] = [v / reference(i)[raw_key] for i, v in enumerate(values[engine])
                              if v and reference(i) and reference(i)[raw_key]]
        # No steady rate (the longer run was not slower: noise on a toy model) is no pass.
        verdicts = [_verdict(median(ratios[e]) >= CLI_RATIO_TARGET) if ratios[e] else "FAIL (noisy)"
                    for e in (CT, LLAMA) if cli[e]]
        first = reference(0)
        refs = [reference(i)[raw_key] for i in range(max(len(best), 1)) if reference(i) and reference(i)[raw_key]]
        rows.append(Row(
            f"writer-app {command}, default threads: steady tokens/s, median over rounds (x raw ctransformers "
            f"at its best in the same round, t{first.get(threads_key) if first else '?'}: "
            f"{_num(median(refs) if refs else None)} tok/s, {what})",
            _num(median([v for v in values[CT] if v]) if values.get(CT) else None),
            _num(median([v for v in values[LLAMA] if v]) if values.get(LLAMA) else None),
            " / ".join(_per_round(ratios[e]) for e in (CT, LLAMA) if ratios[e]) + " raw",
            f">= {CLI_RATIO_TARGET} x raw (each)", " / ".join(verdicts),
        ))
    return rows


def _no_worse(ct: float | None, llama: float | None) -> bool | None:
    if ct is None or llama is None or math.isnan(ct) or math.isnan(llama):
        return None
    share, ms = NO_WORSE_SLACK
    return llama <= ct + max(ct * share, ms)


def _pair(label: str, ct: float | None, llama: float | None, target: str = "", judge_no_worse: bool = False,
          verdict: str = "") -> Row:
    ratio = f"{llama / ct:.2f}x" if ct and llama and not math.isnan(ct) and not math.isnan(llama) else ""
    if judge_no_worse:
        verdict = _verdict(_no_worse(ct, llama))
        target = target or "llama.cpp no worse"
    return Row(label, _ms(ct), _ms(llama), ratio, target, verdict)


def _latencies(app: dict, key: str) -> list[float]:
    return [s["latency_ms"] for s in app.get(key, {}).get("pauses", []) if s.get("latency_ms") is not None]


def app_rounds(figures: dict) -> list[dict]:
    """The app's run of each round: "app" (round 1, every scenario), then "app_rounds"
    (typing and stalls again, the engines taking turns: run.measure_app_turns)."""
    first = figures.get("app")
    return ([first] if first else []) + figures.get("app_rounds", [])


def _over_rounds(rounds: list[dict], figure) -> float | None:  # type: ignore[no-untyped-def]
    """The median over rounds of figure(round's app run), skipping rounds without it."""
    values = [v for v in (figure(app) for app in rounds) if v is not None and not math.isnan(v)]
    return median(values) if values else None


def _first_grey(key: str, pick):  # type: ignore[no-untyped-def]
    def figure(app: dict) -> float | None:
        latencies = _latencies(app, key)
        return pick(latencies) if latencies else None
    return figure


def _typing_stall(key: str, stat: str):  # type: ignore[no-untyped-def]
    return lambda app: app.get(key, {}).get("stall_while_generating_ms", {}).get(stat)


def _t1_stall(stat: str):  # type: ignore[no-untyped-def]
    def figure(app: dict) -> float | None:
        run = next((r for r in app.get("stall", []) if r["threads"] == 1), None)
        return run["stall_ms"][stat] if run else None
    return figure


def no_worse_rows(rounds: dict[str, list[dict]]) -> list[Row]:
    """Target c's "no worse" rows: each figure per round, its median over the rounds per
    engine, llama.cpp's against ctransformers' (within NO_WORSE_SLACK)."""
    count = min((len(r) for r in rounds.values() if r), default=0)
    over = f", median of {count} rounds" if count > 1 else ""
    runs = [app for apps in rounds.values() for app in apps]
    figures = []
    for key, label in (("typing_short", "short document"), ("typing_long", "5,000-word document")):
        if any(key in app for app in runs):
            figures += [(f"first grey character, {label}, median", _first_grey(key, median)),
                        (f"first grey character, {label}, p90", _first_grey(key, lambda v: percentile(v, 0.9))),
                        (f"GUI stall while typing/generating, {label}, max", _typing_stall(key, "max")),
                        (f"GUI stall while typing/generating, {label}, p99", _typing_stall(key, "p99"))]
    if any(app.get("stall") for app in runs):
        figures += [(f"GUI stall typing through a suggestion, t1, {stat} (< {limit:.0f} ms)", _t1_stall(stat))
                    for stat, limit in (("max", STALL_MAX_MS), ("p99", STALL_P99_MS))]
    rows = []
    for label, figure in figures:
        values = {e: _over_rounds(rounds[e], figure) for e in (CT, LLAMA)}
        rows.append(_pair(label + over, values[CT], values[LLAMA], judge_no_worse=True))
    return rows


def app_rows(engines: dict) -> list[Row]:
    """Target c (and d): the app on each engine."""
    apps = {e: engines.get(e, {}).get("app") or {} for e in (CT, LLAMA)}
    raws = {e: engines.get(e, {}).get("raw") or {} for e in (CT, LLAMA)}
    if not any(apps.values()):
        return []
    rows = []
    speeds = {e: (apps[e].get("speed") or {}).get("1") for e in (CT, LLAMA)}
    if any(speeds.values()):
        ratios = {e: s["speed_ratio"] if s else None for e, s in speeds.items()}
        rows.append(Row(
            "app generation, 1 engine thread, x its own raw engine (speed ratio)",
            _num(ratios[CT], 2), _num(ratios[LLAMA], 2), "", f">= {SPEED_RATIO_TARGET} x raw (each)",
            " / ".join(_verdict(r >= SPEED_RATIO_TARGET) for r in ratios.values() if r is not None),
        ))
        rows.append(_pair("  app generation, 1 engine thread: ms/token",
                          speeds[CT]["app_ms_per_token"] if speeds[CT] else None,
                          speeds[LLAMA]["app_ms_per_token"] if speeds[LLAMA] else None))
    rows += no_worse_rows({e: app_rounds(engines.get(e, {})) for e in (CT, LLAMA)})
    for key, label in (("cancel_generation", "generating"), ("cancel_prompt", "evaluating the prompt")):
        worst = {e: max((t["gui_ms"] for t in apps[e].get(key, []) if t.get("gui_ms") is not None), default=None)
                 for e in (CT, LLAMA)}
        if any(v is not None for v in worst.values()):
            token = {e: raws[e].get("gen_ms_per_token_at_context") or raws[e].get("gen_ms_per_token")
                     for e in (CT, LLAMA)}
            verdicts = [_verdict(worst[e] <= token[e]) for e in (CT, LLAMA) if worst[e] is not None and token[e]]
            rows.append(_pair(f"cancel while {label}, max (<= 1 token of its engine: "
                              f"{_ms(token[CT])} / {_ms(token[LLAMA])})", worst[CT], worst[LLAMA],
                              "<= 1 token (each)", verdict=" / ".join(verdicts)))
    loads = {e: (apps[e].get("load") or {}) for e in (CT, LLAMA)}
    for key, label in (("cold", "model load"), ("switch_to", "switch to this model")):
        values = {e: (loads[e].get(key) or {}).get("ms") for e in (CT, LLAMA)}
        if any(values.values()):
            rows.append(_pair(label, values[CT], values[LLAMA]))
    totals = {}
    for e in (CT, LLAMA):
        memory = apps[e].get("memory_long_document") or apps[e].get("memory_with_model") or {}
        gui, engine = apps[e].get("gui_peak_rss_mib"), memory.get("engine_hwm_mib")
        totals[e] = gui + engine if gui and engine else None
    if any(totals.values()):
        verdicts = [_verdict(t <= GB_MIB) for t in totals.values() if t is not None]
        rows.append(Row("whole app resident, GUI + engine (peak)",
                        *(f"{totals[e]:.0f} MiB" if totals[e] else "n/a" for e in (CT, LLAMA)),
                        "", f"<= {GB_MIB:.0f} MiB (1.0 GB)", " / ".join(verdicts)))
    windows = {e: apps[e].get("window_move") for e in (CT, LLAMA)}
    if any(windows.values()):
        worst, verdicts = {}, []
        for e in (CT, LLAMA):
            after = [s for s in (windows[e] or {}).get("pauses", []) if s.get("moved")]
            shown = [s["latency_ms"] for s in after if s.get("latency_ms") is not None]
            worst[e] = max(shown) if shown else None
            if after and raws[e]:
                verdicts.append(_verdict(all(
                    s.get("latency_ms") is not None
                    and s["latency_ms"] <= (token_ms_at(raws[e], s.get("prompt_tokens")) or math.nan) + LATENCY_SLACK_MS
                    for s in after)))
        rows.append(_pair("first grey character at the first pauses after the prompt window moved, max",
                          worst[CT], worst[LLAMA], f"<= 1 token + {LATENCY_SLACK_MS:.0f} ms (each)",
                          verdict=" / ".join(verdicts)))
    return rows


def cli_pair_rows(engines: dict) -> list[Row]:
    """Target b again, the CLI in tight pairs with raw ctransformers (cli_pairs.py): the
    median over pairs of the CLI's rate against the faster raw thread count beside it."""
    measured = {e: engines.get(e, {}).get("cli_pairs") for e in (CT, LLAMA)}
    measured = {e: m for e, m in measured.items() if m}
    if not measured:
        return []
    rows = []
    for command, work in (("complete", "tokens streamed after the 100-word prompt"),
                          ("generate", "8 prompts x 32 tokens")):
        figures = {e: m[command] for e, m in measured.items()}
        first = next(iter(measured.values()))
        tokens = f"{first['complete_tokens']} " if command == "complete" else ""
        best = " / ".join(", ".join(f"t{t} {n}" for t, n in f["best_threads"].items()) for f in figures.values())
        rows.append(Row(
            f"writer-app {command} in pairs with raw ctransformers at its faster thread count "
            f"({tokens}{work}; raw fastest at: {best}): median x raw over "
            f"{' / '.join(str(len(f['ratios'])) for f in figures.values())} pairs",
            _num(figures[CT]["median_ratio"], 3) if CT in figures else "n/a",
            _num(figures[LLAMA]["median_ratio"], 3) if LLAMA in figures else "n/a",
            " / ".join("pairs: " + ", ".join(f"{r:.2f}" for r in f["ratios"]) for f in figures.values()),
            f">= {CLI_RATIO_TARGET} x raw (each, paired)",
            " / ".join(_verdict(f["median_ratio"] >= CLI_RATIO_TARGET) if f["ratios"] else "FAIL (noisy)"
                       for f in figures.values()),
        ))
    return rows


def engine_rows(name: str, engines: dict) -> list[Row]:
    return raw_rows(name, engines) + cli_rows(engines) + cli_pair_rows(engines) + app_rows(engines)


HEADER = ("figure", CT, LLAMA, "llama.cpp/ct", "target", "")


def format_table(rows: list[Row]) -> str:
    table = [Row(*HEADER), *rows]
    widths = [max(len(getattr(r, f)) for r in table) for f in ("figure", "app", "raw", "ratio", "target")]
    lines = []
    for row in table:
        cells = [row.figure, row.app, row.raw, row.ratio, row.target]
        lines.append(("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + f"  {row.verdict}").rstrip())
    return "\n".join(lines)


def format_markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---|---|---|---|"]
    lines.extend(f"| {r.figure} | {r.app} | {r.raw} | {r.ratio} | {r.target} | {r.verdict} |" for r in rows)
    return "\n".join(lines)
