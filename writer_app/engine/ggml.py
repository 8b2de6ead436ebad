"""The classic GGML GPT-2 file format, and a validator that checks a file before it is loaded.

ctransformers 0.2.27 loads these files with almost no checks: an unknown ftype aborts the
process, GGUF files crash it, truncated files or files missing a tensor load silently and
give garbage. So every file is validated here first, reading only the header, the
vocabulary and the tensor table (the weights are skipped with seeks, so this is fast).
This is the one validator: the command line's `models info` and `models import`, the
model store, the downloader's verification and every load (session, engine client,
engine process) call read_layout(), so they always agree on what is usable. Besides the
format it checks what would otherwise fail later: that the path is a regular file (a
FIFO would block the open for ever), that the vocabulary is one the exact tokenizer
accepts, and that the context leaves room to generate.

Layout (all little endian, no padding or alignment anywhere; see ctransformers
models/llms/gpt2.cc, which follows ggml's examples/gpt-2):
    uint32 magic 0x67676d6c
    int32  n_vocab, n_ctx, n_embd, n_head, n_layer, ftype   (ftype = 1000*qnt_version + base)
    int32  n_vocab again, then per token: uint32 length + raw bytes
    tensors until end of file: int32 n_dims, int32 name_length, int32 ggml_type,
        int32 ne[n_dims] (ne[0] = the contiguous row length), name bytes, data
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from writer_app.engine.printable import printable
from writer_app.engine.tokenizer import UnsupportedVocabulary, check_vocabulary
from writer_app.engine.window import DEFAULT_MARGIN

GGML_MAGIC = 0x67676D6C
QNT_VERSION_FACTOR = 1000
QNT_VERSION = 2  # the block layouts of the ggml bundled with ctransformers 0.2.27
END_OF_TEXT = b"<|endoftext|>"


@dataclass(frozen=True)
class WeightType:
    name: str  # "q4_0"
    ftype: int  # the file-level ftype base that selects it
    ggml_type: int  # the per-tensor type id
    block_size: int  # elements per block
    block_bytes: int  # bytes per block

    @property
    def quantized(self) -> bool:
        return self.block_size > 1

    def nbytes(self, n_elements: int) -> int:
        return n_elements // self.block_size * self.block_bytes


# Block sizes from ggml.c / k_quants.h as bundled (QK = 32, QK_K = 256).
WEIGHT_TYPES: dict[str, WeightType] = {
    t.name: t
    for t in (
        WeightType("f32", 0, 0, 1, 4),
        WeightType("f16", 1, 1, 1, 2),
        WeightType("q4_0", 2, 2, 32, 18),
        WeightType("q4_1", 3, 3, 32, 20),
        WeightType("q8_0", 7, 8, 32, 34),
        WeightType("q5_0", 8, 6, 32, 22),
        WeightType("q5_1", 9, 7, 32, 24),
        WeightType("q2_k", 10, 10, 256, 84),
        WeightType("q3_k", 11, 11, 256, 110),
        WeightType("q4_k", 12, 12, 256, 144),
        WeightType("q5_k", 13, 13, 256, 176),
        WeightType("q6_k", 14, 14, 256, 210),
    )
}
_BY_FTYPE = {t.ftype: t for t in WEIGHT_TYPES.values()}
_BY_GGML_TYPE = {t.ggml_type: t for t in WEIGHT_TYPES.values()}
F32 = WEIGHT_TYPES["f32"]

# Sanity bounds: far above any real GPT-2 (gpt2-xl: 1600 wide, 48 layers, 50257 tokens).
MAX_VOCAB = 1_000_000
MAX_CTX = 32_768
MAX_EMBD = 16_384
MAX_LAYERS = 256
MAX_TOKEN_BYTES = 1024
# The smallest usable context: fit_window() keeps DEFAULT_MARGIN spare slots and needs
# at least one prompt token and one new token beside them (prompt_budget() refuses
# n_ctx <= margin + 1), so a context of 5 tokens or fewer can never generate anything.
MIN_CTX = DEFAULT_MARGIN + 2

def weight_type(name: str) -> WeightType:
    try:
        return WEIGHT_TYPES[name.lower()]
    except KeyError:
        known = ", ".join(WEIGHT_TYPES)
        raise ValueError(f"unknown weight type {name!r}; known types: {known}") from None


def file_ftype(weights: WeightType) -> int:
    """The ftype number to write: quantized files carry the quantization version."""
    return weights.ftype + (QNT_VERSION * QNT_VERSION_FACTOR if weights.quantized else 0)


def is_big_matrix(name: str) -> bool:
    """The tensors stored in the file's weight type; everything else is f32."""
    return name in ("model/wte", "model/lm_head") or name.endswith(
        ("/attn/c_attn/w", "/attn/c_proj/w", "/mlp/c_fc/w", "/mlp/c_proj/w")
    )


def expected_tensors(
    *, n_vocab: int, n_ctx: int, n_embd: int, n_layer: int, lm_head: bool
) -> dict[str, tuple[int, ...]]:
    """Tensor name -> ne (ggml order, ne[0] first), exactly as gpt2.cc allocates them."""
    e = n_embd
    shapes: dict[str, tuple[int, ...]] = {
        "model/ln_f/g": (e,),
        "model/ln_f/b": (e,),
        "model/wte": (e, n_vocab),
        "model/wpe": (e, n_ctx),
    }
    if lm_head:
        shapes["model/lm_head"] = (e, n_vocab)
    for i in range(n_layer):
        p = f"model/h{i}/"
        shapes.update(
            {
                p + "ln_1/g": (e,),
                p + "ln_1/b": (e,),
                p + "ln_2/g": (e,),
                p + "ln_2/b": (e,),
                p + "attn/c_attn/w": (e, 3 * e),
                p + "attn/c_attn/b": (3 * e,),
                p + "attn/c_proj/w": (e, e),
                p + "attn/c_proj/b": (e,),
                p + "mlp/c_fc/w": (e, 4 * e),
                p + "mlp/c_fc/b": (4 * e,),
                p + "mlp/c_proj/w": (4 * e, e),
                p + "mlp/c_proj/b": (e,),
            }
        )
    return shapes


class InvalidModelFile(Exception):
    """A file that is not a GGML GPT-2 model ctransformers can safely load."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        # Names in the reason (tensors, tokens) come from the file: escaped, the message
        # stays one line and can't send control sequences to a terminal.
        reason = printable(reason)
        super().__init__(f"{printable(Path(path).name)} is not a usable GPT-2 model: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class ModelFacts:
    path: Path
    n_vocab: int
    n_ctx: int
    n_embd: int
    n_head: int
    n_layer: int
    ftype: int  # as stored, including the quantization version
    quantization: str  # "f32", "f16", "q4_0", ...
    has_lm_head: bool
    parameter_count: int
    file_size: int
    eos_token_id: int | None
    weight_bytes: int = 0  # in memory once loaded: the tensors, plus a copied lm_head if tied


@dataclass(frozen=True)
class TensorEntry:
    name: str
    ne: tuple[int, ...]
    weight_type: WeightType
    offset: int  # of the data, from the start of the file
    nbytes: int


@dataclass(frozen=True)
class _Header:
    n_vocab: int
    n_ctx: int
    n_embd: int
    n_head: int
    n_layer: int
    ftype: int


class _Reader:
    """Reads fixed-size fields, turning a short read into a clear truncation error."""

    def __init__(self, path: Path, stream: BinaryIO, file_size: int) -> None:
        self.path, self.stream, self.file_size = path, stream, file_size

    def fail(self, reason: str) -> InvalidModelFile:
        return InvalidModelFile(self.path, reason)

    def read(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise self.fail(f"file is truncated inside the {what}")
        return data

    def ints(self, count: int, what: str, fmt: str = "i") -> tuple[int, ...]:
        return struct.unpack(f"<{count}{fmt}", self.read(4 * count, what))


def _read_header(r: _Reader) -> _Header:
    head = r.stream.read(4)
    if head == b"GGUF":
        raise r.fail("GGUF files are not supported; use a GGML GPT-2 file")
    if len(head) < 4 or struct.unpack("<I", head)[0] != GGML_MAGIC:
        raise r.fail("it does not start with the GGML magic number (not a GGML file)")
    header = _Header(*r.ints(6, "header"))
    bounds = {
        "n_vocab": MAX_VOCAB,
        "n_ctx": MAX_CTX,
        "n_embd": MAX_EMBD,
        "n_head": MAX_EMBD,
        "n_layer": MAX_LAYERS,
    }
    for field, high in bounds.items():
        value = getattr(header, field)
        if not 1 <= value <= high:
            raise r.fail(f"{field} is {value:,}, outside the sane range 1 to {high:,}")
    if header.n_ctx < MIN_CTX:
        raise r.fail(
            f"its context is {header.n_ctx} token{'s' * (header.n_ctx != 1)}, too small to "
            f"generate anything (at least {MIN_CTX} are needed)"
        )
    if header.n_embd % header.n_head:
        raise r.fail(f"n_embd {header.n_embd} is not divisible by n_head {header.n_head}")
    return header


def _weight_type_of(r: _Reader, ftype: int) -> WeightType:
    version, base = divmod(ftype, QNT_VERSION_FACTOR)
    wtype = _BY_FTYPE.get(base) if ftype >= 0 else None
    if wtype is None:
        raise r.fail(f"unsupported quantization type {ftype}")
    if wtype.quantized and version != QNT_VERSION:
        raise r.fail(
            f"its {wtype.name} weights use quantization format version {version}, "
            f"but only version {QNT_VERSION} is supported; re-convert the model"
        )
    return wtype


def _read_vocab(r: _Reader, n_vocab: int) -> list[bytes]:
    (count,) = r.ints(1, "vocabulary")
    if count != n_vocab:
        raise r.fail(f"vocabulary has {count:,} tokens but the header says {n_vocab:,}")
    tokens = []
    for i in range(count):
        (length,) = r.ints(1, "vocabulary", "I")
        if length > MAX_TOKEN_BYTES:
            raise r.fail(f"vocabulary token {i} claims an absurd length of {length:,} bytes")
        tokens.append(r.read(length, "vocabulary"))
    return tokens


def _read_record(r: _Reader) -> tuple[str, tuple[int, ...], int]:
    """One tensor record's header: name, ne and the ggml type id."""
    n_dims, name_length, type_id = r.ints(3, "tensor table")
    if n_dims not in (1, 2):
        raise r.fail(f"a tensor record claims {n_dims} dimensions (GPT-2 uses 1 or 2)")
    if not 1 <= name_length <= 256:
        raise r.fail(f"a tensor record claims a name of {name_length:,} bytes")
    ne = r.ints(n_dims, "tensor table")
    name = r.read(name_length, "tensor table").decode("utf-8", errors="replace")
    return name, ne, type_id


def _check_record(
    r: _Reader,
    name: str,
    ne: tuple[int, ...],
    type_id: int,
    *,
    want_shape: tuple[int, ...] | None,
    want_type: WeightType,
    seen: set[str],
) -> WeightType:
    if want_shape is None:
        raise r.fail(f"unknown tensor {name}")
    if name in seen:
        raise r.fail(f"tensor {name} appears twice")
    if ne != want_shape:
        raise r.fail(f"tensor {name} has shape {list(ne)}, expected {list(want_shape)}")
    tensor_type = _BY_GGML_TYPE.get(type_id)
    if tensor_type is None:
        raise r.fail(f"tensor {name} has unsupported tensor type {type_id}")
    if tensor_type is not want_type:
        raise r.fail(f"tensor {name} is stored as {tensor_type.name}, expected {want_type.name}")
    if ne[0] % tensor_type.block_size:
        raise r.fail(
            f"tensor {name} has rows of {ne[0]}, which do not fit {tensor_type.name} "
            f"blocks of {tensor_type.block_size}"
        )
    return tensor_type


def _read_tensor_table(r: _Reader, header: _Header, wtype: WeightType) -> list[TensorEntry]:
    """Read and check every tensor record, seeking past the data."""
    expected = expected_tensors(
        n_vocab=header.n_vocab,
        n_ctx=header.n_ctx,
        n_embd=header.n_embd,
        n_layer=header.n_layer,
        lm_head=True,
    )
    required = set(expected) - {"model/lm_head"}
    entries: list[TensorEntry] = []
    seen: set[str] = set()
    while r.stream.tell() < r.file_size:
        record_start = r.stream.tell()
        try:
            name, ne, type_id = _read_record(r)
        except InvalidModelFile:
            if required <= seen:
                raise _leftover_data(r, record_start) from None
            raise
        if name not in expected and required <= seen:
            raise _leftover_data(r, record_start)
        want_type = wtype if is_big_matrix(name) else F32
        tensor_type = _check_record(
            r, name, ne, type_id, want_shape=expected.get(name), want_type=want_type, seen=seen
        )
        seen.add(name)
        nbytes = tensor_type.nbytes(_count(ne))
        entries.append(TensorEntry(name, ne, tensor_type, r.stream.tell(), nbytes))
        end = r.stream.tell() + nbytes
        if end > r.file_size:
            # Count the rest of this tensor plus every required tensor still to come.
            still_missing = sum(
                _record_bytes(n, expected[n], wtype if is_big_matrix(n) else F32)
                for n in required - seen
            )
            missing = end - r.file_size + still_missing
            raise r.fail(f"file is truncated: {missing:,} byte{'s' * (missing != 1)} missing")
        r.stream.seek(end)
    missing_names = [name for name in expected if name in required and name not in seen]
    if missing_names:
        more = f" (and {len(missing_names) - 1} more)" if len(missing_names) > 1 else ""
        raise r.fail(f"missing tensor {missing_names[0]}{more}")
    return entries


def _leftover_data(r: _Reader, start: int) -> InvalidModelFile:
    """Every tensor is already present, so what follows is not a tensor."""
    return r.fail(f"it has {r.file_size - start:,} bytes of unexpected data after the last tensor")


def _record_bytes(name: str, ne: tuple[int, ...], tensor_type: WeightType) -> int:
    return 4 * (3 + len(ne)) + len(name.encode()) + tensor_type.nbytes(_count(ne))


@dataclass(frozen=True)
class ModelLayout:
    """Everything in a file except the weights, plus where each tensor's data lies."""

    facts: ModelFacts
    vocab: list[bytes]
    tensors: dict[str, TensorEntry]


def read_layout(path: str | os.PathLike[str]) -> ModelLayout:
    """Validate a file and return its header, vocabulary and tensor table.

    Raises InvalidModelFile (or OSError when the file cannot be read at all).
    """
    path = Path(path)
    _require_regular_file(path, os.stat(path).st_mode)
    # Non-blocking, so a FIFO swapped in after the check can't hang the open either.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with open(os.open(path, flags), "rb") as stream:
        status = os.fstat(stream.fileno())
        _require_regular_file(path, status.st_mode)
        file_size = status.st_size
        r = _Reader(path, stream, file_size)
        header = _read_header(r)
        wtype = _weight_type_of(r, header.ftype)
        vocab = _read_vocab(r, header.n_vocab)
        entries = _read_tensor_table(r, header, wtype)
    try:
        check_vocabulary(vocab)
    except UnsupportedVocabulary as error:
        raise InvalidModelFile(path, f"its vocabulary can't be tokenized exactly: {error}") from None
    has_lm_head = any(e.name == "model/lm_head" for e in entries)
    parameters = sum(_count(e.ne) for e in entries)
    weight_bytes = sum(e.nbytes for e in entries)
    # gpt2.cc always allocates a separate lm_head, copying wte when the file has none.
    if not has_lm_head:
        weight_bytes += wtype.nbytes(header.n_vocab * header.n_embd)
    try:
        eos: int | None = vocab.index(END_OF_TEXT)
    except ValueError:
        eos = None
    facts = ModelFacts(
        path=path,
        n_vocab=header.n_vocab,
        n_ctx=header.n_ctx,
        n_embd=header.n_embd,
        n_head=header.n_head,
        n_layer=header.n_layer,
        ftype=header.ftype,
        quantization=wtype.name,
        has_lm_head=has_lm_head,
        parameter_count=parameters,
        file_size=file_size,
        eos_token_id=eos,
        weight_bytes=weight_bytes,
    )
    return ModelLayout(facts, vocab, {e.name: e for e in entries})


def _require_regular_file(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    raise InvalidModelFile(path, f"it is {kind}, not a regular file")


def path_for_native_code(path: str | os.PathLike[str]) -> str:
    """The path as a str that native code receives as the file system's own bytes.

    ctransformers passes `model_path.encode()` (UTF-8) to C, which fails for a file name
    that is not UTF-8 (Python holds its bytes as lone surrogates); this str encodes to
    os.fsencode()'s bytes instead, and is an ordinary str (a valid name) everywhere else.
    """
    return _FileSystemPath(os.fspath(path))


class _FileSystemPath(str):
    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return os.fsencode(str(self))


def validate_model_file(path: str | os.PathLike[str]) -> ModelFacts:
    """Check that ctransformers can safely load `path`; raise InvalidModelFile if not."""
    return read_layout(path).facts


def read_vocab(path: str | os.PathLike[str]) -> list[bytes]:
    """The validated file's tokens as raw bytes, in id order."""
    return read_layout(path).vocab


def _count(ne: tuple[int, ...]) -> int:
    total = 1
    for n in ne:
        total *= n
    return total
