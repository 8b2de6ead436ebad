"""`writer-app generate` throughput: a llama.cpp server at concurrency 1, 4 and 8 against
the local engines, on the same gpt2-shaped q4_0 weights, in one run (issue 13):

    python benchmarks/remote_bench.py                 # gpt2, 8 prompts x 8 samples each
    python benchmarks/remote_bench.py --quick         # 8 prompts x 2 samples
    python benchmarks/remote_bench.py --tiny          # toy model, seconds (the smoke test)
    python benchmarks/remote_bench.py --json out.json # keep every figure

Each figure is the real CLI in a subprocess (`python -m writer_app generate ...`), the
way a user runs it. The command's wall time includes its start (interpreter, model load
or server handshake), so each configuration also runs once with one prompt and one
sample, and the steady rate is (samples - 1) / (time - that one run's time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.models import DEFAULT_CACHE_DIR, GPT2, TINY, ensure_model  # noqa: E402
from benchmarks.procfs import cpu_seconds, load_average  # noqa: E402
from benchmarks.remote_server import BenchServer, served_gguf  # noqa: E402
from writer_app.engine.cores import physical_cores  # noqa: E402
from writer_app.engine.ggml import read_layout  # noqa: E402
from writer_app.engine.gguf_convert import gguf_for  # noqa: E402

MAX_TOKENS = 32
CONCURRENCIES = (1, 4, 8)
SERVER_SLOTS = 8
LOCAL_ENGINES = ("ctransformers", "llama.cpp")
PROMPTS = (  # fixed, short (10-20 tokens), so every request fits any slot
    "It was a bright cold day in April, and the clocks were striking",
    "The old lighthouse keeper had not spoken to anyone for three",
    "Dear Margaret, I write to you from the deck of a ship bound for",
    "In the first chapter we saw how the river shaped the town, and now",
    "She opened the drawer and found, beneath the letters,",
    "The committee met on Tuesday to discuss the new library, but",
    "Rain had fallen all night on the hills above the village when",
    "He counted the coins twice before he dared to say",
)


class BenchmarkFailed(RuntimeError):
    """A measured command failed; its stderr says why."""


def _generate(args: list[str], prompts: Path, n: int, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (the CLI and its engine process) of one `writer-app generate`
    run; checks every sample was written."""
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "writer_app", "generate", "--prompts", str(prompts), "--n", str(n),
               "--out", str(out), "--max-tokens", str(MAX_TOKENS), "--stop-at", "length",
               "--temperature", "0.8", "--seed", "1", *args]
    cpu_before = _children_cpu()
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    if completed.returncode != 0:
        raise BenchmarkFailed(f"{' '.join(args)}: exit {completed.returncode}: {completed.stderr.strip()[-500:]}")
    lines = out.read_text("utf-8").splitlines()
    expected = n * len(prompts.read_text("utf-8").splitlines())
    if len(lines) != expected:
        raise BenchmarkFailed(f"{' '.join(args)}: {len(lines)} samples written, {expected} asked for")
    return seconds, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children and theirs
    return usage.ru_utime + usage.ru_stime


def _eos_count(out: Path) -> int | None:
    """Samples that ended early with end-of-text; None where the lines don't say (the
    local `generate` writes no `finish`, so its token count assumes none did)."""
    records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    if not all("finish" in record for record in records):
        return None
    return sum(record["finish"] == "eos" for record in records)


def measure(name: str, args: list[str], n: int, work: Path, env: dict[str, str],
            server_pid: int | None = None) -> dict:
    prompts, one = work / "prompts.txt", work / "one-prompt.txt"
    out = work / f"{name}.jsonl"
    one_s, _ = _generate(args, one, 1, out, env)
    server_before = cpu_seconds(server_pid) if server_pid else None
    total_s, client_cpu_s = _generate(args, prompts, n, out, env)
    server_cpu_s = cpu_seconds(server_pid) - server_before if server_before is not None else None
    samples = n * len(PROMPTS)
    steady_s = max(total_s - one_s, 1e-9)
    eos = _eos_count(out)
    # Stopping at length, every sample is MAX_TOKENS tokens unless it drew end-of-text
    # (random weights over 50,257 tokens: rare); eos_samples > 0 makes tokens/s an upper bound.
    tokens = samples * MAX_TOKENS
    return {
        "command_args": args, "samples": samples, "max_tokens": MAX_TOKENS, "eos_samples": eos,
        "wall_s": total_s, "one_sample_wall_s": one_s,
        "samples_per_s": (samples - 1) / steady_s, "tokens_per_s": (tokens - MAX_TOKENS) / steady_s,
        "wall_samples_per_s": samples / total_s, "wall_tokens_per_s": tokens / total_s,
        # CPU seconds of the whole run: the CLI process with its engine process (local),
        # and the server process; against wall x cores, they show who had the CPUs.
        "client_cpu_s": client_cpu_s, "server_cpu_s": server_cpu_s,
    }


def run(model_path: Path, n: int, log=print) -> dict:
    cores = physical_cores()
    gguf = served_gguf(model_path)
    gguf_for(model_path)  # the local llama.cpp engine's conversion, cached now, not timed
    api_key = secrets.token_hex(16)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="remote-bench-") as folder:
        work = Path(folder)
        (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", "utf-8")
        (work / "one-prompt.txt").write_text(PROMPTS[0] + "\n", "utf-8")
        env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen", WRITER_APP_API_KEY=api_key,
                   XDG_CONFIG_HOME=str(work / "config"), XDG_DATA_HOME=str(work / "data"))
        with BenchServer(gguf, n_ctx=read_layout(model_path).facts.n_ctx, threads=cores, parallel=SERVER_SLOTS, api_key=api_key) as server:
            log(f"llama-server at {server.base_url} ({cores} threads, {SERVER_SLOTS} slots)")
            for concurrency in CONCURRENCIES:
                key = f"remote_c{concurrency}"
                results[key] = measure(key, ["--server", server.base_url, "--concurrency", str(concurrency)],
                                       n, work, env, server_pid=server.process.pid)
                log(f"  {key}: {results[key]['samples_per_s']:.2f} samples/s")
        for engine in LOCAL_ENGINES:  # after the server is gone: each side has the CPUs alone
            key = f"local_{engine}"
            results[key] = measure(key, ["--model", str(model_path), "--engine", engine,
                                         "--threads", str(cores)], n, work, env)
            log(f"  {key}: {results[key]['samples_per_s']:.2f} samples/s")
    return {"physical_cores": cores, "server_slots": SERVER_SLOTS, "served_gguf": gguf.name, "results": results}


def format_table(figures: dict) -> str:
    results = figures["results"]
    base = {engine: results[f"local_{engine}"]["tokens_per_s"] for engine in LOCAL_ENGINES}
    rows = ["| run | samples | wall s | samples/s | tokens/s | x local ctransformers | x local llama.cpp "
            "| CPU s: CLI (+ engine) / server |",
            "|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        label = (f"server, --concurrency {key.removeprefix('remote_c')}" if key.startswith("remote_")
                 else f"local --engine {key.removeprefix('local_')}")
        rows.append(f"| {label} | {r['samples']} | {r['wall_s']:.1f} | {r['samples_per_s']:.2f} | "
                    f"{r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base['ctransformers']:.2f} | "
                    f"{r['tokens_per_s'] / base['llama.cpp']:.2f} | {r['client_cpu_s']:.1f} / "
                    f"{'-' if r['server_cpu_s'] is None else format(r['server_cpu_s'], '.1f')} |")
    return "\n".join(rows)


def _commit() -> str:
    completed = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return completed.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 samples per prompt instead of 8")
    parser.add_argument("--tiny", action="store_true", help="a toy model, 1 sample per prompt (seconds)")
    parser.add_argument("--json", metavar="FILE", help="write every figure here")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    model, n = (TINY, 1) if args.tiny else (GPT2, 2 if args.quick else 8)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    model_path = ensure_model(model, args.cache_dir)
    started, load_start = time.time(), load_average()
    print(f"{model_path.name}: {len(PROMPTS)} prompts x {n} samples, {MAX_TOKENS} tokens each; "
          f"load average {load_start}")
    try:
        figures = run(model_path, n)
    except BenchmarkFailed as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    load_end = load_average()
    figures.update({
        "model": model_path.name, "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
        "samples_per_prompt": n, "prompts": len(PROMPTS), "commit": _commit(),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "seconds": time.time() - started, "load_average_start": load_start, "load_average_end": load_end,
    })
    print(format_table(figures))
    print(f"load average {load_start} at the start, {load_end} at the end; "
          f"{figures['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
