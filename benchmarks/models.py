"""The benchmark's model files: GPT-2-shaped random weights, generated once and cached.

Generating gpt2-large q4_0 takes ~45 s, so files are kept in a cache directory under a
name that encodes everything they are generated from; a half-written file never
appears under that name (write_gpt2 writes to a temporary file and renames it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.models import GPT2_LARGE_SHAPE, GPT2_SHAPE, Shape, random_gpt2

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "writer-app-bench"
GENERATOR_VERSION = 1  # bump when random_gpt2's output changes, to regenerate files
SEED = 7


@dataclass(frozen=True)
class BenchModel:
    name: str  # "gpt2", "gpt2-large", "tiny"
    shape: Shape
    ftype: str = "q4_0"

    def file_name(self) -> str:
        s = self.shape
        return (
            f"{self.name}-{self.ftype}-L{s.n_layer}-E{s.n_embd}-H{s.n_head}-C{s.n_ctx}"
            f"-s{SEED}-v{GENERATOR_VERSION}.bin"
        )


GPT2 = BenchModel("gpt2", GPT2_SHAPE)
GPT2_LARGE = BenchModel("gpt2-large", GPT2_LARGE_SHAPE)
# For the smoke test: the real vocabulary (the app tokenizes with it) on a toy body.
TINY = BenchModel("tiny", Shape(n_layer=2, n_embd=64, n_head=4, n_ctx=256))
TINY_LARGE = BenchModel("tiny-large", Shape(n_layer=3, n_embd=96, n_head=4, n_ctx=256))


def ensure_model(model: BenchModel, cache_dir: Path, log=print) -> Path:
    """The cached file for `model`, generated first if it is not there yet."""
    path = cache_dir / model.file_name()
    if path.is_file():
        return path
    log(f"generating {path.name} (once; cached in {cache_dir}) ...")
    started = time.perf_counter()
    s = model.shape
    random_gpt2(
        path,
        n_layer=s.n_layer,
        n_embd=s.n_embd,
        n_head=s.n_head,
        n_ctx=s.n_ctx,
        ftype=model.ftype,
        seed=SEED,
    )
    log(f"  done in {time.perf_counter() - started:.0f} s ({path.stat().st_size / 2**20:.0f} MiB)")
    return path
