"""Turn the collected results into the tables run.py prints: per engine, each app figure
beside the same engine's raw figure for the same file, their ratio and PASS/FAIL per
target (model_rows); then the engines side by side (engine_rows, engines.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.stats import median, percentile
from writer_app.engine.backend import PREWARM_CHUNK

GB_MIB = 1e9 / 2**20  # the memory target is 1.0 GB (decimal): 953.7 MiB
LATENCY_SLACK_MS = 15.0
SPEED_RATIO_TARGET = 0.95
STALL_MAX_MS, STALL_P99_MS = 16.0, 5.0
HUGE_PARAGRAPH_STALL_MS = 50.0  # issue 15: a 100,000-character paragraph must not freeze


@dataclass(frozen=True)
class Row:
    figure: str
    app: str
    raw: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""  # PASS, FAIL or "" (reported only)


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


def _ratio(app: float | None, raw: float | None) -> str:
    if not app or not raw or math.isnan(app) or math.isnan(raw):
        return ""
    return f"{app / raw:.2f}x"


def _verdict(ok: bool | None, what_if: bool = False) -> str:
    if ok is None:
        return ""
    word = "PASS" if ok else "FAIL"
    return f"(would {word})" if what_if else word


# The app never runs the engine on every CPU (services.inference.engine_threads); rows
# with more threads are the experiment behind that choice.
WHAT_IF_THREADS = " WHAT-IF (the app uses 1 on 2 CPUs)"
NOISE_LIMIT = 0.10  # two raw processes disagreeing more than this cannot judge a 5% target


def _speed_verdict(ratio: float, raw_spread: float | None) -> str:
    verdict = _verdict(ratio >= SPEED_RATIO_TARGET)
    if raw_spread is not None and raw_spread > NOISE_LIMIT:
        return f"{verdict} (noisy)"
    return verdict


def _values(samples: list[dict], key: str) -> list[float]:
    return [s[key] for s in samples if s.get(key) is not None]


def _causes(causes: dict | None) -> str:
    if not causes or not causes.get("stalls"):
        return "no stalls over 4 ms"
    return (
        f"{causes['stalls']} stalls over {causes['over_ms']:.0f} ms: "
        f"{causes['gui_thread_running']:.0%} GUI thread running, "
        f"{causes['waiting_for_cpu']:.0%} waiting for a CPU, {causes['blocked']:.0%} blocked (GIL/lock)"
    )


def _worst(stalls: list[dict] | None, count: int = 3) -> str:
    """e.g. "18.7 ms (ran 0.1, waited 0.0; autosave, 1 token)" for the longest stalls."""
    if not stalls:
        return "n/a"
    parts = []
    for stall in stalls[:count]:
        seen = [f"{stall[k]} {k.removesuffix('_during')}" for k in
                ("keys_during", "tokens_during", "autosaves_during", "requests_during",
                 "collections_during")
                if stall.get(k)]
        parts.append(f"{stall['late_ms']:.1f} ms (ran {stall['running_ms']:.1f}, waited "
                     f"{stall['waiting_for_cpu_ms']:.1f}{'; ' + ', '.join(seen) if seen else ''})")
    return "; ".join(parts)


def _own_stall_row(own: dict | None, what_if: bool = False) -> Row:
    """The stall without the time the GUI thread waited for a CPU (other processes)."""
    if not own or not own.get("count"):
        return Row("    (no scheduler counters)", "")
    ok = own["max"] < STALL_MAX_MS and own["p99"] < STALL_P99_MS
    return Row(
        "    the app's own part (minus waiting for a CPU): max / p99",
        f"{_ms(own['max'])} / {_ms(own['p99'])}", "", "",
        f"< {STALL_MAX_MS:.0f} / < {STALL_P99_MS:.0f} ms", _verdict(ok, what_if),
    )


def model_rows(name: str, raw: dict, app: dict, parts: dict | None = None) -> list[Row]:
    rows: list[Row] = []
    speed = app.get("speed", {})
    token_ms = speed.get("1", {}).get("raw_ms_per_token") or raw.get("gen_ms_per_token")
    for threads, run in sorted(speed.items()):
        ratio = run["speed_ratio"]
        spread = f", raw vs raw {run['raw_spread']:.0%}" if "raw_spread" in run else ""
        verdict = _speed_verdict(ratio, run.get("raw_spread"))
        what_if = threads != "1"  # the app leaves one CPU to the GUI: 1 thread on 2 CPUs
        rows.append(Row(
            f"generation, {threads} engine thread(s){WHAT_IF_THREADS if what_if else ''}: "
            f"ms/token (tok/s{spread})",
            f"{_ms(run['app_ms_per_token'])} ({1000 / run['app_ms_per_token']:.1f})",
            f"{_ms(run['raw_ms_per_token'])} ({1000 / run['raw_ms_per_token']:.1f})",
            f"{ratio:.2f} speed",
            f">= {SPEED_RATIO_TARGET} x raw speed",
            f"(would {verdict})" if what_if and verdict else verdict,
        ))
        rows.append(Row(
            f"  of which in the engine process (t{threads})", _ms(run["engine_ms_per_token"]),
            _ms(run["raw_ms_per_token"]), _ratio(run["engine_ms_per_token"], run["raw_ms_per_token"]),
        ))
        if "engine_cpu_ms_per_token" in run:
            engine_cpu, raw_cpu = run["engine_cpu_ms_per_token"], run["raw_cpu_ms_per_token"]
            rows.append(Row(
                f"  CPU per token: engine process (+ GUI process {_ms(run['gui_cpu_ms_per_token'])})",
                _ms(engine_cpu), _ms(raw_cpu), _ratio(engine_cpu, raw_cpu),
            ))
    if parts and "backend_cpu_ms_per_token_with_probs" in parts:
        with_probs = parts["backend_cpu_ms_per_token_with_probs"]
        without = parts["backend_cpu_ms_per_token_without_probs"]
        rows.append(Row(
            "  CPU per token in the backend alone: with_probs=True (panel shown) / False",
            f"{_ms(with_probs)} / {_ms(without)}", "", _ratio(with_probs, without),
        ))
    # In the long document a token costs more (attention over ~800 tokens of context).
    token_ms_long = raw.get("gen_ms_per_token_at_context") or token_ms
    long_context = raw.get("context_tokens")
    documents = (
        ("typing_short", "short document"),
        ("typing_long", "5,000-word document"),
        ("typing_long_prewarm", "5,000-word doc, WHAT-IF prewarm per key"),
    )
    for key, label in documents:
        if key not in app:
            continue
        what_if = "WHAT-IF" in label
        one = token_ms if key == "typing_short" else token_ms_long
        at = "" if key == "typing_short" or not long_context else f" at {long_context}"
        limit = one + LATENCY_SLACK_MS if one else None
        samples = app[key]["pauses"]
        latencies = _values(samples, "latency_ms")
        evaluated = _values(samples, "evaluated_tokens")
        shown = f"{len(latencies)}/{len(samples)} pauses"
        for stat, value in (("median", median(latencies)), ("p90", percentile(latencies, 0.9))):
            rows.append(Row(
                f"first grey character after the debounce, {label}, {stat} ({shown})",
                _ms(value), f"{_ms(one)} (1 token{at})", _ratio(value, one),
                f"<= {_ms(limit)}",
                _verdict(None if math.isnan(value) or limit is None else value <= limit, what_if),
            ))
        rows.append(Row(f"    slowest: {_slowest_pause(samples)}", ""))
        new_eval = raw.get("new_tokens_eval_ms", {}) if key != "typing_short" else {}
        typical = round(median(evaluated)) if evaluated else None
        raw_same = new_eval.get(str(typical)) if typical else None
        rows.append(Row(
            f"  tokens evaluated per request, {label} (median / max)",
            f"{typical} / {max(evaluated) if evaluated else 'n/a'}",
            f"{_ms(raw_same)} raw for {typical}{at}" if raw_same else "",
            "", "1 (hot cache)", "",
        ))
        stall = app[key]["stall_while_generating_ms"]
        rows.append(Row(
            f"  GUI stall while typing/generating, {label} (max / p99)",
            f"{_ms(stall['max'])} / {_ms(stall['p99'])}", "", "",
            f"< {STALL_MAX_MS:.0f} / < {STALL_P99_MS:.0f} ms",
            _verdict(stall["max"] < STALL_MAX_MS and stall["p99"] < STALL_P99_MS, what_if)
            if stall["count"] else "",
        ))
        rows.append(Row(f"    {_causes(app[key].get('stall_while_generating_causes'))}", ""))
        rows.append(_own_stall_row(app[key].get("stall_while_generating_own_ms"), what_if))
        rows.append(Row(f"    worst: {_worst(app[key].get('worst_stalls'))}", ""))
    rows.extend(window_rows(raw, app.get("window_move")))
    if "autosave_long_ms" in app:
        save = app["autosave_long_ms"]
        rows.append(Row(
            "GUI thread's part of one crash-recovery copy of the 5,000-word document (median / max)",
            f"{_ms(save['median'])} / {_ms(save['max'])}", "", "", f"< {STALL_MAX_MS:.0f} ms",
            _verdict(save["max"] < STALL_MAX_MS),
        ))
    if "gc" in app:
        gc_stats = app["gc"]
        full, unfrozen = gc_stats["full_collection_ms"], gc_stats.get("full_collection_unfrozen_ms")
        rows.append(Row(
            f"Python GC in the GUI process: pauses > 5 ms during the run ({gc_stats['pauses_over_5ms']}), "
            "longest / one full collection as the app runs (objects frozen after start-up and load)",
            f"{_ms(gc_stats['longest_pause_ms'])} / {_ms(full)}",
            f"{_ms(unfrozen)} (nothing frozen)" if unfrozen is not None else "", "",
            f"< {STALL_MAX_MS:.0f} ms",
            _verdict(max(gc_stats["longest_pause_ms"], full) < STALL_MAX_MS),
        ))
    for run in app.get("stall", []):
        stall, keys = run["stall_ms"], run["key_handling_ms"]
        what_if = run["threads"] != 1
        rows.append(Row(
            f"GUI stall typing through a suggestion, t{run['threads']} nice {run['niceness']}"
            f"{WHAT_IF_THREADS if what_if else ''} (max / p99; {run['keys_typed']} keys)",
            f"{_ms(stall['max'])} / {_ms(stall['p99'])}", "", "",
            f"< {STALL_MAX_MS:.0f} / < {STALL_P99_MS:.0f} ms",
            _verdict(stall["max"] < STALL_MAX_MS and stall["p99"] < STALL_P99_MS, what_if),
        ))
        rows.append(Row(f"    {_causes(run.get('stall_causes'))}", ""))
        rows.append(_own_stall_row(run.get("stall_own_ms"), what_if))
        rows.append(Row(f"    worst: {_worst(run.get('worst_stalls'))}", ""))
        rows.append(Row("  one key press handled in (median / max)",
                        f"{_ms(keys['median'])} / {_ms(keys['max'])}"))
    for run in app.get("huge_paragraph", []):
        stall, own = run["stall_ms"], run.get("stall_own_ms") or {}
        rows.append(Row(
            f"GUI stall, a suggestion streaming onto one {run['chars']:,}-character paragraph "
            f"({run['kind']}; {run['ghost_updates']} updates): max / own max",
            f"{_ms(stall['max'])} / {_ms(own.get('max'))}", "", "",
            f"< {HUGE_PARAGRAPH_STALL_MS:.0f} ms",
            _verdict(stall["max"] < HUGE_PARAGRAPH_STALL_MS) if stall["count"] else "",
        ))
    at = f" at {long_context}" if long_context else ""
    for key, label in (("cancel_generation", "generating"), ("cancel_prompt", "evaluating the prompt")):
        trials = [t for t in app.get(key, []) if t.get("phase") not in (None, "missed")]
        if key not in app:
            continue
        gui = _values(trials, "gui_ms")
        worst = max(gui) if gui else None
        rows.append(Row(
            f"cancel while {label}: edit -> stopped (median / max, {len(gui)} trials)",
            f"{_ms(median(gui))} / {_ms(worst)}", f"{_ms(token_ms_long)} (1 token{at})",
            _ratio(worst, token_ms_long), f"<= {_ms(token_ms_long)}",
            _verdict(worst <= token_ms_long if worst is not None and token_ms_long else None),
        ))
    if parts and "cold_prompt_generation_ms" in parts:
        prewarm, one = parts["cold_prompt_prewarm_ms"], parts["cold_prompt_generation_ms"]
        batched = parts["cold_prompt_batched_ms"]
        chunk = parts.get("prewarm_chunk", PREWARM_CHUNK)
        rows.append(Row(
            f"  the price: a cold {parts['cold_prompt_tokens']}-token prompt: prewarmed (batches "
            f"of {chunk}) / a generation's own (one token per call)", f"{_ms(prewarm)} / {_ms(one)}",
            f"{_ms(batched)} (largest batches)", f"{prewarm / batched:.2f}x / {one / batched:.2f}x time",
        ))
    load = app.get("load", {})
    raw_load = raw.get("load_s", 0) * 1000 or None
    if "cold" in load and load["cold"]["model"] == name:
        rows.append(Row("model load (InferenceService.load_model -> modelLoaded)",
                        _ms(load["cold"]["ms"]), _ms(raw_load), _ratio(load["cold"]["ms"], raw_load)))
    for key, label in (("switch_to", f"switch to {name}"), ("switch_back", f"switch from {name}")):
        if key in load:
            run = load[key]
            rows.append(Row(f"{label} (GUI stall max / p99: {_ms(run['stall_ms']['max'])} / "
                            f"{_ms(run['stall_ms']['p99'])})", _ms(run["ms"]),
                            _ms(raw_load) if key == "switch_to" else "",
                            _ratio(run["ms"], raw_load) if key == "switch_to" else ""))
    if parts:
        rows.append(Row(
            "  load parts: engine interpreter start / engine load / tokenizer / file checks",
            f"{_ms(parts['engine_start_ms'])} / {_ms(parts['engine_reload_ms'])} / "
            f"{_ms(parts['build_tokenizer_ms'] + parts['read_vocab_ms'])} / "
            f"{_ms(parts['check_file_in_app_ms'])}",
            f"{_ms(raw_load)} (load)",
        ))
    before = app.get("memory_before_load", {})
    if before.get("gui_rss_mib"):
        rows.append(Row("resident: GUI process before any model", _mib(before["gui_rss_mib"])))
    memory = app.get("memory_long_document") or app.get("memory_with_model") or {}
    gui_peak = app.get("gui_peak_rss_mib")
    engine_peak = memory.get("engine_hwm_mib")
    raw_peak = raw.get("peak_rss_mib")
    rows.append(Row("peak resident: GUI process", _mib(gui_peak)))
    rows.append(Row("peak resident: engine process", _mib(engine_peak), _mib(raw_peak),
                    _ratio(engine_peak, raw_peak)))
    if gui_peak and engine_peak:
        total = gui_peak + engine_peak
        now = (memory.get("gui_rss_mib") or 0) + (memory.get("engine_rss_mib") or 0)
        is_large = "large" in name
        rows.append(Row(
            f"whole app resident, GUI + engine (peak; now {now:.0f} MiB)", _mib(total),
            _mib(raw_peak), _ratio(total, raw_peak),
            f"<= {GB_MIB:.0f} MiB (1.0 GB)" if is_large else "",
            _verdict(total <= GB_MIB) if is_large else "",
        ))
    rows.extend(_switch_memory_rows(app.get("load", {}), name))
    return rows


def _switch_memory_rows(load: dict, name: str) -> list[Row]:
    """The whole app at once while switching models (whole_app_memory.py): the peak of the
    sum of its processes, the old engine included for as long as it lives."""
    rows = []
    is_large = "large" in name
    for key, label in (("switch_to", f"switch to {name}"), ("switch_back", f"switch from {name}")):
        sampled = load.get(key, {}).get("whole_app_memory")
        if not sampled:
            continue
        parts = " + ".join(f"{p['name']} {p['rss_mib']:.0f}" for p in sampled["at_peak"])
        rows.append(Row(
            f"whole app at once during the {label} (every {sampled['interval_ms']:.0f} ms; "
            f"at its peak: {parts})", _mib(sampled["peak_mib"]), "", "",
            f"<= {GB_MIB:.0f} MiB (1.0 GB)" if is_large else "",
            _verdict(sampled["peak_mib"] <= GB_MIB) if is_large else "",
        ))
    return rows


def token_ms_at(raw: dict, tokens: int | None) -> float | None:
    """Raw generation time per token at `tokens` of context: linear between the two
    contexts raw measured (the speed prompt's and the long one's), clamped to them."""
    near, far = raw.get("prompt_tokens"), raw.get("context_tokens")
    short_ms, long_ms = raw.get("gen_ms_per_token"), raw.get("gen_ms_per_token_at_context")
    if short_ms is None:
        return None
    if not tokens or long_ms is None or not near or not far or far <= near:
        return short_ms
    share = min(1.0, max(0.0, (tokens - near) / (far - near)))
    return short_ms + share * (long_ms - short_ms)


def _slowest_pause(samples: list[dict]) -> str:
    """The slowest pause's first grey character, split where the time went (older
    figure files have no split)."""
    shown = [s for s in samples if s.get("latency_ms") is not None]
    if not shown:
        return "n/a"
    slowest = max(shown, key=lambda s: s["latency_ms"])
    parts = [("to the worker", "to_worker_ms"), ("engine's first token", "worker_first_token_ms"),
             ("to the screen", "to_screen_ms")]
    split = ", ".join(f"{name} {_ms(slowest[k])}" for name, k in parts if slowest.get(k) is not None)
    return f"{_ms(slowest['latency_ms'])}" + (f" ({split})" if "to_screen_ms" in slowest else "")


def window_rows(raw: dict, window: dict | None) -> list[Row]:
    """The first pauses after the app's prompt window moved (app_scenarios.window_move):
    each against one raw token at its own context + 15 ms."""
    if not window:
        return []
    samples = window["pauses"]
    after = [s for s in samples if s.get("moved")]
    if not after:
        return [Row(f"window move: the prompt window did not move in {len(samples)} pauses", "n/a",
                    "", "", "a move", "FAIL")]
    limits = [(token_ms_at(raw, s.get("prompt_tokens")) or math.nan) + LATENCY_SLACK_MS for s in after]
    latencies = [s.get("latency_ms") for s in after]
    ok = [lat is not None and lat <= limit for lat, limit in zip(latencies, limits, strict=True)]
    shown = [lat for lat in latencies if lat is not None]
    worst = max(shown) if shown else None
    one = token_ms_at(raw, max((s.get("prompt_tokens") or 0) for s in after))
    return [
        Row(f"first grey character at the {len(after)} pauses after the prompt window moved "
            f"(pause {window['moved_at_pause']}; {window['n_ctx']}-token context), max",
            _ms(worst), f"{_ms(one)} (1 token at {max((s.get('prompt_tokens') or 0) for s in after)})",
            _ratio(worst, one), f"<= 1 token + {LATENCY_SLACK_MS:.0f} ms each",
            _verdict(all(ok)) if raw else ""),
        Row("  each pause: first grey character / tokens evaluated / prompt evaluation / since the move",
            "; ".join(f"{_ms(s.get('latency_ms'))} / {s.get('evaluated_tokens')} / "
                      f"{_ms(s.get('prompt_eval_ms'))} / "
                      f"{'n/a' if s.get('ms_since_move') is None else format(s['ms_since_move'] / 1000, '.1f')} s"
                      for s in after)),
    ]


def format_table(rows: list[Row], raw_label: str = "raw ctransformers") -> str:
    header = Row("figure", "app", raw_label, "app/raw", "target", "")
    table = [header, *rows]
    widths = [max(len(getattr(r, f)) for r in table) for f in ("figure", "app", "raw", "ratio", "target")]
    lines = []
    for row in table:
        cells = [row.figure, row.app, row.raw, row.ratio, row.target]
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        lines.append(f"{line}  {row.verdict}".rstrip())
    return "\n".join(lines)


def format_markdown(rows: list[Row], raw_label: str = "raw ctransformers") -> str:
    lines = [f"| figure | app | {raw_label} | app/raw | target | |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.figure} | {r.app} | {r.raw} | {r.ratio} | {r.target} | {r.verdict} |")
    return "\n".join(lines)


def raw_extras(raw: dict) -> list[str]:
    """The raw figures that explain the app's limits (prompt batches, new tokens)."""
    lines = []
    if "batch_ms_per_token" in raw:
        sweep = ", ".join(f"{b}: {ms:.1f}" for b, ms in raw["batch_ms_per_token"].items())
        lines.append(f"raw prompt evaluation, ms/token by batch size at {raw['batch_sweep_at']} "
                     f"tokens of context: {sweep}")
    if "new_tokens_eval_ms" in raw:
        new = ", ".join(f"{k}: {ms:.0f} ms" for k, ms in raw["new_tokens_eval_ms"].items())
        lines.append(f"raw: evaluating k new tokens after {raw['context_tokens']} cached: {new}")
    if "rss_mib_by_context" in raw:
        steps = ", ".join(f"{n}: {mib:.0f}" for n, mib in raw["rss_mib_by_context"].items())
        lines.append(f"raw resident MiB after load: {raw.get('rss_after_load_mib', 0):.0f}; "
                     f"by tokens of context: {steps}")
    if "gen_ms_per_token_at_context" in raw:
        lines.append(f"raw: generation at {raw['context_tokens']} tokens of context: "
                     f"{raw['gen_ms_per_token_at_context']:.1f} ms/token")
    if "read_ms_per_token" in raw:
        reads = ", ".join(f"{b}: {ms:.1f}" for b, ms in raw["read_ms_per_token"].items())
        lines.append(f"raw: reading a cold {raw['read_tokens']}-token prompt, ms/token by batch: {reads}")
    lines.append(f"raw: load {raw['load_s'] * 1000:.0f} ms, prompt {raw['prompt_eval_ms_per_token']:.1f}"
                 f" ms/token (batch {raw.get('prompt_batch', 8)}), generation "
                 f"{raw['gen_ms_per_token']:.1f} ms/token, peak resident {raw['peak_rss_mib']:.0f} MiB")
    return lines
