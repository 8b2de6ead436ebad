"""The validator rejects every malformed file with one clear sentence, and reports facts."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.support.gpt2_vocab import gpt2_vocab
from tests.support.models import random_gpt2
from writer_app.engine.ggml import (
    WEIGHT_TYPES,
    InvalidModelFile,
    ModelFacts,
    expected_tensors,
    file_ftype,
    is_big_matrix,
    read_layout,
    read_vocab,
    validate_model_file,
    weight_type,
)

TINY_VOCAB = [bytes([b]) for b in range(256)] + [b"<|endoftext|>"]
TINY = dict(n_layer=2, n_embd=32, n_head=4, n_ctx=16)
HEADER_FIELDS = ["n_vocab", "n_ctx", "n_embd", "n_head", "n_layer", "ftype"]


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ggml") / "tiny.bin"
    return random_gpt2(path, vocab=TINY_VOCAB, **TINY).read_bytes()


@pytest.fixture(scope="module")
def good_layout(tmp_path_factory, good_bytes):
    path = tmp_path_factory.mktemp("ggml") / "tiny.bin"
    path.write_bytes(good_bytes)
    return read_layout(path)


def reject(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "bad.bin"
    path.write_bytes(data)
    with pytest.raises(InvalidModelFile) as caught:
        validate_model_file(path)
    assert caught.value.path == path
    message = str(caught.value)
    assert message.startswith("bad.bin is not a usable GPT-2 model: ")
    assert "\n" not in message
    return caught.value.reason


def with_header(data: bytes, **fields: int) -> bytes:
    values = list(struct.unpack_from("<6i", data, 4))
    for name, value in fields.items():
        values[HEADER_FIELDS.index(name)] = value
    return data[:4] + struct.pack("<6i", *values) + data[28:]


def record_span(layout, name: str) -> tuple[int, int]:
    """Byte range of one tensor record (header + name + data)."""
    entry = layout.tensors[name]
    start = entry.offset - len(name) - 4 * (3 + len(entry.ne))
    return start, entry.offset + entry.nbytes


def test_valid_file_passes(tmp_path, good_bytes):
    path = tmp_path / "ok.bin"
    path.write_bytes(good_bytes)
    facts = validate_model_file(path)
    assert isinstance(facts, ModelFacts)
    assert read_vocab(path) == TINY_VOCAB


def test_wrong_magic(tmp_path, good_bytes):
    assert "GGML magic" in reject(tmp_path, b"PK\x03\x04" + good_bytes[4:])


def test_empty_file(tmp_path):
    assert "GGML magic" in reject(tmp_path, b"")


def test_gguf_is_rejected_by_name(tmp_path):
    garbage = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert reject(tmp_path, b"GGUF" + garbage) == (
        "GGUF files are not supported; use a GGML GPT-2 file"
    )


@pytest.mark.parametrize("ftype", [4, 5, 6, 15, 17, -1, 2099])
def test_unsupported_ftype(tmp_path, good_bytes, ftype):
    reason = reject(tmp_path, with_header(good_bytes, ftype=ftype))
    assert reason == f"unsupported quantization type {ftype}"


@pytest.mark.parametrize("ftype", [2, 1002, 3007])
def test_old_or_unknown_quantization_version(tmp_path, good_bytes, ftype):
    reason = reject(tmp_path, with_header(good_bytes, ftype=ftype))
    assert f"quantization format version {ftype // 1000}" in reason


def test_header_ftype_disagreeing_with_tensor_types(tmp_path, good_bytes):
    # An f32 file whose header claims f16: the first big matrix is the wrong type.
    reason = reject(tmp_path, with_header(good_bytes, ftype=1))
    assert reason == "tensor model/wte is stored as f32, expected f16"


def test_bad_tensor_type(tmp_path, good_bytes, good_layout):
    start, _ = record_span(good_layout, "model/h1/attn/c_proj/b")
    data = bytearray(good_bytes)
    struct.pack_into("<i", data, start + 8, 5)  # ggml type 5 (the removed q4_2)
    assert reject(tmp_path, bytes(data)) == (
        "tensor model/h1/attn/c_proj/b has unsupported tensor type 5"
    )


def test_tensor_in_wrong_supported_type(tmp_path, good_bytes, good_layout):
    start, _ = record_span(good_layout, "model/ln_f/g")
    data = bytearray(good_bytes)
    struct.pack_into("<i", data, start + 8, 1)
    assert reject(tmp_path, bytes(data)) == "tensor model/ln_f/g is stored as f16, expected f32"


@pytest.mark.parametrize("cut", [1, 1000, 40_000])
def test_truncated_file_reports_missing_bytes(tmp_path, good_bytes, cut):
    reason = reject(tmp_path, good_bytes[:-cut])
    plural = "byte" if cut == 1 else "bytes"
    assert reason == f"file is truncated: {cut:,} {plural} missing"


def test_truncated_inside_vocabulary(tmp_path, good_bytes):
    assert reject(tmp_path, good_bytes[:200]) == "file is truncated inside the vocabulary"


def test_truncated_inside_header(tmp_path, good_bytes):
    assert reject(tmp_path, good_bytes[:10]) == "file is truncated inside the header"


def test_missing_tensor(tmp_path, good_bytes, good_layout):
    start, end = record_span(good_layout, "model/h1/mlp/c_fc/w")
    reason = reject(tmp_path, good_bytes[:start] + good_bytes[end:])
    assert reason == "missing tensor model/h1/mlp/c_fc/w"


def test_file_cut_at_a_tensor_boundary_names_what_is_missing(tmp_path, good_bytes, good_layout):
    start, _ = record_span(good_layout, "model/h1/ln_1/g")
    reason = reject(tmp_path, good_bytes[:start])
    assert reason == "missing tensor model/h1/ln_1/g (and 11 more)"


def test_duplicate_tensor(tmp_path, good_bytes, good_layout):
    start, end = record_span(good_layout, "model/h0/ln_2/b")
    reason = reject(tmp_path, good_bytes + good_bytes[start:end])
    assert reason == "tensor model/h0/ln_2/b appears twice"


def test_unknown_tensor(tmp_path, good_bytes, good_layout):
    start, end = record_span(good_layout, "model/ln_f/b")
    record = good_bytes[start:end].replace(b"model/ln_f/b", b"model/ln_f/x")
    reason = reject(tmp_path, good_bytes[:start] + record + good_bytes[end:])
    assert reason == "unknown tensor model/ln_f/x"


def test_wrong_shape(tmp_path, good_bytes, good_layout):
    start, _ = record_span(good_layout, "model/h0/mlp/c_fc/b")
    data = bytearray(good_bytes)
    struct.pack_into("<i", data, start + 12, 64)
    assert reject(tmp_path, bytes(data)) == (
        "tensor model/h0/mlp/c_fc/b has shape [64], expected [128]"
    )


def test_three_dimensional_tensor(tmp_path, good_bytes, good_layout):
    start, _ = record_span(good_layout, "model/wte")
    data = bytearray(good_bytes)
    struct.pack_into("<i", data, start, 3)
    assert "claims 3 dimensions" in reject(tmp_path, bytes(data))


@pytest.mark.parametrize("garbage", [b"\x00", b"trailing garbage!", b"\xff" * 5000])
def test_trailing_garbage(tmp_path, good_bytes, garbage):
    reason = reject(tmp_path, good_bytes + garbage)
    assert reason == f"it has {len(garbage):,} bytes of unexpected data after the last tensor"


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"n_layer": 100_000}, "n_layer is 100,000, outside the sane range 1 to 256"),
        ({"n_vocab": -5}, "n_vocab is -5, outside the sane range 1 to 1,000,000"),
        ({"n_ctx": 0}, "n_ctx is 0, outside the sane range 1 to 32,768"),
        ({"n_embd": 2**30}, "n_embd is 1,073,741,824, outside the sane range 1 to 16,384"),
        ({"n_head": 5}, "n_embd 32 is not divisible by n_head 5"),
    ],
)
def test_absurd_hparams(tmp_path, good_bytes, fields, expected):
    assert reject(tmp_path, with_header(good_bytes, **fields)) == expected


def test_vocab_count_mismatch(tmp_path, good_bytes):
    data = bytearray(good_bytes)
    struct.pack_into("<i", data, 28, 300)
    assert reject(tmp_path, bytes(data)) == "vocabulary has 300 tokens but the header says 257"


def test_absurd_token_length(tmp_path, good_bytes):
    data = bytearray(good_bytes)
    struct.pack_into("<I", data, 32, 0xFFFFFFF0)
    assert "vocabulary token 0 claims an absurd length" in reject(tmp_path, bytes(data))


def test_header_n_ctx_must_match_the_position_table(tmp_path, good_bytes):
    assert reject(tmp_path, with_header(good_bytes, n_ctx=32)) == (
        "tensor model/wpe has shape [32, 16], expected [32, 32]"
    )


def expected_parameters(n_vocab: int, n_layer: int, n_embd: int, n_ctx: int) -> int:
    e = n_embd
    per_layer = 4 * e + (3 * e * e + 3 * e) + (e * e + e) + (4 * e * e + 4 * e) + (4 * e * e + e)
    return n_vocab * e + n_ctx * e + 2 * e + n_layer * per_layer


def test_facts_of_a_tied_f32_file(tmp_path):
    path = random_gpt2(tmp_path / "f32.bin", vocab=TINY_VOCAB, **TINY)
    facts = validate_model_file(path)
    assert facts == ModelFacts(
        path=path,
        n_vocab=257,
        n_ctx=16,
        n_embd=32,
        n_head=4,
        n_layer=2,
        ftype=0,
        quantization="f32",
        has_lm_head=False,
        parameter_count=expected_parameters(257, 2, 32, 16),
        file_size=path.stat().st_size,
        eos_token_id=256,
        # f32 tensors, and gpt2.cc's own copy of the tied embedding as lm_head
        weight_bytes=4 * expected_parameters(257, 2, 32, 16) + 4 * 257 * 32,
    )


def test_facts_of_an_untied_quantized_file(tmp_path):
    path = random_gpt2(tmp_path / "q.bin", vocab=TINY_VOCAB, ftype="q5_1", untied_head=True, **TINY)
    facts = validate_model_file(path)
    assert (facts.quantization, facts.ftype, facts.has_lm_head) == ("q5_1", 2009, True)
    assert facts.parameter_count == expected_parameters(257, 2, 32, 16) + 257 * 32


def test_no_end_of_text_token(tmp_path):
    vocab = [bytes([b]) for b in range(256)]
    path = random_gpt2(tmp_path / "noeos.bin", vocab=vocab, **TINY)
    assert validate_model_file(path).eos_token_id is None


def sparse_model(path: Path, *, n_layer: int, n_embd: int, n_ctx: int, ftype: str) -> Path:
    """A full-size GPT-2 layout whose weights are holes (a sparse file): enough for the
    validator, which never reads weights, without writing hundreds of megabytes."""
    wtype = weight_type(ftype)
    vocab = gpt2_vocab()
    with open(path, "wb") as out:
        header = (len(vocab), n_ctx, n_embd, n_embd // 64, n_layer, file_ftype(wtype))
        out.write(struct.pack("<I6i", 0x67676D6C, *header))
        out.write(struct.pack("<i", len(vocab)))
        for token in vocab:
            out.write(struct.pack("<I", len(token)) + token)
        shapes = expected_tensors(
            n_vocab=len(vocab), n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, lm_head=False
        )
        for name, ne in shapes.items():
            tensor_type = wtype if is_big_matrix(name) else WEIGHT_TYPES["f32"]
            encoded = name.encode()
            out.write(
                struct.pack(f"<3i{len(ne)}i", len(ne), len(encoded), tensor_type.ggml_type, *ne)
            )
            out.write(encoded)
            out.seek(tensor_type.nbytes(int(np.prod(ne))), 1)
        out.truncate()
    return path


def test_a_full_size_layout_validates_without_reading_its_weights(tmp_path):
    path = sparse_model(tmp_path / "big.bin", n_ctx=1024, ftype="q4_0", n_layer=36, n_embd=1280)
    facts = validate_model_file(path)
    assert facts.parameter_count == expected_parameters(50257, n_ctx=1024, n_layer=36, n_embd=1280)


@pytest.mark.parametrize("ftype", ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"])
def test_k_quant_files_are_recognised(tmp_path, ftype):
    path = sparse_model(tmp_path / "k.bin", n_layer=1, n_embd=256, n_ctx=8, ftype=ftype)
    facts = validate_model_file(path)
    assert facts.quantization == ftype
    assert facts.ftype == 2000 + WEIGHT_TYPES[ftype].ftype


def test_k_quant_rows_must_fit_256_blocks(tmp_path):
    path = sparse_model(tmp_path / "k.bin", n_layer=1, n_embd=128, n_ctx=8, ftype="q4_k")
    with pytest.raises(InvalidModelFile, match="rows of 128, which do not fit q4_k blocks of 256"):
        validate_model_file(path)


# ---- what the validator checks beyond the format (issue 17) -------------------------------

# "abc" is the merge of "ab" and "c"; both before <|endoftext|>, as in GPT-2 (a token after
# it that is no merge counts as one added in fine-tuning).
BPE_VOCAB = [bytes([b]) for b in range(256)] + [b"ab", b"abc", b"<|endoftext|>"]


def flipped_vocabulary(good: bytes) -> bytes:
    """One byte of the token "abc" flipped to ESC: "a\\x1bc" is no merge of two tokens."""
    token = struct.pack("<I", 3) + b"abc"
    assert good.count(token) == 1
    return good.replace(token, struct.pack("<I", 3) + b"a\x1bc")


@pytest.fixture(scope="module")
def bpe_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ggml") / "bpe.bin"
    return random_gpt2(path, vocab=BPE_VOCAB, **TINY).read_bytes()


def test_a_flipped_vocabulary_byte_is_refused_with_the_token_escaped(tmp_path, bpe_bytes):
    ok = tmp_path / "ok.bin"
    ok.write_bytes(bpe_bytes)
    assert read_vocab(ok) == BPE_VOCAB
    reason = reject(tmp_path, flipped_vocabulary(bpe_bytes))
    assert reason.startswith("its vocabulary can't be tokenized exactly: Token 257 ")
    assert "\\x1b" in reason and "\x1b" not in reason


@pytest.mark.parametrize("n_ctx", [1, 5])
def test_a_context_with_no_room_to_generate_is_refused(tmp_path, n_ctx):
    # window.py keeps 4 spare slots and needs one prompt and one new token beside them.
    data = random_gpt2(tmp_path / "small.bin", vocab=TINY_VOCAB, **(TINY | {"n_ctx": n_ctx}))
    assert reject(tmp_path, data.read_bytes()) == (
        f"its context is {n_ctx} token{'s' * (n_ctx != 1)}, too small to generate anything "
        "(at least 6 are needed)"
    )


def test_the_smallest_usable_context_passes(tmp_path):
    path = random_gpt2(tmp_path / "six.bin", vocab=TINY_VOCAB, **(TINY | {"n_ctx": 6}))
    assert validate_model_file(path).n_ctx == 6


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    import threading

    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def validate() -> None:
        try:
            validate_model_file(fifo)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome.append(error)

    worker = threading.Thread(target=validate, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # the open blocks until a writer comes: let it through, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("validating a FIFO blocked")
    assert isinstance(outcome[0], InvalidModelFile)
    assert outcome[0].reason == "it is a named pipe (FIFO), not a regular file"


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a character device"), ("/", "a folder")])
def test_other_non_regular_files_are_refused(path, kind):
    with pytest.raises(InvalidModelFile) as caught:
        validate_model_file(path)
    assert caught.value.reason == f"it is {kind}, not a regular file"


def test_names_from_the_file_are_escaped_in_the_message(tmp_path, good_bytes, good_layout):
    # A tensor renamed with a newline and an ESC (same length, so the file stays aligned),
    # in a file whose own name has both too and isn't UTF-8.
    renamed = good_bytes.replace(b"model/ln_f/g", b"model/\n\x1b_f/g", 1)
    path = tmp_path / os.fsdecode(b"bad\n\x1b[31m\xff.bin")
    path.write_bytes(renamed)
    with pytest.raises(InvalidModelFile) as caught:
        validate_model_file(path)
    message = str(caught.value)
    assert message == (
        "bad\\n\\x1b[31m\\xff.bin is not a usable GPT-2 model: unknown tensor model/\\n\\x1b_f/g"
    )
