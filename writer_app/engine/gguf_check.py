"""The GGUF validator: every GGUF file is checked here before llama.cpp sees it.

llama.cpp trusts a file's tensor table and metadata far enough that a truncated or
corrupted file can crash the process or compute garbage, so, as for GGML files
(engine/ggml.py), the header, the metadata, the tensor table and every tensor's place in
the file are checked first, and the answer is the same ModelFacts (and the same
InvalidModelFile, one clear line) the GGML validator gives.

Layout (GGUF v2/v3, little endian; see ggml/docs/gguf.md):
    "GGUF", uint32 version, uint64 n_tensors, uint64 n_kv
    n_kv times: string key, uint32 value type, value
    n_tensors times: string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml type,
        uint64 offset (from the start of the data section, aligned)
    padding to general.alignment (32), then the data section
where a string is uint64 length + bytes. Only the GPT-2 architecture is accepted.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from writer_app.engine.ggml import (
    END_OF_TEXT,
    F32,
    MAX_CTX,
    MAX_EMBD,
    MAX_LAYERS,
    MAX_TOKEN_BYTES,
    MAX_VOCAB,
    WEIGHT_TYPES,
    InvalidModelFile,
    ModelFacts,
    TensorEntry,
    WeightType,
    expected_tensors,
)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
ARCHITECTURE = "gpt2"
MAX_TENSORS = 4 * MAX_LAYERS * 12
MAX_KV = 10_000
MAX_STRING = 1 << 20  # a key or a value; the chat templates of big models stay far below
TOKEN_TYPE_CONTROL = 3
_BY_GGML_TYPE = {t.ggml_type: t for t in WEIGHT_TYPES.values()}

# value type -> struct format of a scalar (strings and arrays are handled apart)
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


def gguf_tensor_shapes(
    *, n_vocab: int, n_ctx: int, n_embd: int, n_layer: int, lm_head: bool
) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name -> ne (ne[0] first), as llama.cpp's gpt2 architecture loads them.

    The same shapes as the GGML file's (ggml's gpt-2 example already stores the
    Conv1D weights transposed, as llama.cpp wants them), under llama.cpp's names.
    """
    ggml_shapes = expected_tensors(
        n_vocab=n_vocab, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, lm_head=lm_head
    )
    return {gguf_name(name): ne for name, ne in ggml_shapes.items()}


def gguf_name(ggml_name: str) -> str:
    """llama.cpp's name for a tensor of a GGML GPT-2 file ("model/h3/mlp/c_fc/w")."""
    fixed = {
        "model/wte": "token_embd.weight",
        "model/wpe": "position_embd.weight",
        "model/lm_head": "output.weight",
        "model/ln_f/g": "output_norm.weight",
        "model/ln_f/b": "output_norm.bias",
    }
    if ggml_name in fixed:
        return fixed[ggml_name]
    layer, rest = ggml_name.removeprefix("model/h").split("/", 1)
    part, kind = rest.rsplit("/", 1)
    names = {
        "ln_1": "attn_norm",
        "ln_2": "ffn_norm",
        "attn/c_attn": "attn_qkv",
        "attn/c_proj": "attn_output",
        "mlp/c_fc": "ffn_up",
        "mlp/c_proj": "ffn_down",
    }
    suffix = {"g": "weight", "w": "weight", "b": "bias"}[kind]
    return f"blk.{int(layer)}.{names[part]}.{suffix}"


# GPT-2's byte-level BPE writes every byte as a printable character; GGUF token strings
# are in that spelling.
def _byte_to_unicode() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in table)
    table.update({b: chr(256 + i) for i, b in enumerate(shifted)})
    return table


BYTE_TO_UNICODE = _byte_to_unicode()
UNICODE_TO_BYTE = {char: byte for byte, char in BYTE_TO_UNICODE.items()}


def token_string(token: bytes) -> str:
    return "".join(BYTE_TO_UNICODE[b] for b in token)


def token_bytes(text: str) -> bytes | None:
    """The raw bytes of a byte-level token string; None if it is not one (a special token
    spelled in plain text, say)."""
    try:
        return bytes(UNICODE_TO_BYTE[char] for char in text)
    except KeyError:
        return None


# A tensor's table entry is the same record in both formats.
GgufTensor = TensorEntry


@dataclass(frozen=True)
class GgufLayout:
    facts: ModelFacts
    vocab: list[bytes]
    tensors: dict[str, GgufTensor]
    metadata: dict[str, object]  # scalars and strings only (arrays are left out)


class _Cursor:
    """Reads fields from the mapped file; reading past its end is a truncation error."""

    def __init__(self, path: Path, data: mmap.mmap | bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def fail(self, reason: str) -> InvalidModelFile:
        return InvalidModelFile(self.path, reason)

    def take(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise self.fail(f"file is truncated inside the {what}")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def one(self, fmt: str, what: str) -> object:
        return self.take(fmt, what)[0]

    def string(self, what: str) -> str:
        (length,) = self.take("Q", what)
        if length > MAX_STRING:
            raise self.fail(f"a string in the {what} claims an absurd length of {length:,} bytes")
        if self.pos + length > len(self.data):
            raise self.fail(f"file is truncated inside the {what}")
        raw = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str) -> object:
        if vtype in _SCALARS:
            return self.one(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            item_type, count = self.take("IQ", what)
            if count > MAX_VOCAB * 4:
                raise self.fail(f"an array in the {what} claims {count:,} items")
            if item_type in _SCALARS:
                size = struct.calcsize("<" + _SCALARS[item_type])
                if self.pos + size * count > len(self.data):
                    raise self.fail(f"file is truncated inside the {what}")
                items = struct.unpack_from(f"<{count}{_SCALARS[item_type]}", self.data, self.pos)
                self.pos += size * count
                return list(items)
            if item_type == _STRING:
                return [self.string(what) for _ in range(count)]
            raise self.fail(f"the {what} holds an array of unsupported type {item_type}")
        raise self.fail(f"the {what} holds a value of unknown type {vtype}")


def read_gguf_layout(path: str | os.PathLike[str]) -> GgufLayout:
    """Validate a GGUF GPT-2 file; its facts, vocabulary and tensor table.

    Raises InvalidModelFile (or OSError when the file cannot be read at all).
    """
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        if file_size == 0:
            raise InvalidModelFile(path, "the file is empty")
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _read(_Cursor(path, data), path, file_size)


def validate_gguf_file(path: str | os.PathLike[str]) -> ModelFacts:
    return read_gguf_layout(path).facts


def is_gguf(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as stream:
        return stream.read(4) == GGUF_MAGIC


def _read(c: _Cursor, path: Path, file_size: int) -> GgufLayout:
    if bytes(c.data[:4]) != GGUF_MAGIC:
        raise c.fail("it does not start with the GGUF magic number (not a GGUF file)")
    c.pos = 4
    version, n_tensors, n_kv = c.take("IQQ", "header")
    if version not in SUPPORTED_VERSIONS:
        raise c.fail(f"GGUF version {version} is not supported (only 2 and 3)")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise c.fail(f"the header claims {n_tensors:,} tensors and {n_kv:,} metadata keys")
    metadata: dict[str, object] = {}
    arrays: dict[str, list] = {}
    for _ in range(n_kv):
        key = c.string("metadata")
        (vtype,) = c.take("I", "metadata")
        value = c.value(vtype, "metadata")
        (arrays if isinstance(value, list) else metadata)[key] = value
    hp = _hyperparameters(c, metadata)
    vocab = _vocabulary(c, arrays)
    raw_tensors = [_tensor_info(c) for _ in range(n_tensors)]
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise c.fail(f"general.alignment is {alignment!r}, not a power of two")
    data_start = -(-c.pos // alignment) * alignment
    tensors = _check_tensors(c, raw_tensors, hp, data_start, alignment, file_size)
    facts = _facts(path, file_size, hp, tensors, vocab, metadata)
    return GgufLayout(facts, vocab, tensors, metadata)


def _hyperparameters(c: _Cursor, metadata: dict[str, object]) -> dict[str, int]:
    arch = metadata.get("general.architecture")
    if arch != ARCHITECTURE:
        raise c.fail(f"its architecture is {arch!r}, not GPT-2 ({ARCHITECTURE!r})")
    fields = {
        "n_ctx": ("context_length", MAX_CTX),
        "n_embd": ("embedding_length", MAX_EMBD),
        "n_head": ("attention.head_count", MAX_EMBD),
        "n_layer": ("block_count", MAX_LAYERS),
        "n_ff": ("feed_forward_length", 4 * MAX_EMBD),
    }
    hp: dict[str, int] = {}
    for field, (key, high) in fields.items():
        value = metadata.get(f"gpt2.{key}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise c.fail(f"the metadata has no gpt2.{key}")
        if not 1 <= value <= high:
            raise c.fail(f"{field} is {value:,}, outside the sane range 1 to {high:,}")
        hp[field] = value
    if hp["n_embd"] % hp["n_head"]:
        raise c.fail(f"n_embd {hp['n_embd']} is not divisible by n_head {hp['n_head']}")
    if hp["n_ff"] != 4 * hp["n_embd"]:
        raise c.fail(f"feed_forward_length is {hp['n_ff']}, not 4 x n_embd as in GPT-2")
    return hp


def _vocabulary(c: _Cursor, arrays: dict[str, list]) -> list[bytes]:
    tokens = arrays.get("tokenizer.ggml.tokens")
    if not tokens:
        raise c.fail("the metadata has no vocabulary (tokenizer.ggml.tokens)")
    if len(tokens) > MAX_VOCAB:
        raise c.fail(f"the vocabulary has {len(tokens):,} tokens, more than {MAX_VOCAB:,}")
    types = arrays.get("tokenizer.ggml.token_type") or []
    vocab: list[bytes] = []
    for i, text in enumerate(tokens):
        raw = token_bytes(text)
        if raw is None or (i < len(types) and types[i] == TOKEN_TYPE_CONTROL):
            raw = text.encode("utf-8")  # special tokens are stored as plain text
        if len(raw) > MAX_TOKEN_BYTES:
            raise c.fail(f"vocabulary token {i} is an absurd {len(raw):,} bytes long")
        vocab.append(raw)
    return vocab


def _tensor_info(c: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
    name = c.string("tensor table")
    (n_dims,) = c.take("I", "tensor table")
    if n_dims not in (1, 2):
        raise c.fail(f"tensor {name} claims {n_dims} dimensions (GPT-2 uses 1 or 2)")
    ne = c.take(f"{n_dims}Q", "tensor table")
    type_id, offset = c.take("IQ", "tensor table")
    return name, tuple(ne), type_id, offset


def _check_tensors(
    c: _Cursor,
    raw: list[tuple[str, tuple[int, ...], int, int]],
    hp: dict[str, int],
    data_start: int,
    alignment: int,
    file_size: int,
) -> dict[str, GgufTensor]:
    names = {name for name, *_ in raw}
    n_vocab = next(
        (ne[1] for name, ne, *_ in raw if name == "token_embd.weight" and len(ne) == 2), 0
    )
    expected = gguf_tensor_shapes(
        n_vocab=n_vocab,
        n_ctx=hp["n_ctx"],
        n_embd=hp["n_embd"],
        n_layer=hp["n_layer"],
        lm_head="output.weight" in names,
    )
    tensors: dict[str, GgufTensor] = {}
    for name, ne, type_id, offset in raw:
        want = expected.get(name)
        if want is None:
            raise c.fail(f"unknown tensor {name}")
        if name in tensors:
            raise c.fail(f"tensor {name} appears twice")
        if ne != want:
            raise c.fail(f"tensor {name} has shape {list(ne)}, expected {list(want)}")
        wtype = _BY_GGML_TYPE.get(type_id)
        if wtype is None:
            raise c.fail(f"tensor {name} has unsupported tensor type {type_id}")
        if len(ne) == 1 and wtype is not F32:
            raise c.fail(f"tensor {name} is stored as {wtype.name}, expected f32")
        if ne[0] % wtype.block_size:
            raise c.fail(
                f"tensor {name} has rows of {ne[0]}, which do not fit {wtype.name} "
                f"blocks of {wtype.block_size}"
            )
        if offset % alignment:
            raise c.fail(f"tensor {name} starts at an unaligned offset {offset:,}")
        nbytes = wtype.nbytes(ne[0] * (ne[1] if len(ne) > 1 else 1))
        start = data_start + offset
        if start + nbytes > file_size:
            missing = start + nbytes - file_size
            raise c.fail(f"file is truncated: tensor {name} lacks {missing:,} bytes")
        tensors[name] = GgufTensor(name, ne, wtype, start, nbytes)
    missing = [name for name in expected if name not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise c.fail(f"missing tensor {missing[0]}{more}")
    _check_overlaps(c, tensors)
    return tensors


def _check_overlaps(c: _Cursor, tensors: dict[str, GgufTensor]) -> None:
    spans = sorted(tensors.values(), key=lambda t: t.offset)
    for before, after in zip(spans, spans[1:], strict=False):
        if before.offset + before.nbytes > after.offset:
            raise c.fail(f"tensors {before.name} and {after.name} overlap in the file")


def _facts(
    path: Path,
    file_size: int,
    hp: dict[str, int],
    tensors: dict[str, GgufTensor],
    vocab: list[bytes],
    metadata: dict[str, object],
) -> ModelFacts:
    n_vocab = tensors["token_embd.weight"].ne[1]
    if len(vocab) != n_vocab:
        raise InvalidModelFile(
            path, f"vocabulary has {len(vocab):,} tokens but the embedding has {n_vocab:,} rows"
        )
    weight_bytes = sum(t.nbytes for t in tensors.values())  # llama.cpp shares a tied head
    eos = metadata.get("tokenizer.ggml.eos_token_id")
    if not isinstance(eos, int) or not 0 <= eos < n_vocab:
        eos = vocab.index(END_OF_TEXT) if END_OF_TEXT in vocab else None
    quantization = _main_type(tensors)
    file_type = metadata.get("general.file_type")
    return ModelFacts(
        path=path,
        n_vocab=n_vocab,
        n_ctx=hp["n_ctx"],
        n_embd=hp["n_embd"],
        n_head=hp["n_head"],
        n_layer=hp["n_layer"],
        ftype=file_type if isinstance(file_type, int) else quantization.ftype,
        quantization=quantization.name,
        has_lm_head="output.weight" in tensors,
        parameter_count=sum(_count(t.ne) for t in tensors.values()),
        file_size=file_size,
        eos_token_id=eos,
        weight_bytes=weight_bytes,
    )


def _main_type(tensors: dict[str, GgufTensor]) -> WeightType:
    """The weight type of the big matrices (the one most of their bytes are in)."""
    totals: dict[str, int] = {}
    for t in _matrices(tensors):
        totals[t.weight_type.name] = totals.get(t.weight_type.name, 0) + t.nbytes
    return WEIGHT_TYPES[max(totals, key=totals.__getitem__)]


def _matrices(tensors: dict[str, GgufTensor]) -> Iterator[GgufTensor]:
    return (t for t in tensors.values() if len(t.ne) == 2 and t.name != "position_embd.weight")


def _count(ne: tuple[int, ...]) -> int:
    total = 1
    for n in ne:
        total *= n
    return total
