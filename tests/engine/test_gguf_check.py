"""The GGUF validator rejects every malformed file with one clear sentence (the same
InvalidModelFile as the GGML validator), and reports the same ModelFacts."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.support.models import random_gpt2
from writer_app.engine.ggml import WEIGHT_TYPES, InvalidModelFile, ModelFacts, read_layout
from writer_app.engine.gguf_check import (
    gguf_tensor_shapes,
    read_gguf_layout,
    token_string,
    validate_gguf_file,
)
from writer_app.engine.gguf_convert import gguf_for

TINY_VOCAB = [bytes([b]) for b in range(256)] + [b"<|endoftext|>"]
TINY = dict(n_layer=2, n_embd=32, n_head=4, n_ctx=16)
HP = {"context_length": 16, "embedding_length": 32, "feed_forward_length": 128,
      "block_count": 2, "attention.head_count": 4}  # fmt: skip


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("gguf")
    source = random_gpt2(folder / "tiny.bin", vocab=TINY_VOCAB, ftype="q8_0", **TINY)
    return gguf_for(source).read_bytes()


def reject(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(InvalidModelFile) as caught:
        validate_gguf_file(path)
    assert caught.value.path == path
    message = str(caught.value)
    assert message.startswith("bad.gguf is not a usable GPT-2 model: ")
    assert "\n" not in message
    return caught.value.reason


def build(
    path: Path,
    *,
    arch: str = "gpt2",
    hp: dict[str, int] | None = None,
    drop: tuple[str, ...] = (),
    extra: dict[str, tuple[int, ...]] | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
    types: dict[str, str] | None = None,
    vocab: list[bytes] = TINY_VOCAB,
    n_vocab: int = len(TINY_VOCAB),
) -> Path:
    """A GGUF file written with llama.cpp's writer, zero weights, with the given faults."""
    writer = gguf.GGUFWriter(path, arch)
    for key, value in {**HP, **(hp or {})}.items():
        if value is not None:
            writer.add_uint32(f"{arch}.{key}", value)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token_string(t) for t in vocab])
    tensors = gguf_tensor_shapes(n_vocab=n_vocab, n_ctx=16, n_embd=32, n_layer=2, lm_head=False)
    tensors = {n: s for n, s in tensors.items() if n not in drop} | (extra or {})
    tensors |= shapes or {}
    planned = []
    for name, ne in tensors.items():
        wtype = WEIGHT_TYPES[(types or {}).get(name, "f32")]
        count = int(np.prod(ne))
        nbytes = max(1, count // wtype.block_size) * wtype.block_bytes
        writer.add_tensor_info(
            name, tuple(reversed(ne)), np.dtype(np.float32), nbytes,
            raw_dtype=gguf.GGMLQuantizationType(wtype.ggml_type),
        )  # fmt: skip
        planned.append(nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for nbytes in planned:
        writer.write_tensor_data(np.zeros(nbytes, dtype=np.uint8))
    writer.close()
    return path


def reject_built(tmp_path: Path, **faults) -> str:
    return reject(tmp_path, build(tmp_path / "built.gguf", **faults).read_bytes())


def offset_field(data: bytes, name: str) -> int:
    """Where a tensor's data offset sits in the tensor table."""
    key = struct.pack("<Q", len(name)) + name.encode()
    start = data.index(key) + len(key)
    (n_dims,) = struct.unpack_from("<I", data, start)
    return start + 4 + 8 * n_dims + 4


# ---- good files ------------------------------------------------------------------------------


def test_a_converted_file_passes_with_the_ggml_facts(tmp_path, good_bytes):
    path = tmp_path / "ok.gguf"
    path.write_bytes(good_bytes)
    facts = validate_gguf_file(path)
    assert isinstance(facts, ModelFacts)
    assert (facts.n_vocab, facts.n_ctx, facts.n_embd, facts.n_head, facts.n_layer) == (
        257,
        16,
        32,
        4,
        2,
    )
    assert facts.quantization == "q8_0" and facts.eos_token_id == 256
    assert facts.file_size == len(good_bytes)
    assert read_gguf_layout(path).vocab == TINY_VOCAB


def test_a_file_written_by_llama_cpps_writer_passes(tmp_path):
    facts = validate_gguf_file(build(tmp_path / "ok.gguf"))
    assert facts.n_layer == 2 and not facts.has_lm_head


def test_the_ram_estimate_counts_a_tied_head_once(tmp_path):
    source = random_gpt2(tmp_path / "t.bin", vocab=TINY_VOCAB, **TINY)
    ggml_facts = read_layout(source).facts
    gguf_facts = validate_gguf_file(gguf_for(source))
    # ctransformers copies wte into a separate head; llama.cpp shares it.
    assert ggml_facts.weight_bytes - gguf_facts.weight_bytes == 257 * 32 * 4


# ---- the bad-file set (mirrors tests/engine/test_ggml_reader.py) --------------------------------


def test_wrong_magic(tmp_path, good_bytes):
    assert "GGUF magic" in reject(tmp_path, b"PK\x03\x04" + good_bytes[4:])


def test_empty_file(tmp_path):
    assert "empty" in reject(tmp_path, b"")


@pytest.mark.parametrize("version", [1, 4, 0xFFFFFFFF])
def test_unsupported_version(tmp_path, good_bytes, version):
    data = good_bytes[:4] + struct.pack("<I", version) + good_bytes[8:]
    assert f"version {version}" in reject(tmp_path, data)


@pytest.mark.parametrize("cut", [10, 30, 2_000, 4_000])
def test_truncated_inside_header_metadata_or_table(tmp_path, good_bytes, cut):
    assert "truncated" in reject(tmp_path, good_bytes[:cut])


@pytest.mark.parametrize("cut", [1, 1000, 20_000])
def test_truncated_data_names_the_tensor(tmp_path, good_bytes, cut):
    reason = reject(tmp_path, good_bytes[:-cut])
    assert reason.startswith("file is truncated: tensor ") and "lacks" in reason


def test_absurd_counts_in_the_header(tmp_path, good_bytes):
    data = good_bytes[:8] + struct.pack("<Q", 2**40) + good_bytes[16:]
    assert "claims" in reject(tmp_path, data)


def test_absurd_string_length(tmp_path, good_bytes):
    data = good_bytes[:24] + struct.pack("<Q", 2**50) + good_bytes[32:]
    assert "absurd length" in reject(tmp_path, data)


def test_another_architecture(tmp_path):
    assert "'llama', not GPT-2" in reject_built(tmp_path, arch="llama")


def test_missing_hyperparameter(tmp_path):
    assert "no gpt2.block_count" in reject_built(tmp_path, hp={"block_count": None})


@pytest.mark.parametrize(
    ("hp", "expected"),
    [
        ({"embedding_length": 0}, "n_embd is 0"),
        ({"block_count": 100_000}, "n_layer is 100,000"),
        ({"attention.head_count": 5}, "not divisible"),
        ({"feed_forward_length": 100}, "not 4 x n_embd"),
    ],
)
def test_absurd_hyperparameters(tmp_path, hp, expected):
    assert expected in reject_built(tmp_path, hp=hp)


def test_shapes_are_checked_against_the_hyperparameters(tmp_path):
    # A header that claims 3 layers while the tensors are for 2.
    assert "missing tensor blk.2." in reject_built(tmp_path, hp={"block_count": 3})
    reason = reject_built(tmp_path, shapes={"blk.1.ffn_up.weight": (32, 96)})
    assert reason == "tensor blk.1.ffn_up.weight has shape [32, 96], expected [32, 128]"


def test_position_table_must_match_the_context_length(tmp_path):
    assert "position_embd.weight has shape" in reject_built(tmp_path, hp={"context_length": 32})


def test_missing_tensor(tmp_path):
    assert reject_built(tmp_path, drop=("blk.0.attn_qkv.bias",)) == (
        "missing tensor blk.0.attn_qkv.bias"
    )


def test_unknown_tensor(tmp_path):
    assert "unknown tensor blk.0.attn_q.weight" in reject_built(
        tmp_path, extra={"blk.0.attn_q.weight": (32, 32)}
    )


def test_three_dimensional_tensor(tmp_path):
    assert "3 dimensions" in reject_built(tmp_path, extra={"x": (32, 2, 2)})


def test_a_norm_in_a_quantized_type(tmp_path):
    reason = reject_built(tmp_path, types={"blk.0.attn_norm.weight": "q8_0"})
    assert reason == "tensor blk.0.attn_norm.weight is stored as q8_0, expected f32"


def test_rows_that_do_not_fit_the_blocks(tmp_path):
    assert "do not fit q6_k blocks of 256" in reject_built(
        tmp_path, types={"blk.0.attn_qkv.weight": "q6_k"}
    )


def test_unsupported_tensor_type(tmp_path, good_bytes):
    name = "blk.0.ffn_down.weight"
    at = offset_field(good_bytes, name) - 4
    data = good_bytes[:at] + struct.pack("<I", 99) + good_bytes[at + 4 :]
    assert f"{name} has unsupported tensor type 99" in reject(tmp_path, data)


def test_unaligned_offset(tmp_path, good_bytes):
    at = offset_field(good_bytes, "blk.1.ffn_up.weight")
    (offset,) = struct.unpack_from("<Q", good_bytes, at)
    data = good_bytes[:at] + struct.pack("<Q", offset + 4) + good_bytes[at + 8 :]
    assert "unaligned offset" in reject(tmp_path, data)


def test_overlapping_tensors(tmp_path, good_bytes):
    first = offset_field(good_bytes, "blk.0.attn_qkv.weight")
    second = offset_field(good_bytes, "blk.0.ffn_up.weight")
    data = bytearray(good_bytes)
    data[second : second + 8] = data[first : first + 8]
    assert "overlap" in reject(tmp_path, bytes(data))


def test_vocabulary_must_match_the_embedding(tmp_path):
    reason = reject_built(tmp_path, vocab=TINY_VOCAB[:-1])
    assert reason == "vocabulary has 256 tokens but the embedding has 257 rows"


def test_no_vocabulary(tmp_path):
    assert "no vocabulary" in reject_built(tmp_path, vocab=[])
