"""A small numpy GPT-2 forward pass, used to prove an imported model computes what its
checkpoint computes.

Written from the GPT-2 definition (pre-norm blocks, causal attention, tanh-GELU), not from
ggml, so agreement with ctransformers shows the converted file and its loader agree with
the weights. It reads one tensor at a time from a lazy Mapping (Hugging Face names and
layout) and computes in float32, so checking gpt2-large costs about one embedding's
memory; on a few tokens float32 rounding is far below any tolerance it is judged by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

HEAD_ROWS_PER_STEP = 8192  # logits are computed over vocabulary slices of this many rows


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gain + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gpt2_logits(
    weights: Mapping[str, np.ndarray],
    token_ids: Sequence[int],
    *,
    n_layer: int,
    n_head: int,
    eps: float = 1e-5,
) -> np.ndarray:
    """Logits [T, V] (float32) after each position of `token_ids`."""

    def w(name: str) -> np.ndarray:
        return np.asarray(weights[name], dtype=np.float32)

    ids = np.asarray(token_ids, dtype=np.int64)
    t = len(ids)
    x = np.asarray(weights["transformer.wte.weight"][ids], dtype=np.float32)
    x = x + w("transformer.wpe.weight")[:t]
    e = x.shape[1]
    size = e // n_head
    future = np.triu(np.ones((t, t), dtype=bool), k=1)
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        h = _layer_norm(x, w(p + "ln_1.weight"), w(p + "ln_1.bias"), eps)
        qkv = h @ w(p + "attn.c_attn.weight") + w(p + "attn.c_attn.bias")
        q, k, v = (qkv[:, j * e:(j + 1) * e].reshape(t, n_head, size).transpose(1, 0, 2)
                   for j in range(3))
        scores = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(size))
        scores[:, future] = -np.inf
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        attn = attn.transpose(1, 0, 2).reshape(t, e)
        x = x + attn @ w(p + "attn.c_proj.weight") + w(p + "attn.c_proj.bias")
        h = _layer_norm(x, w(p + "ln_2.weight"), w(p + "ln_2.bias"), eps)
        h = _gelu(h @ w(p + "mlp.c_fc.weight") + w(p + "mlp.c_fc.bias"))
        x = x + h @ w(p + "mlp.c_proj.weight") + w(p + "mlp.c_proj.bias")
    x = _layer_norm(x, w("transformer.ln_f.weight"), w("transformer.ln_f.bias"), eps)
    head = weights["lm_head.weight"] if "lm_head.weight" in weights else (
        weights["transformer.wte.weight"])
    rows = head.shape[0]
    return np.concatenate([
        x @ np.asarray(head[start:start + HEAD_ROWS_PER_STEP], dtype=np.float32).T
        for start in range(0, rows, HEAD_ROWS_PER_STEP)
    ], axis=1)
