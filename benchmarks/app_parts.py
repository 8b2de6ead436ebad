"""Where the app's time goes, piece by piece, in a fresh process without Qt:

    python -m benchmarks.app_parts --model FILE [--engine llama.cpp] --out parts.json

Loading: TextSession.open (what InferenceService's loader thread runs) = EngineClient
start and load (a new spawned interpreter that imports the engine, checks the file and
has ctransformers load it) + the tokenizer built in the app process from the file's
vocabulary. Loading twice into the same engine process separates the interpreter start
from the load itself.

Cold prompts: the app prewarms in batches of 4 and evaluates a generation's own prompt
one token per native call (so an edit cancels it within one token); what each costs
against the largest batches, on a long prompt the cache has not seen, in the same
loaded backend.

Generating: the engine's own per-token work (CTransformersBackend.generate in this
process, no pipe, no Qt) with and without the per-token probabilities the app's worker
always asks for (with_probs=True: a softmax and a top-8 over the whole vocabulary).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _backend(path: Path, engine: str, **options):  # type: ignore[no-untyped-def]
    if engine == "llama.cpp":
        from writer_app.engine.llama_backend import LlamaCppBackend

        return LlamaCppBackend.load(path, threads=1, **options)
    from writer_app.engine.backend import CTransformersBackend

    return CTransformersBackend.load(path, threads=1, **options)


def measure_tokens(path: Path, tokens: int = 64, reps: int = 3, engine: str = "ctransformers") -> dict:
    """CPU ms per generated token in the backend itself, with_probs on and off, taking
    turns on one loaded model with a hot cache."""
    from benchmarks.stats import median
    from benchmarks.texts import document
    from writer_app.engine.ggml import read_vocab
    from writer_app.engine.protocol import GenerationRequest
    from writer_app.engine.sampling import SamplingSettings, StopAt
    from writer_app.engine.tokenizer import Tokenizer

    backend = _backend(path, engine)
    prompt = Tokenizer.from_vocab(read_vocab(path)).encode(document(100))
    settings = SamplingSettings(max_tokens=tokens, stop_at=StopAt.LENGTH, seed=1)

    def cpu_ms_per_token(with_probs: bool) -> float:
        started = time.process_time()
        request = GenerationRequest(1, tuple(prompt), settings, with_probs=with_probs, top_n=8)
        for event in backend.generate(request):
            generated = getattr(event, "generated_tokens", None)
        return (time.process_time() - started) * 1000 / max(1, generated or tokens)

    cpu_ms_per_token(True)  # the cold prompt
    runs: dict[str, list[float]] = {"with_probs": [], "without_probs": []}
    for _ in range(reps):
        runs["with_probs"].append(cpu_ms_per_token(True))
        runs["without_probs"].append(cpu_ms_per_token(False))
    backend.close()
    return {f"backend_cpu_ms_per_token_{k}": median(v) for k, v in runs.items()}


def measure_cold_prompt(path: Path, context: int) -> dict:
    """Milliseconds to evaluate a long prompt from a cold cache, at the context the app
    gives this model: as the app prewarms (batches of 4), as a generation's own prompt
    is evaluated (one token per call, to cancel within a token), and in the largest
    batches the evaluation buffer allows."""
    from benchmarks.texts import document
    from writer_app.engine.backend import GENERATION_CHUNK, PREWARM_CHUNK, CTransformersBackend
    from writer_app.engine.ggml import read_vocab
    from writer_app.engine.tokenizer import Tokenizer

    backend = CTransformersBackend.load(path, threads=1, context_length=context)
    ids = Tokenizer.from_vocab(read_vocab(path)).encode(document(5000))[: min(800, context - 32)]
    runs = {
        "prewarm": lambda: backend.prewarm(ids, 24, should_cancel=lambda: False),
        "generation": lambda: backend.evaluate(ids, lambda: False, max_chunk=GENERATION_CHUNK),
        "batched": lambda: backend.evaluate(ids),
    }
    timings = {}
    for name, evaluate in runs.items():
        backend.evaluate([ids[0] + 1])  # another first token: nothing of ids is cached
        started = time.perf_counter()
        evaluated = evaluate()
        timings[f"cold_prompt_{name}_ms"] = _ms(started)
        assert evaluated == len(ids), (name, evaluated)
    backend.close()
    return {"cold_prompt_tokens": len(ids), "prewarm_chunk": PREWARM_CHUNK, **timings}


def measure(path: Path, engine: str = "ctransformers") -> dict:
    # Imported here, not at module level: the engine process is spawned and imports
    # this main module again, which the real app's engine does not pay for.
    from writer_app.engine.ggml import read_vocab, validate_model_file
    from writer_app.engine.process import EngineClient
    from writer_app.engine.tokenizer import Tokenizer

    parts: dict[str, float] = {}
    started = time.perf_counter()
    validate_model_file(path)
    parts["check_file_in_app_ms"] = _ms(started)
    started = time.perf_counter()
    vocab = read_vocab(path)
    parts["read_vocab_ms"] = _ms(started)
    started = time.perf_counter()
    Tokenizer.from_vocab(vocab)
    parts["build_tokenizer_ms"] = _ms(started)
    with EngineClient() as client:
        started = time.perf_counter()
        client.load(path, threads=1, engine=engine)
        parts["engine_first_load_ms"] = _ms(started)  # interpreter + imports + load
        started = time.perf_counter()
        client.load(path, threads=1, engine=engine)
        parts["engine_reload_ms"] = _ms(started)  # the load alone, in a warm engine
    parts["engine_start_ms"] = parts["engine_first_load_ms"] - parts["engine_reload_ms"]
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--context", type=int, default=0,
                        help="the app's context for this model (0: skip the cold prompt)")
    parser.add_argument("--engine", default="ctransformers", choices=("ctransformers", "llama.cpp"))
    args = parser.parse_args(argv)
    if args.engine == "llama.cpp":
        from writer_app.engine.gguf_convert import gguf_for

        gguf_for(args.model)  # converted (cached) before anything is timed, as the app does
    parts = {"engine": args.engine, **measure(args.model, args.engine)}
    parts.update(measure_tokens(args.model, engine=args.engine))
    if args.context and args.engine == "ctransformers":  # the cold-prompt price is ctransformers'
        # chunking (backend.py); llama.cpp reads prompts in PROMPT_CHUNK batches either way.
        parts.update(measure_cold_prompt(args.model, args.context))
    print(f"[app parts {args.model.name} {args.engine}] "
          + ", ".join(f"{k} {v:.0f}" for k, v in parts.items() if isinstance(v, float)),
          flush=True)
    args.out.write_text(json.dumps(parts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
