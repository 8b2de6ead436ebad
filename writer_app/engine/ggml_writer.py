"""Write Hugging Face GPT-2 weights as a classic GGML GPT-2 file that ctransformers loads.

Conversion follows ggml's examples/gpt-2 convert-h5-to-ggml.py plus its quantize tool:
Conv1D weights ([in, out] in Hugging Face) are transposed so each output row is
contiguous; the six big matrices take the requested weight type, everything else
(biases, norms and the position embedding, which gpt2.cc allocates as f32) stays f32.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from writer_app.engine.ggml import (
    F32,
    GGML_MAGIC,
    expected_tensors,
    file_ftype,
    is_big_matrix,
    weight_type,
)
from writer_app.engine.quantize import quantize
from writer_app.safe_files import AtomicWriter

QUANTIZE_SLICE_BYTES = 16 * 1024 * 1024


class WeightsError(ValueError):
    """The given weights do not form a consistent GPT-2 model."""


def ggml_name(hf_name: str) -> str:
    """transformer.h.3.mlp.c_fc.weight -> model/h3/mlp/c_fc/w"""
    name = hf_name.removeprefix("transformer.")
    if name == "lm_head.weight":
        return "model/lm_head"
    if name in ("wte.weight", "wpe.weight"):
        return "model/" + name.split(".")[0]
    if name.startswith("ln_f."):
        return "model/ln_f/" + ("g" if name.endswith("weight") else "b")
    parts = name.split(".")  # h, 3, mlp, c_fc, weight
    if len(parts) < 4 or parts[0] != "h" or not parts[1].isdigit():
        raise WeightsError(f"unexpected tensor name {hf_name!r}")
    last = {"ln_1": "g", "ln_2": "g"}.get(parts[2], "w") if parts[-1] == "weight" else "b"
    return f"model/h{parts[1]}/" + "/".join(parts[2:-1]) + "/" + last


def hf_names(n_layer: int, *, lm_head: bool) -> list[str]:
    """The Hugging Face tensor names write_gpt2 needs, in the order they are written."""
    names = ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    names += ["transformer.wte.weight", "transformer.wpe.weight"]
    if lm_head:
        names.append("lm_head.weight")
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        for part in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            names += [p + part + ".weight", p + part + ".bias"]
    return names


def to_ggml_layout(hf_name: str, array: np.ndarray) -> np.ndarray:
    """Float32, C-contiguous, in file order (Conv1D matrices transposed to [out, in])."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2 and hf_name.removeprefix("transformer.").startswith("h."):
        array = array.T
    return np.ascontiguousarray(array)


def write_gpt2(
    path: str | os.PathLike[str],
    weights: Mapping[str, np.ndarray],
    *,
    vocab: Sequence[bytes],
    n_ctx: int,
    n_head: int,
    ftype: str,
) -> Path:
    """Write `weights` (Hugging Face names and layout) to `path` atomically.

    `weights` is read one tensor at a time, so a lazy Mapping keeps memory low for big
    models. `n_ctx` may be smaller than the position table (it is cut to fit).
    """
    path = Path(path)
    wtype = weight_type(ftype)
    wte = np.shape(weights["transformer.wte.weight"])
    wpe_rows = np.shape(weights["transformer.wpe.weight"])[0]
    n_vocab, n_embd = wte
    n_layer = _count_layers(weights)
    lm_head = "lm_head.weight" in weights
    if len(vocab) != n_vocab:
        raise WeightsError(f"vocab has {len(vocab)} tokens but wte has {n_vocab} rows")
    if not 1 <= n_ctx <= wpe_rows:
        raise WeightsError(f"n_ctx must be between 1 and {wpe_rows} (wpe rows), got {n_ctx}")
    if n_head < 1 or n_embd % n_head:
        raise WeightsError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
    if wtype.quantized and n_embd % wtype.block_size:
        raise WeightsError(f"{wtype.name} needs n_embd divisible by {wtype.block_size}")
    shapes = expected_tensors(
        n_vocab=n_vocab, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, lm_head=lm_head
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    # A failure part-way (a bad shape, a full disk) leaves no half-written model behind.
    with AtomicWriter(path) as out:
        header = (n_vocab, n_ctx, n_embd, n_head, n_layer, file_ftype(wtype))
        out.write(struct.pack("<I6i", GGML_MAGIC, *header))
        _write_vocab(out, vocab)
        for hf_name in hf_names(n_layer, lm_head=lm_head):
            name = ggml_name(hf_name)
            array = to_ggml_layout(hf_name, weights[hf_name])
            if name == "model/wpe":
                array = array[:n_ctx]
            ne = tuple(reversed(array.shape))
            if ne != shapes[name]:
                raise WeightsError(
                    f"{hf_name} has shape {list(np.shape(weights[hf_name]))}, which does "
                    f"not fit n_embd={n_embd}, n_vocab={n_vocab}, n_ctx={n_ctx}"
                )
            tensor_type = wtype if is_big_matrix(name) else F32
            _write_tensor(out, name, ne, tensor_type.ggml_type, array, tensor_type.name)
    return path


def _count_layers(weights: Mapping[str, np.ndarray]) -> int:
    layers = {int(k.split(".")[2]) for k in weights if k.startswith("transformer.h.")}
    if layers != set(range(len(layers))):
        raise WeightsError(f"layer numbers are not contiguous from 0: {sorted(layers)}")
    return len(layers)


def _write_vocab(out: AtomicWriter, vocab: Sequence[bytes]) -> None:
    pack_length = struct.Struct("<I").pack
    parts = [struct.pack("<i", len(vocab))]
    for token in vocab:
        parts += (pack_length(len(token)), token)
    out.write(b"".join(parts))


def _write_tensor(
    out: AtomicWriter, name: str, ne: tuple[int, ...], type_id: int, array: np.ndarray,
    type_name: str,
) -> None:
    encoded = name.encode()
    out.write(struct.pack(f"<3i{len(ne)}i", len(ne), len(encoded), type_id, *ne))
    out.write(encoded)
    # A slice of rows at a time: quantizing a whole gpt2-large embedding at once would take
    # several float32 temporaries of its size. Rows are whole blocks, so the bytes are the same.
    rows = array.reshape(-1, ne[0])
    step = max(1, QUANTIZE_SLICE_BYTES // (4 * ne[0]))
    for start in range(0, rows.shape[0], step):
        out.write(memoryview(quantize(rows[start : start + step], type_name)))
