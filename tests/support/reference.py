"""An independent numpy GPT-2 forward pass, from Hugging Face-layout weights.

Written from the GPT-2 definition (pre-norm blocks, causal multi-head attention, gelu with
the tanh approximation, layer norm eps 1e-5, logits from the untied head or the tied wte),
not from ggml, so agreement with ctransformers means the file and the loader agree.
Computes in float64 so its own rounding is negligible next to ggml's float32.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from writer_app.engine.ggml import is_big_matrix, read_layout
from writer_app.engine.ggml_writer import ggml_name, hf_names, to_ggml_layout
from writer_app.engine.quantize import dequantize, round_trip

LN_EPS = 1e-5


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * gain + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _count_layers(weights: Mapping[str, np.ndarray]) -> int:
    return len({k.split(".")[2] for k in weights if k.startswith("transformer.h.")})


def reference_logits(
    weights: Mapping[str, np.ndarray], token_ids: Sequence[int], *, n_head: int
) -> np.ndarray:
    """Logits [T, V] for every position of `token_ids` (float64)."""

    def w(name: str) -> np.ndarray:
        return np.asarray(weights[name], dtype=np.float64)

    ids = np.asarray(token_ids, dtype=np.int64)
    t = len(ids)
    wte = w("transformer.wte.weight")
    x = wte[ids] + w("transformer.wpe.weight")[:t]
    e = x.shape[1]
    head = e // n_head
    future = np.triu(np.ones((t, t), dtype=bool), k=1)
    for i in range(_count_layers(weights)):
        p = f"transformer.h.{i}."
        h = _layer_norm(x, w(p + "ln_1.weight"), w(p + "ln_1.bias"))
        qkv = h @ w(p + "attn.c_attn.weight") + w(p + "attn.c_attn.bias")
        q, k, v = (
            qkv[:, j * e : (j + 1) * e].reshape(t, n_head, head).transpose(1, 0, 2)
            for j in range(3)
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
        scores[:, future] = -np.inf
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        attn = attn.transpose(1, 0, 2).reshape(t, e)
        x = x + attn @ w(p + "attn.c_proj.weight") + w(p + "attn.c_proj.bias")
        h = _layer_norm(x, w(p + "ln_2.weight"), w(p + "ln_2.bias"))
        h = _gelu(h @ w(p + "mlp.c_fc.weight") + w(p + "mlp.c_fc.bias"))
        x = x + h @ w(p + "mlp.c_proj.weight") + w(p + "mlp.c_proj.bias")
    x = _layer_norm(x, w("transformer.ln_f.weight"), w("transformer.ln_f.bias"))
    lm_head = w("lm_head.weight") if "lm_head.weight" in weights else wte
    return x @ lm_head.T


def dequantized(weights: Mapping[str, np.ndarray], ftype: str) -> dict[str, np.ndarray]:
    """The weights as ggml computes with them after writing them as `ftype` (float32)."""
    result: dict[str, np.ndarray] = {}
    for name, array in weights.items():
        array = np.asarray(array, dtype=np.float32)
        if not is_big_matrix(ggml_name(name)):
            result[name] = array
            continue
        # Quantize in file layout (blocks along ggml rows), then undo the layout change.
        stored = round_trip(to_ggml_layout(name, array), ftype)
        result[name] = np.ascontiguousarray(stored.T) if _is_conv1d(name) else stored
    return result


def _is_conv1d(name: str) -> bool:
    return name.removeprefix("transformer.").startswith("h.") and name.endswith("weight")


def read_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a validated GGML GPT-2 file back into Hugging Face names and layout (float32,
    dequantized). The position table has the file's n_ctx rows."""
    layout = read_layout(path)
    facts = layout.facts
    result: dict[str, np.ndarray] = {}
    with open(path, "rb") as stream:
        for name in hf_names(facts.n_layer, lm_head=facts.has_lm_head):
            entry = layout.tensors[ggml_name(name)]
            stream.seek(entry.offset)
            raw = np.frombuffer(stream.read(entry.nbytes), dtype=np.uint8)
            array = dequantize(raw, entry.weight_type.name, tuple(reversed(entry.ne)))
            result[name] = array.T.copy() if _is_conv1d(name) and array.ndim == 2 else array
    return result
