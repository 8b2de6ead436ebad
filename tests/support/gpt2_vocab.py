"""The real GPT-2 vocabulary as raw bytes, from the MIT-licensed encoder.json in resources/.

encoder.json spells each token with GPT-2's byte -> printable-character table; undoing
that table gives the raw bytes a GGML file stores for each token.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

GPT2_BPE_DIR = Path(__file__).resolve().parents[2] / "resources" / "source" / "gpt2-bpe"
GPT2_VOCAB_SIZE = 50257
END_OF_TEXT_ID = 50256


def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable latin-1 bytes stand for themselves,
    the other bytes were moved to code points 256, 257, ... in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {chr(b): b for b in printable}
    shifted = (b for b in range(256) if b not in table.values())
    table.update({chr(256 + i): b for i, b in enumerate(shifted)})
    return table


@functools.cache
def _vocab() -> tuple[bytes, ...]:
    encoder: dict[str, int] = json.loads((GPT2_BPE_DIR / "encoder.json").read_text("utf-8"))
    to_byte = _unicode_to_byte()
    tokens: list[bytes | None] = [None] * len(encoder)
    for symbol, token_id in encoder.items():
        tokens[token_id] = bytes(to_byte[ch] for ch in symbol)
    assert all(t is not None for t in tokens), "encoder.json ids are not contiguous"
    return tuple(tokens)  # type: ignore[arg-type]


def gpt2_vocab() -> list[bytes]:
    """All 50257 GPT-2 tokens as raw bytes in id order (a fresh list; cached underneath)."""
    return list(_vocab())


def encode(text: str) -> list[int]:
    """GPT-2 token ids for `text`, from the independent reference BPE in tests/support."""
    return _reference_bpe().encode(text)


@functools.cache
def _reference_bpe():  # type: ignore[no-untyped-def]
    from tests.support.reference_bpe import ReferenceBPE

    return ReferenceBPE(GPT2_BPE_DIR)
