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
        n_vocab=n_vocab,
        n_layer=n_layer,
        n_embd=n_embd,
        n_ctx=n_ctx,
        seed=seed,
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
        n_layer=n_layer,
        n_embd=n_embd,
        n_ctx=n_ctx,
        n_vocab=len(tokens),
        seed=seed,
        untied_head=untied_head,
    )
    return write_gpt2(path, weights, vocab=tokens, n_ctx=n_ctx, n_head=n_head, ftype=ftype)


class PhraseConflict(ValueError):
    """Two phrases need different next tokens after the same token."""


# Logit of the intended next token; every other token sits near 0, so even sampling at
# temperature 1 picks the intended token with probability ~1 - 50257 * e^-20.
PHRASE_LOGIT = 20.0
# The smallest gap the reference forward must show between the intended token and the
# runner-up, after quantization, before a phrase model is handed out.
PHRASE_MARGIN = 8.0


def phrase_successors(phrases: Sequence[str]) -> dict[int, int]:
    """token -> the token that must follow it (the last token of a phrase -> end of text)."""
    vocab = gpt2_vocab()
    successors: dict[int, int] = {}
    where: dict[int, str] = {}
    for phrase in phrases:
        tokens = encode(phrase)
        if not tokens:
            raise PhraseConflict("phrases must not be empty")
        for token, following in zip(tokens, [*tokens[1:], END_OF_TEXT_ID], strict=True):
            known = successors.setdefault(token, following)
            if known != following:
                raise PhraseConflict(
                    f"token {vocab[token]!r} is followed by {vocab[known]!r} in "
                    f"{where[token]!r} but by {vocab[following]!r} in {phrase!r}; a phrase "
                    "model can only continue each token one way"
                )
            where.setdefault(token, phrase)
    return successors


def _directions(count: int, n_embd: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit vectors with zero mean (so layer norm keeps them), orthogonal when
    there is room (count < n_embd), otherwise random and nearly orthogonal."""
    g = rng.standard_normal((n_embd, count))
    g -= g.mean(axis=0)
    if count < n_embd:
        q, _ = np.linalg.qr(g)
        g = q - q.mean(axis=0)
    return (g / np.linalg.norm(g, axis=0)).T


def phrase_weights(
    phrases: Sequence[str], *, n_ctx: int, n_embd: int, n_layer: int, seed: int
) -> dict[str, np.ndarray]:
    """A bigram model in GPT-2 clothing: token t's embedding points along its own
    direction u_t, and the untied head's row for token s collects the directions of the
    tokens s must follow. The transformer layers carry small GPT-2-like noise, so they are
    computed for real but cannot move the argmax."""
    successors = phrase_successors(phrases)
    n_vocab = len(gpt2_vocab())
    rng = np.random.default_rng(seed)
    noise = random_weights(n_layer=n_layer, n_embd=n_embd, n_ctx=n_ctx, n_vocab=n_vocab, seed=seed)
    weights = {name: noise[name] for name in noise if name != "transformer.wte.weight"}
    inputs = sorted(successors)
    directions = _directions(len(inputs), n_embd, rng)
    wte = rng.standard_normal((n_vocab, n_embd), dtype=np.float32)
    wte[inputs] = directions * np.sqrt(n_embd)  # per-element scale 1, like layer norm output
    head = np.zeros((n_vocab, n_embd), dtype=np.float32)
    for token, direction in zip(inputs, directions, strict=True):
        head[successors[token]] += direction * (PHRASE_LOGIT / np.sqrt(n_embd))
    weights["transformer.wte.weight"] = wte
    weights["lm_head.weight"] = head
    weights["transformer.wpe.weight"] *= np.float32(0.5)
    weights["transformer.ln_f.weight"] = np.ones(n_embd, dtype=np.float32)
    weights["transformer.ln_f.bias"] = np.zeros(n_embd, dtype=np.float32)
    return weights


def check_phrase_weights(
    weights: Mapping[str, np.ndarray], phrases: Sequence[str], *, n_head: int, ftype: str
) -> None:
    """Raise PhraseConflict unless the reference forward (on the weights as stored in
    `ftype`) continues every phrase with a clear margin."""
    from tests.support.reference import dequantized, reference_logits

    stored = dequantized(weights, ftype)
    for phrase in phrases:
        tokens = encode(phrase)
        logits = reference_logits(stored, tokens, n_head=n_head)
        wanted = [*tokens[1:], END_OF_TEXT_ID]
        for row, token in zip(logits, wanted, strict=True):
            others = np.delete(row, token)
            if row[token] - others.max() < PHRASE_MARGIN:
                raise PhraseConflict(
                    f"too many phrase tokens for n_embd={weights['transformer.wte.weight'].shape[1]}"
                    f" to keep {phrase!r} unambiguous in {ftype}; use a larger n_embd"
                )


def phrase_model(
    path: str | Path,
    phrases: list[str],
    *,
    ftype: str = "f32",
    n_ctx: int = 256,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    seed: int = 0,
) -> Path:
    """Write a small GPT-2 (real GPT-2 vocabulary) whose greedy continuation of any token
    prefix of one of `phrases` is the rest of that phrase, then <|endoftext|>.

    Phrases are tokenized with the reference BPE. Raises PhraseConflict when two phrases
    need different continuations after the same token.
    """
    weights = phrase_weights(phrases, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, seed=seed)
    check_phrase_weights(weights, phrases, n_head=n_head, ftype=ftype)
    return write_gpt2(path, weights, vocab=gpt2_vocab(), n_ctx=n_ctx, n_head=n_head, ftype=ftype)
