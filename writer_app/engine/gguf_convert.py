"""GGML -> GGUF: a GGML GPT-2 file rewritten for llama.cpp, weights byte-copied.

GGUF files from elsewhere are rewritten the same way (tensors byte-copied, the
vocabulary re-marked; see TOKEN_TYPE_RAW_PIECE), so llama.cpp streams every token.

The tensors keep their bytes (no requantization: the block layouts of ggml's quantization
version 2 are the ones GGUF uses, and ggml's gpt-2 example already stores the Conv1D
weights transposed as llama.cpp wants them); only the names change (gguf_check.gguf_name).
The file is written with the `gguf` package's GGUFWriter (llama.cpp's own writer), with
GPT-2 metadata and a GPT-2 byte-level BPE tokenizer built from the file's vocabulary.
llama.cpp refuses a BPE vocabulary without merges even though this app never lets it
tokenize (prompts arrive as token ids), so the merges are recovered from the vocabulary
(see derive_merges).

The result is cached beside the model, named after the source's cache key (source_key):
size + modification time + a hash of the first MiB (header and vocabulary). A full
content hash would read the whole file on every load (about a second for gpt2-large);
any rewrite of the file changes its modification time, and the header hash catches a
copy that kept the time of a different file of the same size.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from writer_app.engine.ggml import (
    END_OF_TEXT,
    InvalidModelFile,
    ModelFacts,
    ModelLayout,
    read_layout,
)
from writer_app.engine.gguf_check import (
    TOKEN_TYPE_CONTROL,
    GgufLayout,
    gguf_name,
    is_gguf,
    read_gguf_layout,
    token_string,
)

CancelCheck = Callable[[], bool]
AddTokenizer = Callable[[object, Sequence[bytes], "int | None"], None]  # (GGUFWriter, vocab, eos id)
GGUF_SUFFIX = ".gguf"
KEY_BYTES = 1 << 20  # hashed from the start of the source: header and vocabulary
# Metadata, tensor table and alignment padding on top of the weights: the merges and
# tokens of a 50k vocabulary take ~1.5 MB; the rest is a margin for the file system.
SPACE_MARGIN_BYTES = 16 * 1024 * 1024
LAYER_NORM_EPS = 1e-5
# Every ordinary token is written as llama.cpp's USER_DEFINED type (4), not NORMAL (1):
# llama.cpp then gives back a token's piece as its stored (byte-level, always valid
# UTF-8) spelling instead of its raw bytes. With raw bytes, llama-server holds back a
# token that ends inside a UTF-8 character and never streams it (its id and
# probabilities are lost; emoji and CJK lose tokens). The app decodes text from its own
# vocabulary, so llama.cpp's pieces are never shown; llama.cpp's own tokenizer (which the
# app never uses) would treat these tokens as special, so the file is for this app only,
# marked with RAW_PIECES_KEY.
TOKEN_TYPE_RAW_PIECE = 4
RAW_PIECES_KEY = "writer_app.raw_pieces"
# llama.cpp's file types for the GGML ftype bases (k-quants: the "S" variants)
_LLAMA_FILE_TYPE = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
    "q2_k": 10, "q3_k": 11, "q4_k": 14, "q5_k": 16, "q6_k": 18,
}  # fmt: skip


class ConversionCancelled(Exception):
    """The cancel check asked to stop; nothing was left on disk."""


class NotEnoughSpace(OSError):
    """The folder beside the model cannot hold the converted file."""


def source_key(path: str | os.PathLike[str]) -> str:
    """16 hex digits that change whenever the source file does (see the module docs)."""
    stat = os.stat(path)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    with open(path, "rb") as stream:
        digest.update(stream.read(KEY_BYTES))
    return digest.hexdigest()


def converted_path(source: str | os.PathLike[str]) -> Path:
    """Where the converted copy of `source` lives: beside it, named after its key."""
    source = Path(source)
    return source.with_name(f"{source.name}.{source_key(source)}{GGUF_SUFFIX}")


def gguf_for(source: str | os.PathLike[str], should_cancel: CancelCheck | None = None) -> Path:
    """The GGUF file llama.cpp should load for a GGML or GGUF GPT-2 file: the file itself
    if it is a GGUF this module wrote, else its cached conversion if current, else a new
    one (older conversions of the same file are removed). Raises InvalidModelFile for a
    bad source, NotEnoughSpace, ConversionCancelled or OSError."""
    source = Path(source)
    if is_gguf(source):
        imported = read_gguf_layout(source)  # raises InvalidModelFile first
        if imported.metadata.get(RAW_PIECES_KEY) is True:
            return source
    target = converted_path(source)
    if target.exists():
        try:
            read_gguf_layout(target)
            return target
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            target.unlink(missing_ok=True)
    plan = _plan_from_gguf(imported) if is_gguf(source) else plan_from_ggml(read_layout(source))
    _check_space(target.parent, sum(t.nbytes for t in plan.tensors) + 64 * len(plan.tensors))
    write_atomically(target, lambda tmp: write_gguf(plan, tmp, should_cancel))
    for stale in source.parent.glob(f"{source.name}.*{GGUF_SUFFIX}"):
        if stale != target and len(stale.name) == len(target.name):
            stale.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class _Tensor:
    name: str  # llama.cpp's
    ne: tuple[int, ...]
    ggml_type: int
    offset: int  # in the source file
    nbytes: int


@dataclass(frozen=True)
class ConversionPlan:
    """What to write: the source's facts, vocabulary and tensors (where to copy from)."""

    facts: ModelFacts
    vocab: list[bytes]
    tensors: list[_Tensor]


def plan_from_ggml(layout: ModelLayout) -> ConversionPlan:
    tensors = [
        _Tensor(gguf_name(e.name), e.ne, e.weight_type.ggml_type, e.offset, e.nbytes)
        for e in layout.tensors.values()
    ]
    return ConversionPlan(layout.facts, layout.vocab, tensors)


def _plan_from_gguf(layout: GgufLayout) -> ConversionPlan:
    tensors = [
        _Tensor(t.name, t.ne, t.weight_type.ggml_type, t.offset, t.nbytes)
        for t in sorted(layout.tensors.values(), key=lambda t: t.offset)
    ]
    return ConversionPlan(layout.facts, layout.vocab, tensors)


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the target's folder, then rename it into place:
    a reader sees the whole file or none, and a failure or cancel leaves nothing.
    (Kept to this one function so the shared safe-file module can replace it.)"""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN_BYTES:
        raise NotEnoughSpace(
            f"Converting the model for llama.cpp needs {_mib(needed + SPACE_MARGIN_BYTES)} "
            f"free in {folder}, but only {_mib(free)} is free."
        )


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MiB"


def write_gguf(
    plan: ConversionPlan,
    target: Path,
    should_cancel: CancelCheck | None = None,
    *,
    name: str | None = None,
    add_tokenizer: AddTokenizer | None = None,
) -> None:
    """Write `plan` as a GPT-2 GGUF file at `target` (not atomically: see gguf_for).
    add_tokenizer writes the tokenizer metadata: by default this app's (raw pieces, merges
    derived from the vocabulary); the remote benchmark's server passes GPT-2's own."""
    import gguf  # only conversions need it (and its import takes a moment)

    facts = plan.facts
    writer = gguf.GGUFWriter(target, "gpt2")
    writer.add_name(name or facts.path.stem)
    writer.add_context_length(facts.n_ctx)
    writer.add_embedding_length(facts.n_embd)
    writer.add_feed_forward_length(4 * facts.n_embd)
    writer.add_block_count(facts.n_layer)
    writer.add_head_count(facts.n_head)
    writer.add_layer_norm_eps(LAYER_NORM_EPS)
    writer.add_file_type(_LLAMA_FILE_TYPE[facts.quantization])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    (add_tokenizer or add_app_tokenizer)(writer, plan.vocab, facts.eos_token_id)
    for tensor in plan.tensors:
        writer.add_tensor_info(
            tensor.name,
            tuple(reversed(tensor.ne)),  # numpy order; the writer stores it reversed again
            np.dtype(np.float32),
            tensor.nbytes,
            raw_dtype=gguf.GGMLQuantizationType(tensor.ggml_type),
        )
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        # Read a tensor at a time rather than map the file: a mapping's pages count as
        # this process's memory, and the app converts beside the engine that still holds
        # the model in use (the whole gpt2-large file would sit in it by the end). One
        # buffer, the largest tensor's size, is read into for each: freed in one piece at
        # the end, where a fresh bytes object per tensor left the engine process ~14 MiB
        # larger after converting a 12-layer model (the allocator kept the freed pieces).
        buffer = memoryview(bytearray(max((t.nbytes for t in plan.tensors), default=0)))
        with open(facts.path, "rb") as source:
            for tensor in plan.tensors:
                if should_cancel is not None and should_cancel():
                    raise ConversionCancelled("The conversion was cancelled.")
                data = buffer[: tensor.nbytes]
                source.seek(tensor.offset)
                if source.readinto(data) != tensor.nbytes:  # cut short since it was checked
                    raise InvalidModelFile(facts.path, "it ends inside a tensor's data")
                writer.write_tensor_data(np.frombuffer(data, dtype=np.uint8))
    finally:
        writer.close()


def add_app_tokenizer(writer: object, vocab: Sequence[bytes], eos: int | None) -> None:
    """The tokenizer of a file for this app only: raw pieces (TOKEN_TYPE_RAW_PIECE),
    marked with RAW_PIECES_KEY."""
    writer.add_bool(RAW_PIECES_KEY, True)  # type: ignore[attr-defined]
    tokens = [token_string(t) for t in vocab]
    types = [TOKEN_TYPE_RAW_PIECE] * len(vocab)
    if eos is not None:
        tokens[eos] = END_OF_TEXT.decode()
        types[eos] = TOKEN_TYPE_CONTROL
    writer.add_tokenizer_model("gpt2")  # type: ignore[attr-defined]
    writer.add_tokenizer_pre("gpt-2")  # type: ignore[attr-defined]
    writer.add_token_list(tokens)  # type: ignore[attr-defined]
    writer.add_token_types(types)  # type: ignore[attr-defined]
    writer.add_token_merges(derive_merges(vocab))  # type: ignore[attr-defined]
    if eos is not None:
        writer.add_bos_token_id(eos)  # type: ignore[attr-defined]
        writer.add_eos_token_id(eos)  # type: ignore[attr-defined]
    writer.add_add_bos_token(False)  # type: ignore[attr-defined]


def derive_merges(vocab: Sequence[bytes]) -> list[str]:
    """GPT-2 byte-level BPE merges ("Ġ t"), in rank order, recovered from a vocabulary
    whose ids are its merge ranks (GPT-2's are: token 256 + i is the result of merge i).

    A token's own merge is the last step of running BPE on its bytes with only the
    merges of lower rank (the method llama.cpp's converter uses for tiktoken vocabularies):
    that leaves exactly two parts, the pair that was merged into it. Tokens that do not
    come out as two parts (single bytes, special tokens, vocabularies not built by BPE)
    give no merge.
    """
    rank: dict[bytes, int] = {}
    for i, token in enumerate(vocab):
        rank.setdefault(token, i)
    merges: list[str] = []
    for i, token in enumerate(vocab):
        if len(token) < 2 or rank[token] != i or token == END_OF_TEXT:
            continue
        parts = _bpe(token, rank, max_rank=i)
        if len(parts) == 2:
            merges.append(f"{token_string(parts[0])} {token_string(parts[1])}")
    return merges


def _bpe(token: bytes, rank: dict[bytes, int], max_rank: int) -> list[bytes]:
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = -1, max_rank
        for j in range(len(parts) - 1):
            r = rank.get(parts[j] + parts[j + 1])
            if r is not None and r < best_rank:
                best, best_rank = j, r
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts
