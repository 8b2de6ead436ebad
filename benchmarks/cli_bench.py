"""`writer-app complete` and `writer-app generate` as a user runs them: the real CLI in a
subprocess, default threads ("auto": every physical core), one engine per run.

    rates = measure_cli(model_path, "llama.cpp", work_dir, complete_tokens=(8, 72), samples=1)

A command's wall time includes its start (interpreter, model load), so each figure is a
steady rate from two runs that differ only in the work asked for:

  * complete: the 100-word speed prompt continued to --max-tokens SHORT and LONG
    (--stop-at length); rate = (LONG - SHORT) / (time LONG - time SHORT), the tokens
    generated once the model is loaded and the prompt read.
  * generate: remote_bench's 8 fixed prompts x n samples of 32 tokens, and the same
    command on one prompt x one sample; rate = (samples - 1) x 32 / (the difference),
    as remote_bench measures it: each sample reads its prompt (what the cache lacks of
    it) and generates 32 tokens.

The start's own jitter (a few tenths of a second) is as large as gpt2's whole
difference (64 tokens at ~100 tokens/s), so each command may run `reps` times and the
fastest run counts on both sides: noise on a shared machine only ever adds time.

The raw side does the same work (raw_bench / raw_llama: generation on a hot cache for
complete, the generate workload for generate).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.remote_bench import MAX_TOKENS, PROMPTS
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


def _timed(command: list[str], work: Path) -> tuple[float, str]:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "writer_app", *command], cwd=REPO, env=_env(work),
                               capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise CliFailed(f"writer-app {' '.join(command[:1])}: exit {completed.returncode}: "
                        f"{completed.stderr.strip()[-500:]}")
    if "; using ctransformers" in completed.stderr:  # open_with_fallback's notice
        raise CliFailed(f"writer-app {command[0]} fell back: {completed.stderr.strip()[-300:]}")
    return seconds, completed.stdout


def _engine_flags(model: Path, engine: str, threads: int | None) -> list[str]:
    return ["--model", str(model), "--engine", engine, *(["--threads", str(threads)] if threads else [])]


def _fastest(command: list[str], work: Path, reps: int) -> tuple[float, str, list[float]]:
    """The fastest of `reps` runs (noise on a shared machine only ever adds time), its
    output, and every run's seconds."""
    runs = [_timed(command, work) for _ in range(reps)]
    seconds, output = min(runs, key=lambda run: run[0])
    return seconds, output, [s for s, _ in runs]


def complete_rate(model: Path, engine: str, work: Path, short: int, long: int,
                  threads: int | None = None, reps: int = 1) -> dict:
    prompt = document(100)
    common = [*_engine_flags(model, engine, threads), "--stop-at", "length", "--seed", "1"]
    short_s, _, short_runs = _fastest(["complete", *common, "--max-tokens", str(short), prompt], work, reps)
    long_s, text, long_runs = _fastest(["complete", *common, "--max-tokens", str(long), prompt], work, reps)
    steady = long_s - short_s  # can be <= 0 on a toy model, where the difference is noise
    return {"short_tokens": short, "long_tokens": long, "short_s": short_s, "long_s": long_s,
            "short_runs_s": short_runs, "long_runs_s": long_runs, "output_chars": len(text),
            "tokens_per_s": (long - short) / steady if steady > 0 else None}


def generate_rate(model: Path, engine: str, work: Path, samples: int, threads: int | None = None,
                  reps: int = 1) -> dict:
    prompts = prompts_file(work)
    one = work / "cli-one-prompt.txt"
    one.write_text(PROMPTS[0] + "\n", "utf-8")
    out = work / "cli-generate.jsonl"
    common = [*_engine_flags(model, engine, threads), "--max-tokens", str(MAX_TOKENS),
              "--stop-at", "length", "--temperature", "0.8", "--seed", "1", "--out", str(out)]
    one_s, _, one_runs = _fastest(["generate", *common, "--prompts", str(one), "--n", "1"], work, reps)
    total_s, _, total_runs = _fastest(["generate", *common, "--prompts", str(prompts), "--n", str(samples)],
                                      work, reps)
    written = len(out.read_text("utf-8").splitlines())
    count = samples * len(PROMPTS)
    if written != count:
        raise CliFailed(f"writer-app generate wrote {written} samples, {count} asked for")
    steady = total_s - one_s
    return {"samples": count, "tokens": MAX_TOKENS, "one_sample_s": one_s, "wall_s": total_s,
            "one_sample_runs_s": one_runs, "wall_runs_s": total_runs,
            "tokens_per_s": (count - 1) * MAX_TOKENS / steady if steady > 0 else None}


def measure_cli(model: Path, engine: str, work: Path, *, complete_tokens: tuple[int, int],
                samples: int, threads: int | None = None, reps: int = 1,
                log=print) -> dict:  # type: ignore[no-untyped-def]
    """threads None: the CLI's default ("auto"), what the targets are about; the smoke
    run passes 1, since 2 threads on a busy 2-core machine can take 100x longer. reps:
    each command run this many times, the fastest counted."""
    result = {"engine": engine, "threads": threads or "auto (the CLI's default)", "reps": reps,
              "complete": complete_rate(model, engine, work, *complete_tokens, threads=threads, reps=reps),
              "generate": generate_rate(model, engine, work, samples, threads=threads, reps=reps)}
    log(f"[cli {model.name} {engine}] complete {result['complete']['tokens_per_s'] or float('nan'):.1f} "
        f"tokens/s, generate {result['generate']['tokens_per_s'] or float('nan'):.1f} tokens/s")
    return result
