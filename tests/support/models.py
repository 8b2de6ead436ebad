"""Generated GPT-2 model files for tests and benchmarks.

random_gpt2: GPT-2-initialised random weights of any shape (up to gpt2-large), generated
one tensor at a time so big shapes stay memory-sane.
phrase_model: a small model whose greedy continuation of any prefix of a given phrase is
the rest of that phrase, so tests can predict exactly what a suggestion will say.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.gpt2_vocab import END_OF_TEXT_ID, encode, gpt2_vocab
from writer_app.engine.ggml_writer import hf_names, write_gpt2


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_head: int
    n_ctx: int


GPT2_SHAPE = Shape(n_layer=12, n_embd=768, n_head=12, n_ctx=1024)
GPT2_LARGE_SHAPE = Shape(n_layer=36, n_embd=1280, n_head=20, n_ctx=1024)


class RandomGPT2Weights(Mapping[str, np.ndarray]):
    """Hugging Face-named GPT-2 weights, each generated on access from (seed, name).

    Initialised like GPT-2: matrices N(0, 0.02), residual projections scaled down by
    sqrt(2 * n_layer) so activations stay finite at any depth. Norm gains and all biases
    get a little noise too, so a cross-check notices if any of them is misread.
    """

    def __init__(
        self, *, n_vocab: int, n_layer: int, n_embd: int, n_ctx: int, seed: int, untied_head: bool
    ) -> None:
        self.n_vocab, self.n_layer, self.n_embd, self.n_ctx = n_vocab, n_layer, n_embd, n_ctx
        self.seed = seed
        self._names = hf_names(n_layer, lm_head=untied_head)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        shape = self._shape(name)
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        std = 0.02
        if name.endswith("bias"):
            std = 0.01
        elif name.endswith("c_proj.weight"):
            std = 0.02 / np.sqrt(2 * self.n_layer)
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def _shape(self, name: str) -> tuple[int, ...]:
        e, v = self.n_embd, self.n_vocab
        if name in ("transformer.wte.weight", "lm_head.weight"):
            return (v, e)
        if name == "transformer.wpe.weight":
            return (self.n_ctx, e)
        part = name.split(".")[-2] if name.startswith("transformer.h.") else ""
        widths = {"c_attn": 3 * e, "c_fc": 4 * e}
        if name.endswith("weight") and part in ("c_attn", "c_proj", "c_fc"):
            # Conv1D: [in, out]; the MLP projection reads the 4x wide hidden layer.
            inputs = 4 * e if ".mlp.c_proj." in name else e
            return (inputs, widths.get(part, e))
        return (widths.get(part, e),)


def random_weights(
    *,
    n_layer: int,
    n_embd: int,
    n_ctx: int,
    n_vocab: int = 50257,
    seed: int = 0,
    untied_head: bool = False,
) -> RandomGPT2Weights:
    """The lazy weights random_gpt2 writes (for reference forwards in tests)."""
    return RandomGPT2Weights(
        n_vocab=n_vocab, n_layer=n_layer, n_embd=n_embd, n_ctx=n_ctx, seed=seed,
        untied_head=untied_head,
    )


def random_gpt2(
    path: str | Path,
    *,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_ctx: int,
    ftype: str = "f32",
    seed: int = 0,
    vocab: Sequence[bytes] | None = None,
    untied_head: bool = False,
) -> Path:
    """Write a random GPT-2 of the given shape to `path` and return the path."""
    tokens = list(vocab) if vocab is not None else gpt2_vocab()
    weights = random_weights(
        n_layer=n_layer, n_embd=n_embd, n_ctx=n_ctx, n_vocab=len(tokens), seed=seed,
        untied_head=untied_head,
    )
    return write_gpt2(path, weights, vocab=tokens, n_ctx=n_ctx, n_head=n_head, ftype=ftype)
