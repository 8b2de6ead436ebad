"""GPT-2 as GGUF for llama.cpp's server in tests: the weights tests/support/models.py
generates, written with the `gguf` package in the layout llama.cpp's convert_hf_to_gguf.py
gives GPT-2 (f32, so the server computes exactly what the reference forward does).

A stand-in for the GGML -> GGUF converter on the llama-engine branch; kept small.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tests.support.gpt2_vocab import END_OF_TEXT_ID, GPT2_BPE_DIR, gpt2_vocab
from tests.support.models import phrase_weights, random_weights
from tests.support.reference_bpe import bytes_to_unicode

_LAYER_PARTS = {  # Hugging Face name part -> GGUF name part
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}


@functools.cache
def _merges() -> tuple[str, ...]:
    lines = (GPT2_BPE_DIR / "vocab.bpe").read_text("utf-8").splitlines()
    return tuple(line for line in lines[1:] if line.strip())  # line 0 is a version header


def write_gpt2_gguf(path: str | Path, weights: Mapping[str, np.ndarray], *, n_head: int) -> Path:
    """Write Hugging Face-named GPT-2 weights (real GPT-2 vocabulary) as a GGUF file."""
    import gguf

    n_vocab, n_embd = weights["transformer.wte.weight"].shape
    n_ctx = weights["transformer.wpe.weight"].shape[0]
    n_layer = 1 + max(int(name.split(".")[2]) for name in weights if name.startswith("transformer.h."))
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_name("writer-app test gpt2")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(4 * n_embd)
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_layer_norm_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    to_unicode = bytes_to_unicode()
    vocab = gpt2_vocab()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(["".join(to_unicode[b] for b in token) for token in vocab])
    types = [gguf.TokenType.NORMAL] * len(vocab)
    types[END_OF_TEXT_ID] = gguf.TokenType.CONTROL
    writer.add_token_types(types)
    writer.add_token_merges(list(_merges()))
    writer.add_bos_token_id(END_OF_TEXT_ID)
    writer.add_eos_token_id(END_OF_TEXT_ID)
    writer.add_add_bos_token(False)
    for name, array in _gguf_tensors(weights, n_layer):
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _gguf_tensors(weights: Mapping[str, np.ndarray], n_layer: int):  # type: ignore[no-untyped-def]
    yield "token_embd.weight", weights["transformer.wte.weight"]
    yield "position_embd.weight", weights["transformer.wpe.weight"]
    yield "output_norm.weight", weights["transformer.ln_f.weight"]
    yield "output_norm.bias", weights["transformer.ln_f.bias"]
    if "lm_head.weight" in weights:
        yield "output.weight", weights["lm_head.weight"]
    for i in range(n_layer):
        for hf_part, gguf_part in _LAYER_PARTS.items():
            weight = weights[f"transformer.h.{i}.{hf_part}.weight"]
            if not hf_part.startswith("ln_"):
                weight = weight.T  # Conv1D stores [in, out]; llama.cpp wants [out, in] rows
            yield f"blk.{i}.{gguf_part}.weight", weight
            yield f"blk.{i}.{gguf_part}.bias", weights[f"transformer.h.{i}.{hf_part}.bias"]


def phrase_gguf(
    path: str | Path, phrases: Sequence[str], *, n_ctx: int = 256, n_embd: int = 64,
    n_layer: int = 2, n_head: int = 4, seed: int = 0,
) -> Path:
    """The phrase model of tests/support/models.py as GGUF: greedy continues a phrase."""
    weights = phrase_weights(phrases, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, seed=seed)
    return write_gpt2_gguf(path, weights, n_head=n_head)


def random_gguf(
    path: str | Path, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_ctx: int = 256,
    seed: int = 0,
) -> Path:
    """A random GPT-2 as GGUF: varied text at any temperature."""
    weights = random_weights(n_layer=n_layer, n_embd=n_embd, n_ctx=n_ctx, seed=seed)
    return write_gpt2_gguf(path, dict(weights), n_head=n_head)
