"""The writer: exact header and layout, every weight type read back, atomic writes, clear errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tests.support.models import random_weights
from tests.support.reference import dequantized, read_weights
from writer_app.engine.ggml import read_layout, validate_model_file
from writer_app.engine.ggml_writer import WeightsError, ggml_name, write_gpt2

# Ends with a token added in fine-tuning (after <|endoftext|>, not a merge).
VOCAB = [bytes([b]) for b in range(256)] + [b"<|endoftext|>", b" hello", b"<|pad|>"]
SMALL = dict(n_layer=2, n_embd=32, n_ctx=24)
ALL_TYPES = ["f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
FILE_FTYPES = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2002,
    "q4_1": 2003,
    "q5_0": 2008,
    "q5_1": 2009,
    "q8_0": 2007,
}


def small_weights(untied_head: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    return dict(random_weights(n_vocab=len(VOCAB), seed=seed, untied_head=untied_head, **SMALL))


def write(path, weights, **overrides):
    options = dict(vocab=VOCAB, n_ctx=24, n_head=4, ftype="f32") | overrides
    return write_gpt2(path, weights, **options)


@pytest.mark.parametrize(
    "hf, ggml",
    [
        ("transformer.wte.weight", "model/wte"),
        ("transformer.wpe.weight", "model/wpe"),
        ("lm_head.weight", "model/lm_head"),
        ("transformer.ln_f.weight", "model/ln_f/g"),
        ("transformer.ln_f.bias", "model/ln_f/b"),
        ("transformer.h.0.ln_1.weight", "model/h0/ln_1/g"),
        ("transformer.h.11.ln_2.bias", "model/h11/ln_2/b"),
        ("transformer.h.3.attn.c_attn.weight", "model/h3/attn/c_attn/w"),
        ("transformer.h.3.attn.c_proj.bias", "model/h3/attn/c_proj/b"),
        ("transformer.h.35.mlp.c_fc.weight", "model/h35/mlp/c_fc/w"),
        ("transformer.h.1.mlp.c_proj.weight", "model/h1/mlp/c_proj/w"),
    ],
)
def test_tensor_names(hf, ggml):
    assert ggml_name(hf) == ggml


def test_header_and_vocabulary_bytes(tmp_path):
    data = write(tmp_path / "m.bin", small_weights(), ftype="q4_0").read_bytes()
    assert data[:4] == b"lmgg"  # 0x67676d6c little endian
    assert struct.unpack_from("<6i", data, 4) == (len(VOCAB), 24, 32, 4, 2, 2002)
    assert struct.unpack_from("<iI", data, 28) == (len(VOCAB), 1)
    assert data[36:37] == b"\x00"
    eot = data.index(b"<|endoftext|>")
    assert struct.unpack_from("<I", data, eot - 4) == (13,)
    # " hello" and "<|pad|>", each as length + bytes, straight before the first tensor.
    first_tensor = eot + 13 + 4 + 6 + 4 + 7
    assert struct.unpack_from("<3i", data, first_tensor) == (1, len("model/ln_f/g"), 0)


@pytest.mark.parametrize("ftype", ALL_TYPES)
def test_every_type_reads_back_as_its_dequantized_weights(tmp_path, ftype):
    weights = small_weights(untied_head=True)
    path = write(tmp_path / f"{ftype}.bin", weights, ftype=ftype)
    facts = validate_model_file(path)
    assert (facts.quantization, facts.ftype, facts.has_lm_head) == (ftype, FILE_FTYPES[ftype], True)
    stored = read_weights(path)
    expected = dequantized(weights, ftype)
    assert stored.keys() == expected.keys()
    for name in expected:
        assert stored[name].shape == weights[name].shape, name
        assert np.array_equal(stored[name], expected[name]), name


def test_only_the_big_matrices_take_the_weight_type(tmp_path):
    path = write(tmp_path / "m.bin", small_weights(untied_head=True), ftype="q8_0")
    types = {name: entry.weight_type.name for name, entry in read_layout(path).tensors.items()}
    big = {n for n, t in types.items() if t == "q8_0"}
    assert big == {"model/wte", "model/lm_head"} | {
        f"model/h{i}/{part}/w"
        for i in range(2)
        for part in ("attn/c_attn", "attn/c_proj", "mlp/c_fc", "mlp/c_proj")
    }
    assert set(types.values()) == {"q8_0", "f32"}


def test_conv1d_weights_are_transposed_to_output_rows(tmp_path):
    weights = small_weights()
    path = write(tmp_path / "m.bin", weights)
    entry = read_layout(path).tensors["model/h0/mlp/c_fc/w"]
    assert entry.ne == (32, 128)  # ne[0] = inputs: each output's weights are contiguous
    with open(path, "rb") as stream:
        stream.seek(entry.offset)
        first_row = np.frombuffer(stream.read(32 * 4), dtype="<f4")
    assert np.array_equal(first_row, weights["transformer.h.0.mlp.c_fc.weight"][:, 0])


def test_position_table_is_cut_to_n_ctx(tmp_path):
    weights = small_weights()
    path = write(tmp_path / "m.bin", weights, n_ctx=10)
    assert validate_model_file(path).n_ctx == 10
    assert np.array_equal(
        read_weights(path)["transformer.wpe.weight"], weights["transformer.wpe.weight"][:10]
    )


def test_same_weights_give_identical_files(tmp_path):
    first = write(tmp_path / "a.bin", small_weights(seed=5), ftype="q5_0").read_bytes()
    second = write(tmp_path / "b.bin", small_weights(seed=5), ftype="q5_0").read_bytes()
    other = write(tmp_path / "c.bin", small_weights(seed=6), ftype="q5_0").read_bytes()
    assert first == second != other


class ExplodingWeights(dict):
    def __getitem__(self, name):
        if name == "transformer.h.1.mlp.c_fc.weight":
            raise RuntimeError("disk on fire")
        return super().__getitem__(name)


def test_failed_write_leaves_the_old_file_and_no_temp_files(tmp_path):
    target = tmp_path / "m.bin"
    target.write_bytes(b"previous model")
    with pytest.raises(RuntimeError, match="disk on fire"):
        write(target, ExplodingWeights(small_weights()))
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.bin"]


def test_creates_missing_folders(tmp_path):
    path = write(tmp_path / "a" / "b" / "m.bin", small_weights())
    assert validate_model_file(path).n_layer == 2


def test_accepts_float64_and_noncontiguous_arrays(tmp_path):
    weights = {k: np.asfortranarray(v.astype(np.float64)) for k, v in small_weights().items()}
    path = write(tmp_path / "m.bin", weights)
    assert np.allclose(
        read_weights(path)["transformer.h.1.attn.c_attn.weight"],
        weights["transformer.h.1.attn.c_attn.weight"],
    )


def test_vocab_must_match_wte(tmp_path):
    with pytest.raises(WeightsError, match="vocab has 258 tokens but wte has 259 rows"):
        write(tmp_path / "m.bin", small_weights(), vocab=VOCAB[:-1])


def test_n_ctx_cannot_exceed_the_position_table(tmp_path):
    with pytest.raises(WeightsError, match=r"n_ctx must be between 1 and 24 \(wpe rows\), got 25"):
        write(tmp_path / "m.bin", small_weights(), n_ctx=25)


def test_heads_must_divide_the_width(tmp_path):
    with pytest.raises(WeightsError, match="n_embd 32 is not divisible by n_head 5"):
        write(tmp_path / "m.bin", small_weights(), n_head=5)


def test_quantized_width_must_fit_blocks(tmp_path):
    weights = dict(random_weights(n_vocab=len(VOCAB), n_layer=1, n_embd=48, n_ctx=24))
    with pytest.raises(WeightsError, match="q4_0 needs n_embd divisible by 32"):
        write(tmp_path / "m.bin", weights, ftype="q4_0", n_head=4)
    assert validate_model_file(write(tmp_path / "f16.bin", weights, ftype="f16", n_head=4))


def test_wrongly_shaped_tensor_is_named(tmp_path):
    weights = small_weights()
    weights["transformer.h.1.attn.c_proj.weight"] = np.zeros((32, 31), dtype=np.float32)
    with pytest.raises(
        WeightsError, match=r"transformer.h.1.attn.c_proj.weight has shape \[32, 31\]"
    ):
        write(tmp_path / "m.bin", weights)
    assert list(tmp_path.iterdir()) == []


def test_layers_must_be_numbered_from_zero(tmp_path):
    weights = {k.replace(".h.1.", ".h.2."): v for k, v in small_weights().items()}
    with pytest.raises(WeightsError, match=r"not contiguous from 0: \[0, 2\]"):
        write(tmp_path / "m.bin", weights)


def test_unknown_weight_type(tmp_path):
    with pytest.raises(ValueError, match="unknown weight type 'q3'"):
        write(tmp_path / "m.bin", small_weights(), ftype="q3")
