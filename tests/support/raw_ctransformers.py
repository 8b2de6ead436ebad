"""Direct, minimal use of ctransformers: the independent "raw" reference for tests and benchmarks.

This is the one place outside writer_app/engine/backend.py allowed to import ctransformers.
It deliberately shares no code with the app's backend. Keep one RawModel per process and
use it from one thread only (ctransformers 0.2.27 crashes otherwise). Never pass it text:
its tokenizer corrupts memory on emoji/CJK, so everything here works on token ids.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ctransformers import LLM

LIB_DIR = Path(__import__("ctransformers").__file__).parent / "lib"


def library_path() -> Path:
    """The CPU-specific library, chosen from /proc/cpuinfo rather than ctransformers'
    own (slow, ~1.1 s) CPU detection."""
    name = {"Linux": "libctransformers.so", "Darwin": "libctransformers.dylib"}.get(
        platform.system(), "ctransformers.dll"
    )
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if "avx2" in flags:
        variant = "avx2"
    elif "avx" in flags and "f16c" in flags:
        variant = "avx"
    else:
        variant = "basic"
    return LIB_DIR / variant / name


class RawModel:
    """A GPT-2 GGML file loaded straight into ctransformers."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        self.threads = threads
        self.llm = LLM(str(path), model_type="gpt2", lib=str(library_path()))

    @property
    def vocab_size(self) -> int:
        return self.llm.vocab_size

    def logits(self, token_ids: Sequence[int], *, batch_size: int = 1) -> np.ndarray:
        """Logits [T, V] after each prefix of `token_ids`, from a fresh context.

        ctransformers only keeps the last position's logits, so it evaluates in chunks
        of `batch_size` and returns the rows it can see: with batch_size 1 (default)
        every position; otherwise only the last row of each chunk.
        """
        self.reset()
        rows = []
        for start in range(0, len(token_ids), batch_size):
            chunk = list(token_ids[start : start + batch_size])
            self.llm.eval(chunk, batch_size=batch_size, threads=self.threads)
            rows.append(self.last_logits())
        return np.stack(rows)

    def last_logits(self) -> np.ndarray:
        """A copy of the logits after the last evaluated token (read straight from C; the
        `LLM.logits` property builds a Python list of every float, ~100x slower)."""
        data = self.llm.ctransformers_llm_logits_data()
        size = self.llm.ctransformers_llm_logits_size()
        return np.ctypeslib.as_array(data, shape=(size,))[-self.vocab_size :].copy()

    def reset(self) -> None:
        """Start a fresh context (LLM.reset works but warns it is deprecated)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.llm.reset()

    def greedy(self, token_ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation: argmax of the logits, fed back one token at a time."""
        self.reset()
        self.llm.eval(list(token_ids), batch_size=8, threads=self.threads)
        generated: list[int] = []
        for _ in range(max_new_tokens):
            next_id = int(np.argmax(self.last_logits()))
            generated.append(next_id)
            self.llm.eval([next_id], batch_size=1, threads=self.threads)
        return generated


def raw_logits(path: str | Path, token_ids: Sequence[int]) -> np.ndarray:
    """Load `path`, return logits [T, V] for every prefix of `token_ids`."""
    return RawModel(path).logits(token_ids)
