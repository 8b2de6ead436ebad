"""Where the app's model load time goes, piece by piece, in a fresh process:

    python -m benchmarks.load_parts --model FILE --out parts.json

TextSession.open (what InferenceService's loader thread runs) = EngineClient start and
load (a new spawned interpreter that imports the engine, checks the file and has
ctransformers load it) + the tokenizer built in the app process from the file's
vocabulary. Loading twice into the same engine process separates the interpreter
start from the load itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path



def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def measure(path: Path) -> dict:
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
        client.load(path, threads=1)
        parts["engine_first_load_ms"] = _ms(started)  # interpreter + imports + load
        started = time.perf_counter()
        client.load(path, threads=1)
        parts["engine_reload_ms"] = _ms(started)  # the load alone, in a warm engine
    parts["engine_start_ms"] = parts["engine_first_load_ms"] - parts["engine_reload_ms"]
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    parts = measure(args.model)
    print(f"[load parts {args.model.name}] " + ", ".join(f"{k} {v:.0f}" for k, v in parts.items()),
          flush=True)
    args.out.write_text(json.dumps(parts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
