"""Peak memory of importing a gpt2-large-shaped checkpoint (random weights).

    python benchmarks/import_memory.py [--dtype F16] [--quant q4_0] [--work DIR]

Writes the checkpoint with the tests' helper (about 1.6 GB as F16, 3.1 GB as F32), imports
it as the app would, and prints the importer's peak RSS (VmHWM) and the engine child's
(which loads the converted model for the proof) separately, with the times.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.checkpoints import write_checkpoint  # noqa: E402
from tests.support.models import GPT2_LARGE_SHAPE, random_weights  # noqa: E402
from writer_app.models.hf_import import (  # noqa: E402
    TOLERANCE,
    _engine_logits_in_child,
    check_tokens,
    import_checkpoint,
    logit_error,
    plan_import,
)
from writer_app.models.store import ModelStore  # noqa: E402


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="F16")
    parser.add_argument("--quant", default="q4_0")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="import-memory-"))
    shape = GPT2_LARGE_SHAPE
    folder = work / "gpt2-large-finetune"
    started = time.monotonic()
    if not (folder / "config.json").exists():
        weights = random_weights(n_layer=shape.n_layer, n_embd=shape.n_embd,
                                 n_ctx=shape.n_ctx, seed=7)
        write_checkpoint(folder, weights, n_head=shape.n_head, dtype=args.dtype)
    written = time.monotonic()
    print(f"checkpoint written in {written - started:.0f} s; importer RSS so far "
          f"{peak_rss_mb():.0f} MB (writing)", flush=True)
    store = ModelStore(work / "models")
    shutil.rmtree(store.models_dir, ignore_errors=True)
    before = peak_rss_mb()
    model = import_checkpoint(folder, store, quantization=args.quant)
    done = time.monotonic()
    print(f"imported {model.name} ({model.size_bytes / 1e6:.0f} MB) in {done - written:.0f} s")
    print(f"importer peak RSS {peak_rss_mb():.0f} MB (before the import: {before:.0f} MB)")
    plan = plan_import(folder, args.quant)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        child = pool.submit(engine_peak_mb, str(model.path), check_tokens(plan)).result()
    print(f"engine child (the proof's ctransformers) peak RSS {child:.0f} MB")
    print(f"logit error {logit_error(plan, model.path):.2e} "
          f"(tolerance {TOLERANCE[args.quant]})")


def engine_peak_mb(path: str, tokens: list[int]) -> float:
    _engine_logits_in_child(path, tokens)
    return peak_rss_mb()


if __name__ == "__main__":
    main()
