"""Quantizers: exact ggml bytes (checked against a plain scalar port of ggml.c), round-trip
error bounds per block, and clear errors for shapes ggml cannot store."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from writer_app.engine.quantize import dequantize, quantize, round_trip

BLOCK_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
BLOCK_BYTES = {"q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24, "q8_0": 34}


def f16(value: float) -> bytes:
    return np.float32(value).astype(np.float16).tobytes()


def c_trunc_u8(value: np.float32) -> int:
    return int(math.trunc(float(value)))


def scalar_block(x: np.ndarray, kind: str) -> bytes:
    """One block, line by line as ggml.c's quantize_row_*_reference (float32 arithmetic)."""
    x = x.astype(np.float32)
    if kind in ("q4_0", "q5_0"):
        levels = 8 if kind == "q4_0" else 16
        amax, vmax = np.float32(0), np.float32(0)
        for v in x:
            if amax < abs(v):
                amax, vmax = abs(v), v
        d = np.float32(vmax / np.float32(-levels))
        inv = np.float32(1) / d if d else np.float32(0)
        q = [
            min(2 * levels - 1, c_trunc_u8(np.float32(v * inv) + np.float32(levels + 0.5)))
            for v in x
        ]
    elif kind in ("q4_1", "q5_1"):
        levels = 15 if kind == "q4_1" else 31
        low, high = np.float32(x.min()), np.float32(x.max())
        d = np.float32((high - low) / np.float32(levels))
        inv = np.float32(1) / d if d else np.float32(0)
        q = [min(levels, c_trunc_u8(np.float32((v - low) * inv) + np.float32(0.5))) for v in x]
    else:
        d = np.float32(np.abs(x).max() / np.float32(127))
        inv = np.float32(1) / d if d else np.float32(0)
        q = [
            int(math.copysign(math.floor(abs(float(np.float32(v * inv))) + 0.5), float(v)))
            for v in x
        ]
        return f16(d) + struct.pack("<32b", *q)
    nibbles = bytes((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4) for j in range(16))
    high_bits = struct.pack("<I", sum(((qi >> 4) & 1) << j for j, qi in enumerate(q)))
    scales = f16(d) + (f16(low) if kind in ("q4_1", "q5_1") else b"")
    return scales + (high_bits if kind.startswith("q5") else b"") + nibbles


def sample_blocks(rng: np.random.Generator) -> np.ndarray:
    blocks = [
        rng.standard_normal(32),
        rng.standard_normal(32) * 1e-3 + 5.0,  # far from zero: q4_1/q5_1 offsets matter
        np.zeros(32),  # d = 0 must not divide by zero
        np.full(32, -2.5),  # constant block
        np.linspace(-1, 1, 32),  # exact ties at the rounding points
        np.r_[np.full(31, 0.1), -4.0],  # one outlier sets the scale
        rng.uniform(-100, 100, 32),
    ]
    return np.array(blocks, dtype=np.float32)


@pytest.mark.parametrize("kind", BLOCK_TYPES)
def test_bytes_match_a_scalar_port_of_ggml(kind):
    blocks = sample_blocks(np.random.default_rng(7))
    expected = b"".join(scalar_block(block, kind) for block in blocks)
    assert quantize(blocks, kind).tobytes() == expected


@pytest.mark.parametrize("kind", BLOCK_TYPES)
def test_sizes(kind):
    x = np.ones((3, 64), dtype=np.float32)
    assert quantize(x, kind).size == 3 * 2 * BLOCK_BYTES[kind]


def test_known_q4_0_block_decodes_by_hand():
    # d = 0.5; byte j holds element j (low nibble) and element j + 16 (high nibble).
    qs = bytes((j % 16) | (15 - j % 16) << 4 for j in range(16))
    values = dequantize(f16(0.5) + qs, "q4_0", (32,))
    assert values[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert values[16:].tolist() == [(7 - j) * 0.5 for j in range(16)]


def test_known_q5_1_block_decodes_by_hand():
    # Every element is 17 (0b10001): low nibble 1, fifth bit set for all 32 elements.
    block = f16(0.25) + f16(-1.0) + struct.pack("<I", 0xFFFFFFFF) + bytes([0x11] * 16)
    assert dequantize(block, "q5_1", (32,)).tolist() == [17 * 0.25 - 1.0] * 32


def block_bound(x: np.ndarray, kind: str) -> np.ndarray:
    """Worst-case absolute error per block, from the format (plus fp16 scale rounding)."""
    amax = np.abs(x).max(axis=1)
    span = x.max(axis=1) - x.min(axis=1)
    fp16 = 2.0**-10  # relative rounding of a stored fp16 scale or minimum
    bounds = {
        "q4_0": amax / 8 * (1 + 8 * fp16),  # one step: the far side can only reach 7/8
        "q5_0": amax / 16 * (1 + 16 * fp16),
        "q8_0": amax / 127 / 2 + amax * fp16,
        "q4_1": span / 15 / 2 + span * fp16 + np.abs(x.min(axis=1)) * fp16,
        "q5_1": span / 31 / 2 + span * fp16 + np.abs(x.min(axis=1)) * fp16,
    }
    return bounds[kind] * 1.0001 + 1e-12


@pytest.mark.parametrize("kind", BLOCK_TYPES)
def test_round_trip_error_within_the_format_bound(kind):
    x = np.random.default_rng(3).standard_normal((256, 32)).astype(np.float32)
    x[::7] *= 50  # blocks of different scales
    error = np.abs(round_trip(x, kind) - x).max(axis=1)
    assert np.all(error <= block_bound(x, kind))
    # ...and the bound is not vacuous: typical errors use a good part of it.
    assert np.median(error / block_bound(x, kind)) > 0.2


def test_more_bits_means_less_error():
    x = np.random.default_rng(4).standard_normal((512, 64)).astype(np.float32)
    rms = {k: float(np.sqrt(((round_trip(x, k) - x) ** 2).mean())) for k in BLOCK_TYPES + ["f16"]}
    assert rms["q4_0"] > rms["q5_0"] > rms["q8_0"] > rms["f16"] > 0
    assert rms["q4_1"] > rms["q5_1"] > rms["q8_0"]


def test_f16_and_f32():
    x = np.array([[1.0, -2.5, 65504.0, 1e-8]], dtype=np.float32)
    assert quantize(x, "f32").tobytes() == x.tobytes()
    assert quantize(x, "f16").tobytes() == x.astype(np.float16).tobytes()
    assert dequantize(quantize(x, "f16"), "f16", x.shape).dtype == np.float32


@pytest.mark.parametrize("kind", BLOCK_TYPES)
def test_matrix_blocks_run_along_rows(kind):
    x = np.zeros((2, 64), dtype=np.float32)
    x[1, 32:] = np.linspace(1.0, 3.0, 32)  # only the last block of the second row is non-zero
    raw = quantize(x, kind).reshape(4, BLOCK_BYTES[kind])
    scales = raw[:, :2].copy().view(np.float16).ravel()
    assert scales[:3].tolist() == [0, 0, 0]  # (ggml writes -0.0 for q4_0/q5_0, as max / -8)
    assert scales[3] != 0
    restored = dequantize(raw.reshape(-1), kind, x.shape)
    assert not restored.ravel()[:96].any()
    assert np.allclose(restored, x, atol=0.2)


@pytest.mark.parametrize("kind", BLOCK_TYPES)
def test_rows_must_fit_blocks(kind):
    with pytest.raises(ValueError, match=f"{kind} needs rows whose length is a multiple of 32"):
        quantize(np.ones((4, 48), dtype=np.float32), kind)


def test_dequantize_rejects_wrong_byte_count():
    with pytest.raises(ValueError, match="must be 36 bytes, got 35"):
        dequantize(bytes(35), "q4_0", (2, 32))


@pytest.mark.parametrize("kind", ["q4_k", "nonsense"])
def test_unsupported_types_are_named(kind):
    with pytest.raises(ValueError, match=kind):
        quantize(np.ones(256, dtype=np.float32), kind)
