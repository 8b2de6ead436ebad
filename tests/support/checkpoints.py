"""Hugging Face GPT-2 checkpoint folders written for tests, in every layout the importer
takes: safetensors single or sharded, F32/F16/BF16, names with or without `transformer.`,
tied or untied heads, attention buffers, both tokenizer formats, added tokens.

The safetensors writer is our own (8-byte header length, JSON header, raw data) so the
tests can also write damaged files, and so BF16 needs no torch.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from tests.support.gpt2_vocab import GPT2_BPE_DIR

DTYPES = ("F32", "F16", "BF16")


def to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounding to nearest even as torch does."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def encode_tensor(array: np.ndarray, dtype: str) -> bytes:
    array = np.asarray(array, dtype=np.float32)
    if dtype == "F32":
        return array.astype("<f4").tobytes()
    if dtype == "F16":
        return array.astype("<f2").tobytes()
    return to_bf16_bits(array).astype("<u2").tobytes()


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], dtype: str = "F32") -> Path:
    """One tensor at a time: the data is streamed after a header computed from shapes."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    item = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    for name, array in tensors.items():
        shape = list(np.shape(array))
        size = math.prod(shape) * item
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for array in tensors.values():
            out.write(encode_tensor(array, dtype))
    return path


def stored_name(name: str, prefixed: bool) -> str:
    return name if prefixed or name == "lm_head.weight" else name.removeprefix("transformer.")


def write_checkpoint(
    folder: Path,
    weights: Mapping[str, np.ndarray],
    *,
    n_head: int,
    dtype: str = "F32",
    prefixed: bool = True,
    shards: int = 1,
    buffers: bool = False,
    tied_copy: bool = False,
    tokenizer: str | None = "files",
    added_tokens: Sequence[str] = (),
    config: Mapping[str, object] | None = None,
) -> Path:
    """Write `weights` (Hugging Face names; "lm_head.weight" present = untied head) as a
    checkpoint folder. tied_copy stores lm_head.weight as a copy of wte in a tied model;
    buffers adds GPT2Attention's attn.bias / attn.masked_bias."""
    folder.mkdir(parents=True, exist_ok=True)
    wte = np.shape(weights["transformer.wte.weight"])
    wpe = np.shape(weights["transformer.wpe.weight"])
    n_layer = len({k.split(".")[2] for k in weights if k.startswith("transformer.h.")})
    untied = "lm_head.weight" in weights
    settings: dict[str, object] = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "n_embd": wte[1], "n_head": n_head, "n_layer": n_layer, "n_positions": wpe[0],
        "n_ctx": wpe[0], "vocab_size": wte[0], "tie_word_embeddings": not untied,
        "bos_token_id": 50256, "eos_token_id": 50256,
    }
    settings.update(config or {})
    (folder / "config.json").write_text(json.dumps(settings, indent=2))

    tensors = _Renamed(weights)  # lazy, so gpt2-large needs one tensor at a time
    for name in weights:
        tensors.add(stored_name(name, prefixed), name)
    if tied_copy and not untied:
        tensors.add("lm_head.weight", "transformer.wte.weight")
    if buffers:
        n_ctx = wpe[0]
        mask = np.tril(np.ones((n_ctx, n_ctx), dtype=np.float32)).reshape(1, 1, n_ctx, n_ctx)
        for i in range(n_layer):
            tensors.add(stored_name(f"transformer.h.{i}.attn.bias", prefixed), mask)
            tensors.add(stored_name(f"transformer.h.{i}.attn.masked_bias", prefixed),
                        np.array(-1e4, dtype=np.float32))
    _write_weights(folder, tensors, dtype, shards)
    if tokenizer is not None:
        write_tokenizer(folder, tokenizer, added_tokens)
    return folder


class _Renamed(Mapping[str, np.ndarray]):
    """Stored name -> a tensor of `weights` (read on access) or a fixed array."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        self._weights = weights
        self._sources: dict[str, str | np.ndarray] = {}

    def add(self, stored: str, source: str | np.ndarray) -> None:
        self._sources[stored] = source

    def __getitem__(self, stored: str) -> np.ndarray:
        source = self._sources[stored]
        return self._weights[source] if isinstance(source, str) else source

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


def _write_weights(folder: Path, tensors: Mapping[str, np.ndarray], dtype: str,
                   shards: int) -> None:
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors, dtype)
        return
    names = list(tensors)
    weight_map: dict[str, str] = {}
    for k in range(shards):
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[k::shards]}
        write_safetensors(folder / shard, part, dtype)
        weight_map |= dict.fromkeys(part, shard)
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_tokenizer(folder: Path, kind: str, added_tokens: Sequence[str] = ()) -> None:
    """GPT-2's tokenizer as vocab.json + merges.txt ("files") or tokenizer.json ("json")."""
    vocab = json.loads((GPT2_BPE_DIR / "encoder.json").read_text("utf-8"))
    merges = (GPT2_BPE_DIR / "vocab.bpe").read_text("utf-8")
    added = [{"id": 50256, "content": "<|endoftext|>", "special": True}]
    added += [{"id": 50257 + i, "content": t, "special": True} for i, t in enumerate(added_tokens)]
    if kind == "files":
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
        (folder / "merges.txt").write_text(merges, "utf-8")
        config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024,
                  "added_tokens_decoder": {str(a["id"]): a for a in added}}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        if added_tokens:
            extra = {t: 50257 + i for i, t in enumerate(added_tokens)}
            (folder / "added_tokens.json").write_text(json.dumps(extra))
        return
    merge_list = [line for line in merges.splitlines()[1:] if line]
    data = {
        "version": "1.0",
        "added_tokens": added,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": merge_list},
    }
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), "utf-8")
