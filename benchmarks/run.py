"""The speed benchmark, in one command (from the repository root):

    python benchmarks/run.py                 # gpt2 and gpt2-large, 11-13 minutes
    python benchmarks/run.py --quick         # gpt2 only, fewer samples, ~4 minutes
    python benchmarks/run.py --only speed,cancel --models gpt2
    python benchmarks/run.py --tiny          # toy models, seconds: checks the code runs

Builds (once, cached) gpt2- and gpt2-large-shaped GGML files with random q4_0 weights,
measures raw ctransformers on each in its own process, then the app in another (the
real WriterApp offscreen, its worker thread and engine process), and prints one table
with every app figure beside the raw figure on the same file and PASS/FAIL per target.
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

from benchmarks import report  # noqa: E402
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
from writer_app.engine.ggml import validate_model_file  # noqa: E402
from writer_app.engine.memory import context_for_budget  # noqa: E402
from writer_app.settings import ModelSettings  # noqa: E402

SCENARIOS = ("raw", "speed", "typing", "cancel", "prewarm", "stall", "huge", "load")


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
                 "--stall-configs": "1:0", "--stall-generations": 1, "--pace-ms": 40}
        return [(TINY_LARGE, TINY, small)]
    quick = args.quick
    gpt2 = {"--pauses": 6 if quick else 12, "--long-pauses": 6 if quick else 12,
            "--cancel-trials": 4 if quick else 8, "--speed-tokens": 64,
            "--speed-reps": 3 if quick else 5, "--speed-threads": "1" if quick else "1,2",
            "--stall-configs": "1:0" if quick else "1:0,2:0,2:10",
            "--stall-generations": 3 if quick else 4}
    large = {"--pauses": 6, "--long-pauses": 6, "--cancel-trials": 4, "--speed-tokens": 32,
             "--speed-reps": 3, "--speed-threads": "1", "--stall-configs": "1:0",
             "--stall-generations": 2}
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


def app_context(path: Path) -> int:
    """The context the app gives this model under its default memory budget: the raw
    long-context figures are measured there, so "one token" means the same work."""
    facts = validate_model_file(path)
    return context_for_budget(facts, ModelSettings().memory_budget_mb * 1_000_000)


def raw_options(model: BenchModel, tiny: bool, context: int) -> list[str]:
    if tiny:
        return ["--gen-tokens", "8", "--reps", "1", "--context-tokens", "100",
                "--sweep", "1,4", "--sweep-at", "32", "--sweep-tokens", "8"]
    long_context = str(min(800, context))
    if model is GPT2_LARGE:
        # gpt2-large crashes ctransformers with batches of 32 even on short prompts.
        return ["--gen-tokens", "24", "--reps", "2", "--context-tokens", long_context,
                "--sweep", "1,2,4,8,16", "--sweep-tokens", "32"]
    return ["--gen-tokens", "64", "--reps", "3", "--context-tokens", long_context,
            "--sweep", "1,2,4,8,16,32", "--sweep-tokens", "32"]


def measure(args: argparse.Namespace, work: Path) -> dict:
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_start": load_average(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "models": {},
    }
    for model, partner, options in plan(args):
        path = ensure_model(model, args.cache_dir)
        entry: dict = {"file": path.name}
        if "raw" in only:
            out = work / f"raw-{model.name}.json"
            entry["raw"] = _run(
                _python("benchmarks.raw_bench", ["--model", str(path), "--out", str(out),
                                                 *raw_options(model, args.tiny, app_context(path))]), out)
        if only & {"load", "speed"}:
            out = work / f"parts-{model.name}.json"
            entry["app_parts"] = _run(
                _python("benchmarks.app_parts", ["--model", str(path), "--out", str(out),
                                                 "--context", str(app_context(path))]), out)
        app_scenarios = [s for s in SCENARIOS if s in only and s != "raw"]
        if app_scenarios:
            out = work / f"app-{model.name}.json"
            command = ["--model", f"{model.name}={path}", "--scenarios", ",".join(app_scenarios),
                       "--out", str(out)]
            if partner is not None:
                command += ["--partner", f"{partner.name}={ensure_model(partner, args.cache_dir)}"]
            if "raw" in entry:
                command += ["--token-ms", str(entry["raw"]["gen_ms_per_token"])]
            for key, value in options.items():
                command += [key, str(value)]
            entry["app"] = _run(_python("benchmarks.app_bench", command), out)
        results["models"][model.name] = entry
    results["machine"]["load_average_end"] = load_average()
    return results


def render(results: dict, markdown: bool = False) -> str:
    machine = results["machine"]
    parts = [
        f"{machine['cpus']} CPUs, Python {machine['python']}, load average "
        f"{machine['load_average_start']} at the start, {machine['load_average_end']} at the end "
        f"({machine['started']})"
    ]
    for name, entry in results["models"].items():
        rows = report.model_rows(
            name, entry.get("raw", {}), entry.get("app", {}), entry.get("app_parts")
        )
        extras = report.raw_extras(entry["raw"]) if "raw" in entry else []
        if markdown:
            parts.append(f"\n### {name} (`{entry['file']}`)\n\n{report.format_markdown(rows)}\n")
            parts.extend(f"- {line}" for line in extras)
        else:
            parts.append(f"\n== {name} ({entry['file']}) ==\n{report.format_table(rows)}")
            parts.extend(extras)
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="gpt2 only, fewer samples")
    parser.add_argument("--tiny", action="store_true", help="toy models: does the code run?")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--models", help="gpt2,gpt2-large (default: both; --quick: gpt2)")
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
