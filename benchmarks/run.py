"""The speed benchmark, in one command (from the repository root):

    python benchmarks/run.py                 # gpt2 and gpt2-large, both engines, ~30 minutes
    python benchmarks/run.py --quick         # gpt2 only, fewer samples
    python benchmarks/run.py --only speed,cancel --models gpt2 --engines llama.cpp
    python benchmarks/run.py --tiny          # toy models, seconds: checks the code runs

Builds (once, cached) gpt2- and gpt2-large-shaped GGML files with random q4_0 weights.
For each model and each engine (ctransformers, llama.cpp): the engine raw in its own
processes (raw_bench.py / raw_llama.py; 1 thread, and the slimmer figures at every
thread count up to the physical cores), the real CLI (`writer-app complete` and
`generate`, cli_bench.py), the app's parts, then the app in another process (the real
WriterApp offscreen, its worker thread and engine process, on that engine). Prints one
table per engine with every app figure beside the same engine's raw figure, then the
engines side by side, with PASS/FAIL per target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import engines as engine_report  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.cli_bench import CliFailed, measure_cli, prompts_file  # noqa: E402
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
from writer_app.engine.cores import physical_cores  # noqa: E402
from writer_app.engine.ggml import validate_model_file  # noqa: E402
from writer_app.engine.memory import context_for_budget  # noqa: E402
from writer_app.settings import ModelSettings  # noqa: E402

SCENARIOS = ("raw", "cli", "speed", "typing", "cancel", "prewarm", "window", "stall", "huge", "load")
ENGINES = ("ctransformers", "llama.cpp")
# What-if experiments about ctransformers' thread choice and the GUI's layout, which a
# second engine does not change: run on ctransformers only, to keep the run ~30 minutes.
CTRANSFORMERS_ONLY = ("prewarm", "huge")
READ_TOKENS = 512  # the raw prompt-reading comparison (issue 12, target a)
LLAMA_READ_BATCHES = "16,64,512"  # the app's chunk, a middle one, llama.cpp's default


class BenchmarkFailed(RuntimeError):
    """A measuring process failed; its output says why."""


def _python(module: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _run(command: list[str], out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    completed = subprocess.run(command, cwd=REPO, env=env)
    if completed.returncode != 0 or not out.exists():
        raise BenchmarkFailed(
            f"{' '.join(command[2:4])} failed with exit code {completed.returncode}."
        )
    return json.loads(out.read_text())


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
    large = {"--pauses": 6, "--long-pauses": 6, "--cancel-trials": 4, "--speed-tokens": 32,
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


def raw_options(model: BenchModel, tiny: bool, context: int, engine: str, full: bool) -> list[str]:
    """raw_bench / raw_llama options: `full` at 1 thread (every figure), else the figures
    compared across thread counts (generation, the 512-token read, generate's work)."""
    if tiny:
        options = ["--gen-tokens", "8", "--reps", "1", "--read-tokens", "64"]
        if full:
            options += ["--context-tokens", "100"]
        return options + (["--read-batches", "16,64"] if engine == "llama.cpp" else
                          ["--sweep", "1,4", "--sweep-at", "32", "--sweep-tokens", "8"])
    large = model is GPT2_LARGE
    options = ["--gen-tokens", "24" if large else "64", "--reps", "2" if large else "3",
               "--read-tokens", str(READ_TOKENS)]
    if full:
        options += ["--context-tokens", str(min(800, context))]
    if engine == "llama.cpp":
        return options + ["--read-batches", LLAMA_READ_BATCHES]
    # gpt2-large crashes ctransformers with batches of 32 even on short prompts. The
    # sweep (32 tokens after 64) picks the batch the 512-token read then uses.
    return options + ["--sweep", "1,2,4,8,16" if large else "1,2,4,8,16,32", "--sweep-tokens", "32"]


def measure_raw(model: BenchModel, path: Path, engine: str, args: argparse.Namespace, work: Path) -> dict:
    """The engine raw at 1 thread (every figure) and at each thread count up to the
    physical cores (generation, prompt reading, generate's workload for ctransformers)."""
    module = "benchmarks.raw_llama" if engine == "llama.cpp" else "benchmarks.raw_bench"
    workload = ["--workload-prompts", str(prompts_file(work)), "--workload-n", "1"]
    runs = {}
    counts = [1] if args.tiny else range(1, max(1, physical_cores()) + 1)
    for threads in counts:
        out = work / f"raw-{model.name}-{engine}-t{threads}.json"
        options = raw_options(model, args.tiny, app_context(path), engine, full=threads == 1)
        if engine == "ctransformers":
            options += workload  # the reference of `writer-app generate` (cli_bench)
        runs[str(threads)] = _run(_python(module, ["--model", str(path), "--out", str(out),
                                                   "--threads", str(threads), *options]), out)
    return runs


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
        entry: dict = {"file": path.name, "engines": {}}
        for engine in engines:
            entry["engines"][engine] = measure_engine(model, partner, options, path, engine, only, args, work)
        results["models"][model.name] = entry
    results["machine"]["load_average_end"] = load_average()
    return results


def measure_engine(model: BenchModel, partner: BenchModel | None, options: dict, path: Path,
                   engine: str, only: set[str], args: argparse.Namespace, work: Path) -> dict:
    figures: dict = {}
    started = time.perf_counter()
    if "raw" in only:
        runs = measure_raw(model, path, engine, args, work)
        figures["raw"] = runs["1"]
        figures["raw_threads"] = runs
    if "cli" in only:
        complete = (2, 10) if args.tiny else (8, 72 if model is GPT2 else 40)
        try:
            figures["cli"] = measure_cli(path, engine, work, complete_tokens=complete, samples=1,
                                         threads=1 if args.tiny else None)
        except CliFailed as error:
            raise BenchmarkFailed(str(error)) from error
    if only & {"load", "speed"}:
        out = work / f"parts-{model.name}-{engine}.json"
        figures["app_parts"] = _run(
            _python("benchmarks.app_parts", ["--model", str(path), "--out", str(out), "--engine", engine,
                                             "--context", str(app_context(path))]), out)
    wanted = [s for s in SCENARIOS if s in only and s not in ("raw", "cli")]
    if engine != "ctransformers":
        wanted = [s for s in wanted if s not in CTRANSFORMERS_ONLY]
    if "--window-pauses" not in options:  # the window scenario is gpt2-large's (a short context)
        wanted = [s for s in wanted if s != "window"]
    if wanted:
        out = work / f"app-{model.name}-{engine}.json"
        command = ["--model", f"{model.name}={path}", "--scenarios", ",".join(wanted),
                   "--engine", engine, "--out", str(out)]
        if partner is not None:
            command += ["--partner", f"{partner.name}={ensure_model(partner, args.cache_dir)}"]
        if "raw" in figures:
            command += ["--token-ms", str(figures["raw"]["gen_ms_per_token"])]
        for key, value in engine_options(engine, options).items():
            command += [key, str(value)]
        figures["app"] = _run(_python("benchmarks.app_bench", command), out)
    figures["seconds"] = round(time.perf_counter() - started)
    print(f"[run] {model.name} on {engine}: {figures['seconds']} s", flush=True)
    return figures


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
