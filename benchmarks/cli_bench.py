"""`writer-app complete` and `writer-app generate` as a user runs them: the real CLI in a
subprocess, default threads ("auto": every physical core), one engine per run.

    rates = measure_cli(model_path, "llama.cpp", work_dir, complete_tokens=72, samples=1)

A command's wall time includes its start (interpreter, engine process, model load, the
prompt), whose jitter on this shared machine (half a second between three identical
runs) was as large as gpt2's whole generation. So each figure is the steady rate read
off the command's own streaming output, timestamped as it arrives:

  * complete: the 100-word speed prompt continued to N tokens (--stop-at length); the
    text streams to stdout a token at a time (flushed), so rate = (N - 1) / (time of the
    last piece - time of the first): the tokens generated once the first one is out.
  * generate: remote_bench's 8 fixed prompts x n samples of 32 tokens; the progress bar
    writes a line to stderr as each sample is done, so rate = (samples - 1) x 32 /
    (time of the last line - time of the first), as remote_bench measures it: each
    sample reads its prompt (what the cache lacks of it) and generates 32 tokens.

Each command runs three times and stands for its round with its median run; the raw
side does the same work, also as a median (raw_bench / raw_llama: generation on a hot
cache for complete, the median of its repetitions; the generate workload for
generate, the median of three passes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.remote_bench import MAX_TOKENS, PROMPTS
from benchmarks.stats import median_run
from benchmarks.texts import document

REPO = Path(__file__).resolve().parents[1]


class CliFailed(RuntimeError):
    """The CLI exited with an error; the message has its stderr's end."""


def prompts_file(work: Path) -> Path:
    path = work / "cli-prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n", "utf-8")
    return path


def _env(work: Path) -> dict[str, str]:
    # Its own settings and data folders: never the user's, never another run's.
    return dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen",
                WRITER_APP_HOME=str(work / "cli-home"), XDG_CONFIG_HOME=str(work / "cli-config"),
                XDG_DATA_HOME=str(work / "cli-data"), HF_HUB_OFFLINE="1")


def _streamed(command: list[str], work: Path, watched: str) -> tuple[float, str, list[tuple[float, bytes]]]:
    """Run the CLI; its wall seconds, its stdout, and each piece of `watched` ("stdout"
    or "stderr") with when it arrived (seconds after the start)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "writer_app", *command], cwd=REPO, env=_env(work),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pieces: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    arrivals: list[tuple[float, bytes]] = []

    def read(name: str) -> None:
        stream = getattr(child, name)
        while chunk := os.read(stream.fileno(), 65536):
            if name == watched:
                arrivals.append((time.perf_counter() - started, chunk))
            pieces[name].append(chunk)

    readers = [threading.Thread(target=read, args=(name,), daemon=True) for name in pieces]
    for reader in readers:
        reader.start()
    try:
        returncode = child.wait(timeout=1800)
    finally:
        if child.poll() is None:
            child.kill()
    for reader in readers:
        reader.join(timeout=10)
    seconds = time.perf_counter() - started
    out, err = (b"".join(pieces[name]).decode("utf-8", "replace") for name in ("stdout", "stderr"))
    if returncode != 0:
        raise CliFailed(f"writer-app {' '.join(command[:1])}: exit {returncode}: {err.strip()[-500:]}")
    if "; using ctransformers" in err:  # open_with_fallback's notice
        raise CliFailed(f"writer-app {command[0]} fell back: {err.strip()[-300:]}")
    return seconds, out, arrivals


def _engine_flags(model: Path, engine: str, threads: int | None) -> list[str]:
    return ["--model", str(model), "--engine", engine, *(["--threads", str(threads)] if threads else [])]


def complete_rate(model: Path, engine: str, work: Path, tokens: int, threads: int | None = None) -> dict:
    command = ["complete", *_engine_flags(model, engine, threads), "--stop-at", "length", "--seed", "1",
               "--max-tokens", str(tokens), document(100)]
    seconds, text, pieces = _streamed(command, work, "stdout")
    arrivals = [at for at, _ in pieces]
    streaming = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return {"tokens": tokens, "wall_s": seconds, "first_text_s": arrivals[0] if arrivals else None,
            "streaming_s": streaming, "pieces": len(arrivals), "output_chars": len(text),
            "tokens_per_s": (tokens - 1) / streaming if streaming > 0 else None}


def generate_rate(model: Path, engine: str, work: Path, samples: int, threads: int | None = None) -> dict:
    prompts = prompts_file(work)
    out = work / "cli-generate.jsonl"
    out.unlink(missing_ok=True)  # else the run resumes it
    command = ["generate", *_engine_flags(model, engine, threads), "--max-tokens", str(MAX_TOKENS),
               "--stop-at", "length", "--temperature", "0.8", "--seed", "1", "--out", str(out),
               "--prompts", str(prompts), "--n", str(samples)]
    seconds, _, pieces = _streamed(command, work, "stderr")
    # Not a terminal: the progress bar writes one line per sample, flushed (other notes,
    # such as a first conversion for llama.cpp, may come before).
    arrivals = [at for at, chunk in pieces for line in chunk.splitlines() if b" samples " in line]
    written = len(out.read_text("utf-8").splitlines())
    count = samples * len(PROMPTS)
    if written != count:
        raise CliFailed(f"writer-app generate wrote {written} samples, {count} asked for")
    if len(arrivals) != count:
        raise CliFailed(f"writer-app generate's progress came in {len(arrivals)} pieces, not one per sample")
    steady = arrivals[-1] - arrivals[0]
    return {"samples": count, "tokens": MAX_TOKENS, "wall_s": seconds, "first_sample_s": arrivals[0],
            "steady_s": steady, "pieces": len(arrivals),
            "tokens_per_s": (count - 1) * MAX_TOKENS / steady if steady > 0 else None}


def measure_cli(model: Path, engine: str, work: Path, *, complete_tokens: int, samples: int,
                complete_runs: int = 3, generate_runs: int = 3, threads: int | None = None,
                log=print) -> dict:  # type: ignore[no-untyped-def]
    """Each command run complete_runs / generate_runs times, the run of median rate
    (stats.median_run: one run of gpt2's `complete` streams for under a second, in which
    this machine's minute moved raw ctransformers' own rate between 9.5 and 14 ms a
    token; the raw side is a median of its repetitions too). threads None: the CLI's
    default ("auto"), what the targets are about; the smoke run passes 1, since 2
    threads on a busy 2-core machine can take 100x longer."""
    completes = [complete_rate(model, engine, work, complete_tokens, threads=threads) for _ in range(complete_runs)]
    generates = [generate_rate(model, engine, work, samples, threads=threads) for _ in range(generate_runs)]
    result = {"engine": engine, "threads": threads or "auto (the CLI's default)",
              "complete": median_run(completes), "generate": median_run(generates)}
    log(f"[cli {model.name} {engine}] complete {result['complete']['tokens_per_s'] or float('nan'):.1f} "
        f"tokens/s, generate {result['generate']['tokens_per_s'] or float('nan'):.1f} tokens/s")
    return result
