"""Raw ctransformers figures for one model file: the reference the app is compared with.

Runs in its own process (run.py starts it), because ctransformers may hold only one
model per process safely and the app's memory must not include this one:

    python -m benchmarks.raw_bench --model FILE --threads 1 --out raw.json

raw_llama.py measures llama.cpp the same way, under the same JSON keys.

Everything is done the way the app's engine does it, with nothing of the app's code:
token ids from the reference BPE in tests/support, the same sampling settings, the KV
cache reused by truncating LLM's Python-side context list to a shared prefix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.procfs import Memory
from benchmarks.stats import median, median_run
from benchmarks.texts import document
from tests.support.gpt2_vocab import encode
from tests.support.raw_ctransformers import RawModel

# The app's default sampling (SamplingSettings()), spelled out so this file stays raw.
TOP_K, TOP_P, TEMPERATURE, REPETITION_PENALTY, LAST_N = 40, 0.95, 0.8, 1.1, 64
PROMPT_BATCH = 8  # ctransformers' own default batch size


class RawBench:
    def __init__(self, path: Path, threads: int) -> None:
        started = time.perf_counter()
        self.model = RawModel(path, threads=threads)
        self.load_s = time.perf_counter() - started
        self.llm = self.model.llm
        self.threads = threads
        self.last_cpu_ms_per_token = 0.0

    def reset(self) -> None:
        self.truncate(0)

    def read_ms(self, ids: list[int]) -> float:
        """Bring the cache up to `ids`, evaluating only what it does not hold yet
        (raw_llama's RawLlama.read_ms does the same with llama.cpp's prefix cache)."""
        kept = 0
        context = self.llm._context
        while kept < min(len(context), len(ids)) and context[kept] == ids[kept]:
            kept += 1
        kept = min(kept, len(ids) - 1)  # the last token is evaluated again, for its logits
        self.truncate(kept)
        return self.eval_ms(ids[kept:], PROMPT_BATCH)

    def truncate(self, n_tokens: int) -> None:
        """Keep the first n_tokens of the cache (valid: LLM.eval passes n_past explicitly)."""
        del self.llm._context[n_tokens:]

    def eval_ms(self, ids: list[int], batch_size: int) -> float:
        started = time.perf_counter()
        self.llm.eval(ids, batch_size=batch_size, threads=self.threads)
        return (time.perf_counter() - started) * 1000

    def generate_ms_per_token(self, prompt: list[int], n_tokens: int, seed: int) -> float:
        """Like one app request with a hot cache: the last prompt token is evaluated again,
        then sample and evaluate, token by token (the last token is not evaluated).
        The CPU time it took is left in last_cpu_ms_per_token."""
        self.truncate(len(prompt) - 1)
        cpu_started = time.process_time()
        started = time.perf_counter()
        self.llm.eval(prompt[-1:], batch_size=1, threads=self.threads)
        for step in range(n_tokens):
            token = self.llm.sample(
                top_k=TOP_K,
                top_p=TOP_P,
                temperature=TEMPERATURE,
                repetition_penalty=REPETITION_PENALTY,
                last_n_tokens=LAST_N,
                seed=seed + step,
            )
            if step + 1 < n_tokens:
                self.llm.eval([token], batch_size=1, threads=self.threads)
        elapsed = (time.perf_counter() - started) * 1000 / n_tokens
        self.last_cpu_ms_per_token = (time.process_time() - cpu_started) * 1000 / n_tokens
        return elapsed


def run(args: argparse.Namespace) -> dict:
    bench = RawBench(Path(args.model), args.threads)
    log = lambda text: print(f"[raw {Path(args.model).name} t{args.threads}] {text}", flush=True)  # noqa: E731
    result: dict = {"threads": args.threads, "load_s": bench.load_s}
    loaded = Memory.of()
    result["rss_after_load_mib"] = loaded.rss_mib if loaded else None
    log(f"loaded in {bench.load_s * 1000:.0f} ms")

    prompt = encode(document(args.prompt_words))
    result["prompt_tokens"] = len(prompt)
    result["prompt_eval_ms_per_token"] = bench.eval_ms(prompt, PROMPT_BATCH) / len(prompt)

    measure_generation(bench, args, prompt, result, log)

    if args.context_tokens:
        # A long context, then the cost of k new tokens at its end (a hot cache after typing).
        long_ids = encode(document(5000))[: args.context_tokens]
        bench.truncate(0)
        result["context_tokens"] = len(long_ids)
        # Evaluated in steps, reading the resident size after each: ctransformers' memory
        # grows with the context (KV cache, evaluation buffer).
        rss_by_context: dict[str, float] = {}
        eval_ms = 0.0
        for end in sorted({*(n for n in (128, 256, 512) if n < len(long_ids)), len(long_ids)}):
            eval_ms += bench.eval_ms(long_ids[len(bench.llm._context) : end], PROMPT_BATCH)
            memory = Memory.of()
            rss_by_context[str(end)] = memory.rss_mib if memory else float("nan")
        result["context_eval_ms"] = eval_ms
        result["rss_mib_by_context"] = rss_by_context
        log("resident by context: " + ", ".join(f"{n}: {mib:.0f} MiB" for n, mib in rss_by_context.items()))
        new_tokens: dict[str, float] = {}
        for k in (1, 2, 4, 8):
            runs = []
            for _ in range(3):
                bench.truncate(len(long_ids) - k)
                runs.append(bench.eval_ms(long_ids[-k:], batch_size=k))
            new_tokens[str(k)] = median(runs)
        result["new_tokens_eval_ms"] = new_tokens
        # One token's time at this context: what "within one token" means in a long
        # document (attention over the context makes each token dearer).
        bench.truncate(len(long_ids))
        bench.generate_ms_per_token(long_ids, 8, seed=7)  # warm-up
        result["gen_ms_per_token_at_context"] = median(
            [bench.generate_ms_per_token(long_ids, 16, seed=8 + rep) for rep in range(2)]
        )
        log(f"generation at {len(long_ids)} tokens of context: "
            f"{result['gen_ms_per_token_at_context']:.1f} ms/token")
        log("k new tokens at the end of the context: "
            + ", ".join(f"{k}: {ms:.0f} ms" for k, ms in new_tokens.items()))

    sweep: dict[str, float] = {}
    base = prompt[: args.sweep_at]
    extra = encode(document(2000))[args.sweep_at : args.sweep_at + args.sweep_tokens]
    for batch in args.sweep:
        bench.truncate(0)
        bench.llm.eval(base, batch_size=PROMPT_BATCH, threads=args.threads)
        sweep[str(batch)] = bench.eval_ms(extra, batch) / len(extra)
    if sweep:
        result["batch_sweep_at"] = len(base)
        result["batch_ms_per_token"] = sweep
        log("prompt evaluation ms/token by batch size: "
            + ", ".join(f"{b}: {ms:.1f}" for b, ms in sweep.items()))

    if args.read_tokens:
        # A cold prompt of read_tokens at the best batch of the sweep above (or the
        # batches asked for): raw prompt reading, engine against engine.
        ids = encode(document(2000))[: args.read_tokens]
        chosen = args.read_batches or ([min(sweep, key=sweep.__getitem__)] if sweep else [PROMPT_BATCH])
        reads: dict[str, float] = {}
        for batch in (int(b) for b in chosen):
            bench.truncate(0)
            reads[str(batch)] = bench.eval_ms(ids, batch) / len(ids)
        result["read_tokens"] = len(ids)
        result["read_ms_per_token"] = reads
        log(f"reading {len(ids)} tokens, ms/token by batch: "
            + ", ".join(f"{b}: {ms:.1f}" for b, ms in reads.items()))

    memory = Memory.of()
    result["peak_rss_mib"] = memory.hwm_mib if memory else None
    return result


def measure_generation(bench, args: argparse.Namespace, prompt: list[int], result: dict,
                       log) -> None:  # type: ignore[no-untyped-def]
    """Generation on a hot cache (a warm-up, then args.reps runs) and generate's workload,
    into `result`: the same for either raw engine (raw_bench's or raw_llama's bench)."""
    from benchmarks.raw_llama import workload

    bench.generate_ms_per_token(prompt, args.gen_tokens, seed=1)  # warm-up, not counted
    per_token, cpu = [], []
    for rep in range(args.reps):
        per_token.append(bench.generate_ms_per_token(prompt, args.gen_tokens, 100 * rep))
        cpu.append(bench.last_cpu_ms_per_token)
    result.update(gen_tokens=args.gen_tokens, gen_ms_per_token_runs=per_token,
                  gen_ms_per_token=median(per_token), gen_cpu_ms_per_token=median(cpu))
    log(f"generation {result['gen_ms_per_token']:.1f} ms/token (runs: "
        + ", ".join(f"{v:.1f}" for v in per_token) + ")")
    if args.workload_prompts:
        prompts = read_prompt_ids(args.workload_prompts)
        result["workload"] = median_run([workload(bench, prompts, args.workload_n, args.workload_tokens)
                                         for _ in range(args.workload_reps)])
        log(f"workload: {result['workload']['tokens_per_s']:.1f} tokens/s (passes: "
            + ", ".join(f"{v:.1f}" for v in result["workload"]["runs_tokens_per_s"]) + ")")


def read_prompt_ids(path: Path) -> list[list[int]]:
    """Token ids of each line of a prompts file (as `writer-app generate --prompts`)."""
    return [encode(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]


def batches(value: str) -> list[int]:
    return [int(b) for b in value.split(",") if b]


def raw_parser(description: str) -> argparse.ArgumentParser:
    """The flags every raw engine benchmark takes (raw_bench, raw_llama): the same run.py
    command line drives either engine."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="the GGML file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-words", type=int, default=100)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--context-tokens", type=int, default=0, help="0: skip")
    parser.add_argument("--read-tokens", type=int, default=0, help="a cold prompt this long; 0: skip")
    parser.add_argument("--read-batches", type=batches, default=[],
                        help="batch sizes for --read-tokens")
    parser.add_argument("--workload-prompts", type=Path, help="one prompt per line")
    parser.add_argument("--workload-n", type=int, default=1)
    parser.add_argument("--workload-reps", type=int, default=1, help="passes over the prompts: their median")
    parser.add_argument("--workload-tokens", type=int, default=32)
    parser.add_argument("--out", required=True)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = raw_parser(__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=batches, default=[])
    parser.add_argument("--sweep-at", type=int, default=64)
    parser.add_argument("--sweep-tokens", type=int, default=32)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Path(args.out).write_text(json.dumps(run(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
