"""Vectorized numpy versions of ggml's f16 and block quantizers (q4_0, q4_1, q5_0, q5_1, q8_0).

The arithmetic follows the `quantize_row_*_reference` / `dequantize_row_*` functions of
the ggml.c bundled with ctransformers 0.2.27 (quantization format version 2: every scale
is an fp16, blocks of 32 values). The float32 steps are kept float32 on purpose so the
bytes match what ggml's own quantize tool writes.

Blocks run along the last axis of a C-contiguous array, which is ggml's ne[0]: pass
matrices in the layout they are written to the file.
"""

from __future__ import annotations

import numpy as np

from writer_app.engine.ggml import WeightType, weight_type

QK = 32
_HALF = QK // 2


def quantize(values: np.ndarray, type_name: str) -> np.ndarray:
    """Encode `values` (any shape, last axis a multiple of 32 for block types) as raw bytes."""
    wtype = weight_type(type_name)
    x = np.ascontiguousarray(values, dtype=np.float32)
    if wtype.name == "f32":
        return x.reshape(-1).view(np.uint8)
    if wtype.name == "f16":
        return x.astype(np.float16).reshape(-1).view(np.uint8)
    blocks = _as_blocks(x, wtype)
    encoder = _ENCODERS.get(wtype.name)
    if encoder is None:
        raise ValueError(f"writing {wtype.name} weights is not supported")
    out = encoder(blocks)
    assert out.shape == (blocks.shape[0], wtype.block_bytes)
    return out.reshape(-1)


def dequantize(raw: np.ndarray | bytes, type_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Decode raw bytes written by `quantize` (or read from a file) back to float32."""
    wtype = weight_type(type_name)
    data = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes) else raw
    count = int(np.prod(shape))
    if data.size != wtype.nbytes(count):
        raise ValueError(
            f"{wtype.name} data for shape {shape} must be {wtype.nbytes(count)} bytes, "
            f"got {data.size}"
        )
    if wtype.name == "f32":
        return data.view(np.float32).reshape(shape).copy()
    if wtype.name == "f16":
        return data.view(np.float16).astype(np.float32).reshape(shape)
    decoder = _DECODERS.get(wtype.name)
    if decoder is None:
        raise ValueError(f"reading {wtype.name} weights is not supported")
    return decoder(data.reshape(-1, wtype.block_bytes)).reshape(shape)


def round_trip(values: np.ndarray, type_name: str) -> np.ndarray:
    """What ggml will compute with after storing `values` as `type_name` (float32)."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    return dequantize(quantize(x, type_name), type_name, x.shape)


def _as_blocks(x: np.ndarray, wtype: WeightType) -> np.ndarray:
    if x.ndim == 0 or x.shape[-1] % QK:
        raise ValueError(
            f"{wtype.name} needs rows whose length is a multiple of {QK}, got shape {x.shape}"
        )
    return x.reshape(-1, QK)


def _fp16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def _fp16_at(data: np.ndarray, start: int) -> np.ndarray:
    return data[:, start : start + 2].copy().view(np.float16).astype(np.float32).reshape(-1)


def _signed_max(blocks: np.ndarray) -> np.ndarray:
    """The value of largest magnitude in each block, sign kept (first one on ties)."""
    index = np.argmax(np.abs(blocks), axis=1)
    return blocks[np.arange(blocks.shape[0]), index]


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """Element j and j+16 share byte j: low nibble first half, high nibble second half."""
    return ((q[:, :_HALF] & 0x0F) | ((q[:, _HALF:] & 0x0F) << 4)).astype(np.uint8)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int16)


def _pack_high_bits(q: np.ndarray) -> np.ndarray:
    """Bit 4 of element j goes to bit j of a little-endian uint32."""
    bits = ((q >> 4) & 1).astype(np.uint32)
    qh = (bits << np.arange(QK, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)
    return qh.astype("<u4").reshape(-1, 1).view(np.uint8)


def _unpack_high_bits(qh: np.ndarray) -> np.ndarray:
    words = qh.copy().view("<u4").astype(np.uint32).reshape(-1, 1)
    return (((words >> np.arange(QK, dtype=np.uint32)) & 1) << 4).astype(np.int16)


def _encode_q4_0(x: np.ndarray) -> np.ndarray:
    d = _signed_max(x) / np.float32(-8)
    q = np.minimum(15, np.trunc(x * _inverse(d)[:, None] + np.float32(8.5))).astype(np.uint8)
    return np.concatenate([_fp16_bytes(d), _pack_nibbles(q)], axis=1)


def _encode_q5_0(x: np.ndarray) -> np.ndarray:
    d = _signed_max(x) / np.float32(-16)
    q = np.minimum(31, np.trunc(x * _inverse(d)[:, None] + np.float32(16.5))).astype(np.uint8)
    return np.concatenate([_fp16_bytes(d), _pack_high_bits(q), _pack_nibbles(q)], axis=1)


def _min_and_step(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low = x.min(axis=1)
    d = (x.max(axis=1) - low) / np.float32(levels)
    scaled = (x - low[:, None]) * _inverse(d)[:, None] + np.float32(0.5)
    return low, d, np.trunc(scaled)


def _encode_q4_1(x: np.ndarray) -> np.ndarray:
    low, d, q = _min_and_step(x, 15)
    q = np.minimum(15, q).astype(np.uint8)
    return np.concatenate([_fp16_bytes(d), _fp16_bytes(low), _pack_nibbles(q)], axis=1)


def _encode_q5_1(x: np.ndarray) -> np.ndarray:
    low, d, q = _min_and_step(x, 31)
    q = np.minimum(31, q).astype(np.uint8)
    parts = [_fp16_bytes(d), _fp16_bytes(low), _pack_high_bits(q), _pack_nibbles(q)]
    return np.concatenate(parts, axis=1)


def _encode_q8_0(x: np.ndarray) -> np.ndarray:
    d = np.abs(x).max(axis=1) / np.float32(127)
    scaled = x * _inverse(d)[:, None]
    # C roundf: halves away from zero (numpy's round is half-to-even).
    q = np.trunc(scaled + np.copysign(np.float32(0.5), scaled)).astype(np.int8)
    return np.concatenate([_fp16_bytes(d), q.view(np.uint8)], axis=1)


def _decode_q4_0(b: np.ndarray) -> np.ndarray:
    return (_unpack_nibbles(b[:, 2:]) - 8).astype(np.float32) * _fp16_at(b, 0)[:, None]


def _decode_q4_1(b: np.ndarray) -> np.ndarray:
    q = _unpack_nibbles(b[:, 4:]).astype(np.float32)
    return q * _fp16_at(b, 0)[:, None] + _fp16_at(b, 2)[:, None]


def _decode_q5_0(b: np.ndarray) -> np.ndarray:
    q = _unpack_nibbles(b[:, 6:]) | _unpack_high_bits(b[:, 2:6])
    return (q - 16).astype(np.float32) * _fp16_at(b, 0)[:, None]


def _decode_q5_1(b: np.ndarray) -> np.ndarray:
    q = _unpack_nibbles(b[:, 8:]) | _unpack_high_bits(b[:, 4:8])
    return q.astype(np.float32) * _fp16_at(b, 0)[:, None] + _fp16_at(b, 2)[:, None]


def _decode_q8_0(b: np.ndarray) -> np.ndarray:
    return b[:, 2:].view(np.int8).astype(np.float32) * _fp16_at(b, 0)[:, None]


_ENCODERS = {
    "q4_0": _encode_q4_0,
    "q4_1": _encode_q4_1,
    "q5_0": _encode_q5_0,
    "q5_1": _encode_q5_1,
    "q8_0": _encode_q8_0,
}
_DECODERS = {
    "q4_0": _decode_q4_0,
    "q4_1": _decode_q4_1,
    "q5_0": _decode_q5_0,
    "q5_1": _decode_q5_1,
    "q8_0": _decode_q8_0,
}
