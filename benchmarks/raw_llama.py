"""Raw llama.cpp figures for one model file: xllamacpp driven directly, none of the app's
engine code (the llama.cpp reference beside raw_bench.py's ctransformers one).

Runs in its own process (run.py starts it), one llama.cpp server object at a time:

    python -m benchmarks.raw_llama --model FILE.bin --threads 1 --out raw.json

The GGML file is converted to GGUF the way the app does (writer_app.engine.gguf_convert
.gguf_for, cached beside it): the very bytes the app's llama.cpp engine loads, so an
app/raw difference can't be the file. Nothing else of the app is used: token ids come
from the reference BPE in tests/support, sampling is the app's defaults spelled out
(raw_bench's constants), and each request goes straight to xllamacpp.Server's
handle_completions with token ids as the prompt and the slot's cache reused
(cache_prompt), which is llama.cpp's own way of keeping a prefix.

Prompt batches are a load-time setting in llama.cpp (n_batch = n_ubatch), so reading
a prompt at several batch sizes loads one server per size; everything else runs on
one server with llama.cpp's default micro-batch (512) and the model's whole context,
as raw_bench loads ctransformers.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

from benchmarks.procfs import Memory
from benchmarks.raw_bench import (
    LAST_N,
    REPETITION_PENALTY,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    measure_generation,
    raw_parser,
)
from benchmarks.stats import median
from benchmarks.texts import document
from tests.support.gpt2_vocab import encode

DEFAULT_BATCH = 512  # llama.cpp's default n_ubatch
SAMPLERS = ["penalties", "temperature", "top_k", "top_p"]  # ctransformers' order, as the app


def gguf_of(path: Path) -> Path:
    """The GGUF the app's llama.cpp engine would load for `path` (converted once, cached)."""
    from writer_app.engine.gguf_convert import gguf_for

    return gguf_for(path)


def model_context(gguf: Path) -> int:
    import gguf as gguf_lib

    reader = gguf_lib.GGUFReader(str(gguf))
    field = reader.fields["gpt2.context_length"]
    return int(field.parts[field.data[0]][0])


class RawLlama:
    """One model in one xllamacpp.Server, one slot; every figure is a wall-clock time
    around handle_completions (llama.cpp's own timings are kept beside it)."""

    def __init__(self, gguf: Path, threads: int, *, batch: int = DEFAULT_BATCH, n_ctx: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.n_batch = params.n_ubatch = batch
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.n_threads_http = 1
        params.api_keys = [secrets.token_hex(16)]  # the HTTP listener is not used
        params.ctx_shift = False
        params.cache_ram_mib = 0
        params.warmup = False
        params.verbosity = -1
        started = time.perf_counter()
        self.server = xllamacpp.Server(params)
        # One request through the loop: Server() returns before its loop runs.
        self._complete({"prompt": [0], "n_predict": 0, "cache_prompt": False})
        self.load_s = time.perf_counter() - started
        self.threads, self.batch, self.n_ctx = threads, batch, n_ctx
        self.last_cpu_ms_per_token = 0.0
        self.last_timings: dict = {}

    def _complete(self, body: dict) -> dict:
        result = self.server.handle_completions(body)
        if not isinstance(result, dict) or "error" in result:
            raise RuntimeError(f"llama.cpp failed: {result}")
        self.last_timings = result.get("timings") or {}
        return result

    def reset(self) -> None:
        """Empty the slot's cache (the next read starts cold)."""
        self._complete({"prompt": [0], "n_predict": 0, "cache_prompt": False})

    def read_ms(self, ids: list[int]) -> float:
        """Bring the cache up to `ids` (only what it does not hold yet is evaluated)."""
        started = time.perf_counter()
        self._complete({"prompt": ids, "n_predict": 0, "cache_prompt": True,
                        "samplers": ["temperature"], "temperature": 0.0})
        return (time.perf_counter() - started) * 1000

    def new_tokens_ms(self, ids: list[int], k: int) -> float:
        """The last k tokens of `ids` evaluated after the rest is cached."""
        self.read_ms(ids[:-k] + [ids[-k] ^ 1])  # the cache now differs from ids at -k
        return self.read_ms(ids)

    def generate_ms_per_token(self, prompt: list[int], n_tokens: int, seed: int) -> float:
        """Like one app request with a hot cache: llama.cpp evaluates the last prompt
        token again, then samples and evaluates token by token. The CPU time it took is
        left in last_cpu_ms_per_token."""
        cpu_started = time.process_time()
        started = time.perf_counter()
        result = self._complete({
            "prompt": prompt, "n_predict": n_tokens, "cache_prompt": True, "seed": seed,
            "samplers": SAMPLERS, "temperature": TEMPERATURE, "top_k": TOP_K, "top_p": TOP_P,
            "min_p": 0.0, "repeat_penalty": REPETITION_PENALTY, "repeat_last_n": LAST_N,
            "ignore_eos": True,
        })
        generated = int((result.get("timings") or {}).get("predicted_n") or n_tokens)
        self.last_cpu_ms_per_token = (time.process_time() - cpu_started) * 1000 / generated
        return (time.perf_counter() - started) * 1000 / generated

    def close(self) -> None:
        self.server = None


def read_at_batches(gguf: Path, threads: int, ids: list[int], batches: list[int], n_ctx: int,
                    log) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """ms per token to read `ids` cold, one freshly loaded server per batch size (its
    load already ran every weight once, so the read pays no first-touch faults)."""
    timings: dict[str, float] = {}
    for batch in batches:
        server = RawLlama(gguf, threads, batch=batch, n_ctx=n_ctx)
        server.reset()
        timings[str(batch)] = server.read_ms(ids) / len(ids)
        server.close()
        del server
    log(f"reading {len(ids)} tokens, ms/token by batch: "
        + ", ".join(f"{b}: {ms:.1f}" for b, ms in timings.items()))
    return timings


def run(args: argparse.Namespace) -> dict:
    path = Path(args.model)
    gguf = gguf_of(path)
    n_ctx = model_context(gguf)
    log = lambda text: print(f"[raw llama.cpp {path.name} t{args.threads}] {text}", flush=True)  # noqa: E731
    result: dict = {"engine": "llama.cpp", "threads": args.threads, "gguf": gguf.name,
                    "conversion": "the app's (gguf_convert.gguf_for)"}
    bench = RawLlama(gguf, args.threads, n_ctx=n_ctx)
    result["load_s"] = bench.load_s
    loaded = Memory.of()
    result["rss_after_load_mib"] = loaded.rss_mib if loaded else None
    log(f"loaded in {bench.load_s * 1000:.0f} ms")

    prompt = encode(document(args.prompt_words))
    result["prompt_tokens"] = len(prompt)
    bench.reset()
    result["prompt_eval_ms_per_token"] = bench.read_ms(prompt) / len(prompt)
    result["prompt_batch"] = DEFAULT_BATCH

    measure_generation(bench, args, prompt, result, log)

    if args.context_tokens:
        long_ids = encode(document(5000))[: args.context_tokens]
        result["context_tokens"] = len(long_ids)
        bench.reset()
        rss_by_context: dict[str, float] = {}
        eval_ms = 0.0
        for end in sorted({*(n for n in (128, 256, 512) if n < len(long_ids)), len(long_ids)}):
            eval_ms += bench.read_ms(long_ids[:end])
            memory = Memory.of()
            rss_by_context[str(end)] = memory.rss_mib if memory else float("nan")
        result["context_eval_ms"] = eval_ms
        result["rss_mib_by_context"] = rss_by_context
        result["new_tokens_eval_ms"] = {
            str(k): median([bench.new_tokens_ms(long_ids, k) for _ in range(3)]) for k in (1, 2, 4, 8)
        }
        bench.generate_ms_per_token(long_ids, 8, seed=7)  # warm-up
        result["gen_ms_per_token_at_context"] = median(
            [bench.generate_ms_per_token(long_ids, 16, seed=8 + rep) for rep in range(2)]
        )
        log(f"generation at {len(long_ids)} tokens of context: "
            f"{result['gen_ms_per_token_at_context']:.1f} ms/token; k new tokens: "
            + ", ".join(f"{k}: {ms:.0f} ms" for k, ms in result["new_tokens_eval_ms"].items()))

    memory = Memory.of()
    result["peak_rss_mib"] = memory.hwm_mib if memory else None  # before other servers load
    bench.close()
    del bench

    if args.read_tokens and args.read_batches:
        ids = encode(document(2000))[: args.read_tokens]
        result["read_tokens"] = len(ids)
        result["read_ms_per_token"] = read_at_batches(gguf, args.threads, ids, args.read_batches,
                                                      n_ctx, log)
    return result


def workload(bench, prompts: list[list[int]], n: int, tokens: int) -> dict:  # type: ignore[no-untyped-def]
    """`writer-app generate`'s work done raw: per prompt, n samples of `tokens` tokens,
    each reading what the cache lacks of its prompt first. The steady rate leaves the
    first sample out, as cli_bench does for the CLI (its first sample pays the start)."""
    bench.reset()
    times = []
    seed = 1
    for prompt in prompts:
        for _ in range(n):
            started = time.perf_counter()
            bench.read_ms(prompt[:-1])  # the generation evaluates the last token itself
            bench.generate_ms_per_token(prompt, tokens, seed)
            times.append(time.perf_counter() - started)
            seed += 1
    steady = sum(times[1:])
    return {"samples": len(times), "tokens": tokens, "seconds": sum(times),
            "tokens_per_s": (len(times) - 1) * tokens / steady if steady > 0 else None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return raw_parser(__doc__.splitlines()[0]).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Path(args.out).write_text(json.dumps(run(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
