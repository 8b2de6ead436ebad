"""The speed benchmark, in one command (from the repository root):

    python benchmarks/run.py                 # gpt2 and gpt2-large, both engines, ~130 minutes
    python benchmarks/run.py --quick         # gpt2 only, fewer samples
    python benchmarks/run.py --only speed,cancel --models gpt2 --engines llama.cpp
    python benchmarks/run.py --tiny          # toy models, seconds: checks the code runs

Builds (once, cached) gpt2- and gpt2-large-shaped GGML files with random q4_0 weights.
For each model: the engines raw in their own processes (raw_bench.py / raw_llama.py, at
every thread count up to the physical cores) and the real CLI (`writer-app complete`
and `generate`, cli_bench.py), every engine taking turns for five rounds (turns.py);
each engine's CLI again in tight pairs with raw ctransformers (cli_pairs.py); then per
engine (ctransformers, llama.cpp) the app's parts and the app in another
process (the real WriterApp offscreen, its worker thread and engine process), and its
typing and stall scenarios again in two more rounds of turns. Prints one
table per engine with every app figure beside the same engine's raw figure, then the
engines side by side, with PASS/FAIL per target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import engines as engine_report  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.cli_pairs import measure_cli_pairs  # noqa: E402
from benchmarks.models import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    GPT2,
    GPT2_LARGE,
    TINY,
    TINY_LARGE,
    BenchModel,
    ensure_model,
)
from benchmarks.procfs import load_average  # noqa: E402
from benchmarks.turns import (  # noqa: E402
    BenchmarkFailed,
    default_rounds,
    measure_turns,
    python_module,
    raw_thread_counts,
    run_json,
)
from writer_app.engine.cores import physical_cores  # noqa: E402
from writer_app.engine.ggml import validate_model_file  # noqa: E402
from writer_app.engine.memory import context_for_budget  # noqa: E402
from writer_app.settings import ModelSettings  # noqa: E402

SCENARIOS = ("raw", "cli", "pairs", "speed", "typing", "cancel", "prewarm", "window", "stall", "huge", "load")
ENGINES = ("ctransformers", "llama.cpp")
# What-if experiments about ctransformers' thread choice and the GUI's layout, which a
# second engine does not change: run on ctransformers only, to keep the run shorter.
CTRANSFORMERS_ONLY = ("prewarm", "huge")
NOT_THE_APPS = ("raw", "cli", "pairs")  # stages with no app process (turns.py, cli_pairs.py)
APP_TURN_SCENARIOS = ("typing", "stall")  # measured again in rounds: measure_app_turns


def plan(args: argparse.Namespace) -> list[tuple[BenchModel, BenchModel | None, dict]]:
    """(model, partner to switch with, app options) per model, by run size."""
    if args.tiny:
        # One toy model (switching from and back to another): every scenario, briefly.
        small = {"--pauses": 1, "--long-pauses": 1, "--cancel-trials": 1, "--long-words": 800,
                 "--short-words": 40, "--speed-tokens": 8, "--speed-reps": 1,
                 "--stall-configs": "1:0", "--stall-generations": 1, "--pace-ms": 40,
                 "--window-pauses": 1, "--window-words": 6}
        return [(TINY_LARGE, TINY, small)]
    quick = args.quick
    gpt2 = {"--pauses": 6 if quick else 10, "--long-pauses": 6 if quick else 10,
            "--cancel-trials": 4 if quick else 8, "--speed-tokens": 64,
            "--speed-reps": 3 if quick else 4, "--speed-threads": "1" if quick else "1,2",
            "--stall-configs": "1:0" if quick else "1:0,2:0,2:10",
            "--stall-generations": 3 if quick else 4}
    # Ten pauses each, as gpt2's: the 90th percentile of six was their maximum.
    large = {"--pauses": 10, "--long-pauses": 10, "--cancel-trials": 4, "--speed-tokens": 32,
             "--speed-reps": 3, "--speed-threads": "1", "--stall-configs": "1:0",
             "--stall-generations": 2, "--window-pauses": 3}
    chosen = args.models.split(",") if args.models else (["gpt2"] if quick else ["gpt2", "gpt2-large"])
    runs = []
    for name in chosen:
        if name == "gpt2":
            runs.append((GPT2, None, gpt2))
        elif name == "gpt2-large":
            runs.append((GPT2_LARGE, GPT2, large))
        else:
            raise SystemExit(f"Unknown model {name!r}: choose gpt2 and/or gpt2-large.")
    return runs


def engine_options(engine: str, options: dict) -> dict:
    """The app options for one engine: the what-if thread experiments are ctransformers'."""
    if engine == "ctransformers":
        return options
    return {**options, "--speed-threads": "1", "--stall-configs": "1:0"}


def app_context(path: Path) -> int:
    """The context the app gives this model under its default memory budget: the raw
    long-context figures are measured there, so "one token" means the same work."""
    facts = validate_model_file(path)
    return context_for_budget(facts, ModelSettings().memory_budget_mb * 1_000_000)


def measure(args: argparse.Namespace, work: Path) -> dict:
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    engines = [e for e in args.engines.split(",") if e]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"Unknown engine(s) {', '.join(sorted(unknown))}: choose {', '.join(ENGINES)}.")
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "physical_cores": physical_cores(),
            "python": platform.python_version(),
            "load_average_start": load_average(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "models": {},
    }
    for model, partner, options in plan(args):
        path = ensure_model(model, args.cache_dir)
        started = time.perf_counter()
        rounds = args.rounds or default_rounds(args.tiny, args.quick, model)
        entry: dict = {"file": path.name, "engines": measure_turns(
            model, path, engines, rounds=rounds, raw="raw" in only, cli="cli" in only, tiny=args.tiny,
            context=app_context(path), work=work)}
        if only & {"raw", "cli"}:
            entry["turns"] = {"rounds": rounds, "seconds": round(time.perf_counter() - started)}
            print(f"[run] {model.name}: raw engines and CLIs, {rounds} rounds: {entry['turns']['seconds']} s",
                  flush=True)
        if "pairs" in only:
            measure_pairs(model, path, engines, args, work, entry["engines"])
        for engine in engines:
            measure_app(model, partner, options, path, engine, only, args, work, entry["engines"][engine])
        if len(engines) > 1:
            measure_app_turns(model, partner, options, path, engines, only, args, work, entry["engines"])
        results["models"][model.name] = entry
    results["machine"]["load_average_end"] = load_average()
    return results


def measure_pairs(model: BenchModel, path: Path, engines: list[str], args: argparse.Namespace,
                  work: Path, figures: dict[str, dict]) -> None:
    """Each engine's CLI beside raw ctransformers in tight pairs (cli_pairs.py)."""
    large = model is GPT2_LARGE
    pairs = 2 if args.tiny else (6 if large else 16)
    tokens = 10 if args.tiny else (48 if large else 128)
    threads = raw_thread_counts(args.tiny)
    for engine in engines:
        started = time.perf_counter()
        figures[engine]["cli_pairs"] = measure_cli_pairs(
            path, engine, work, pairs=pairs, complete_tokens=tokens, raw_threads=threads)
        figures[engine]["cli_pairs"]["seconds"] = round(time.perf_counter() - started)


def measure_app(model: BenchModel, partner: BenchModel | None, options: dict, path: Path,
                engine: str, only: set[str], args: argparse.Namespace, work: Path, figures: dict) -> None:
    """The app's parts and the app itself on one engine, into `figures` (which holds the
    engine's raw figures when they were measured: the app is compared with them)."""
    started = time.perf_counter()
    if only & {"load", "speed"}:
        out = work / f"parts-{model.name}-{engine}.json"
        figures["app_parts"] = run_json(
            python_module("benchmarks.app_parts", ["--model", str(path), "--out", str(out), "--engine", engine,
                                                   "--context", str(app_context(path))]), out)
    wanted = [s for s in SCENARIOS if s in only and s not in NOT_THE_APPS]
    if engine != "ctransformers":
        wanted = [s for s in wanted if s not in CTRANSFORMERS_ONLY]
    if "--window-pauses" not in options:  # the window scenario is gpt2-large's (a short context)
        wanted = [s for s in wanted if s != "window"]
    if wanted:
        figures["app"] = run_app(model, partner, path, engine, wanted, engine_options(engine, options), args,
                                 work, figures, label="")
    if "app" in figures or "app_parts" in figures:
        figures["seconds"] = round(time.perf_counter() - started)
        print(f"[run] {model.name} on {engine}: the app, {figures['seconds']} s", flush=True)


def run_app(model: BenchModel, partner: BenchModel | None, path: Path, engine: str, scenarios: list[str],
            options: dict, args: argparse.Namespace, work: Path, figures: dict, label: str) -> dict:
    """One app_bench process: the real app on `engine` through `scenarios`."""
    out = work / f"app-{model.name}-{engine}{label}.json"
    command = ["--model", f"{model.name}={path}", "--scenarios", ",".join(scenarios),
               "--engine", engine, "--out", str(out)]
    if partner is not None:
        command += ["--partner", f"{partner.name}={ensure_model(partner, args.cache_dir)}"]
    if "raw" in figures:
        command += ["--token-ms", str(figures["raw"]["gen_ms_per_token"])]
    for key, value in options.items():
        command += [key, str(value)]
    return run_json(python_module("benchmarks.app_bench", command), out)


def measure_app_turns(model: BenchModel, partner: BenchModel | None, options: dict, path: Path,
                      engines: list[str], only: set[str], args: argparse.Namespace, work: Path,
                      figures: dict[str, dict]) -> None:
    """The first grey character and the GUI's stalls again, the engines taking turns:
    "llama.cpp no worse" compares figures of 4-12 ms that one engine's minute could
    decide (run C of 2026-12-07 passed 5 of its 10 rows; a run of just those figures
    right after it, 10). measure_app's run is round 1; each later round runs `typing`
    and `stall` (at one thread: the row compared) on every engine, in turn order
    reversed each round, into figures[engine]["app_rounds"]. engines.py judges the
    median over the rounds."""
    wanted = [s for s in APP_TURN_SCENARIOS if s in only]
    rounds = args.app_rounds or (2 if args.tiny else 3)
    if not wanted or rounds < 2:
        return
    started = time.perf_counter()
    for number in range(1, rounds):
        order = engines[::-1] if number % 2 else engines
        print(f"[app turns] {model.name} round {number + 1} of {rounds}: {' then '.join(order)}, "
              f"load average {load_average()}", flush=True)
        for engine in order:
            round_options = {**engine_options(engine, options), "--stall-configs": "1:0"}
            run = run_app(model, partner, path, engine, wanted, round_options, args, work, figures[engine],
                          label=f"-r{number + 1}")
            figures[engine].setdefault("app_rounds", []).append(run)
    print(f"[run] {model.name}: typing and stalls, {rounds} rounds: {round(time.perf_counter() - started)} s",
          flush=True)


def render(results: dict, markdown: bool = False) -> str:
    machine = results["machine"]
    parts = [
        f"{machine['cpus']} CPUs, Python {machine['python']}, load average "
        f"{machine['load_average_start']} at the start, {machine['load_average_end']} at the end "
        f"({machine['started']})"
    ]
    for name, entry in results["models"].items():
        # Runs before the second engine measured ctransformers only, at the entry's top level.
        engines = entry.get("engines") or {"ctransformers": entry}
        for engine, figures in engines.items():
            if not figures.keys() & {"raw", "app", "app_parts"}:
                continue  # only the CLI was measured (cli, pairs): the engines' table has it
            rows = report.model_rows(
                name, figures.get("raw", {}), figures.get("app", {}), figures.get("app_parts")
            )
            extras = report.raw_extras(figures["raw"]) if "raw" in figures else []
            label = f"raw {engine}"
            title = name if "engines" not in entry else f"{name} on {engine}"
            if markdown:
                parts.append(f"\n### {title} (`{entry['file']}`)\n\n{report.format_markdown(rows, label)}\n")
                parts.extend(f"- {line}" for line in extras)
            else:
                parts.append(f"\n== {title} ({entry['file']}) ==\n{report.format_table(rows, label)}")
                parts.extend(extras)
        side = engine_report.engine_rows(name, engines) if len(engines) > 1 or "engines" in entry else []
        if side:
            if markdown:
                parts.append(f"\n### {name}: the engines side by side\n\n{engine_report.format_markdown(side)}\n")
            else:
                parts.append(f"\n== {name}: the engines side by side ==\n{engine_report.format_table(side)}")
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="gpt2 only, fewer samples")
    parser.add_argument("--tiny", action="store_true", help="toy models: does the code run?")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--models", help="gpt2,gpt2-large (default: both; --quick: gpt2)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help=f"comma-separated subset of {','.join(ENGINES)} (default: both)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="raw engines and CLIs take turns this many times (default: 5; "
                             "--quick (gpt2) and --tiny: 2)")
    parser.add_argument("--app-rounds", type=int, default=0,
                        help="the app's typing and stall scenarios: rounds of engines taking turns "
                             "(default: 3; --tiny: 2)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--report", type=Path, help="only print the tables of a --json file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        print(render(json.loads(args.report.read_text()), args.markdown))
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="writer-app-bench-") as work:
        try:
            results = measure(args, Path(work))
        except BenchmarkFailed as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    results["machine"]["seconds"] = round(time.perf_counter() - started)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(render(results, args.markdown))
    print(f"\n(total {results['machine']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
