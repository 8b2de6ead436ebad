"""Read a .safetensors file tensor by tensor through memory maps, checked before use.

The format is an 8-byte little-endian header length, a JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} and the
raw little-endian data. Reading it ourselves (rather than through the safetensors
package) gives BF16 without torch and lets every offset be checked against the file size
up front, so a truncated download is refused before any conversion starts.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from writer_app.models.errors import InvalidModel

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit
ITEM_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


class InvalidCheckpoint(InvalidModel):
    """A Hugging Face checkpoint folder that can't be converted; the text says why."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    offset: int  # from the start of the file
    nbytes: int


class SafetensorsFile:
    """The tensors of one file; `read(name)` maps just that tensor and returns float32."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tensors = _read_header(self.path)

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """The tensor as float32, or only `rows` of it (first axis), mapping just those."""
        info = self.tensors[name]
        if info.nbytes == 0:
            return np.zeros(info.shape, dtype=np.float32)[rows if rows is not None else ...]
        if info.dtype == "F32":
            # A read-only map: the converter copies at most one tensor's worth from it.
            mapped = np.memmap(self.path, np.dtype("<f4"), "r", info.offset, info.shape)
            return mapped if rows is None else np.array(mapped[rows], dtype=np.float32)
        raw = np.memmap(self.path, np.dtype("<u2"), "r", info.offset, info.shape)
        if rows is not None:
            raw = raw[rows]
        if info.dtype == "F16":
            return raw.view(np.float16).astype(np.float32)
        # bfloat16 is the top half of a float32.
        return (raw.astype(np.uint32) << 16).view(np.float32)


def _read_header(path: Path) -> dict[str, TensorInfo]:
    name = path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:
                raise InvalidCheckpoint(f"{name} is too short to be a safetensors file.")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(MAX_HEADER_BYTES, size - 8):
                raise InvalidCheckpoint(
                    f"{name} is not a complete safetensors file (its header claims "
                    f"{header_len:,} bytes; the file has {size:,})."
                )
            header = json.loads(stream.read(header_len))
    except OSError as exc:
        raise InvalidCheckpoint(f"{name} could not be read: {exc.strerror or exc}.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCheckpoint(f"{name} is not a safetensors file (its header is not JSON).") from exc
    if not isinstance(header, dict):
        raise InvalidCheckpoint(f"{name} is not a safetensors file (its header is not an object).")
    data_start, data_size = 8 + header_len, size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    for tensor, entry in header.items():
        if tensor == "__metadata__":
            continue
        tensors[tensor] = _tensor_info(name, tensor, entry, data_start, data_size)
    return tensors


def _tensor_info(
    file: str, tensor: str, entry: object, data_start: int, data_size: int
) -> TensorInfo:
    try:
        dtype = entry["dtype"]  # type: ignore[index]
        shape = tuple(int(n) for n in entry["shape"])  # type: ignore[index]
        begin, end = (int(n) for n in entry["data_offsets"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError) as exc:
        raise InvalidCheckpoint(f"{file} describes tensor {tensor} incompletely.") from exc
    if dtype not in ITEM_BYTES:
        raise InvalidCheckpoint(
            f"{file} stores {tensor} as {dtype}; only F32, F16 and BF16 weights can be imported."
        )
    nbytes = math.prod(shape) * ITEM_BYTES[dtype]
    if min(shape, default=0) < 0 or begin < 0 or end - begin != nbytes:
        raise InvalidCheckpoint(f"{file} gives tensor {tensor} a size that does not fit its shape.")
    if end > data_size:
        raise InvalidCheckpoint(
            f"{file} is truncated: tensor {tensor} ends at byte {data_start + end:,} "
            f"but the file has only {data_start + data_size:,} bytes."
        )
    return TensorInfo(dtype, shape, data_start + begin, nbytes)


def read_json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file (config, index, tokenizer) as a dict, or InvalidCheckpoint
    in one sentence."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidCheckpoint(f"{path.parent.name} has no {path.name}.") from None
    except OSError as exc:
        raise InvalidCheckpoint(f"{path.name} could not be read: {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise InvalidCheckpoint(f"{path.name} in {path.parent.name} is not valid JSON "
                                f"({exc}).") from exc
    if not isinstance(data, dict):
        raise InvalidCheckpoint(f"{path.name} in {path.parent.name} is not a JSON object.")
    return data
