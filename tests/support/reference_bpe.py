"""An independent, classic GPT-2 byte-pair encoder: the reference the app tokenizer must match.

Written from the original algorithm (OpenAI's gpt-2 `encoder.py`), on purpose slow and simple:
bytes are mapped to printable unicode characters, the text is split with GPT-2's regex, and
each piece is merged pair by pair, always the pair with the lowest rank in vocab.bpe, until
no ranked pair is left; the resulting symbols are looked up in encoder.json.

It shares no code with writer_app.engine.tokenizer (which works from a GGML vocabulary
through tiktoken), so agreement between the two means something.
"""

from __future__ import annotations

import json
from pathlib import Path

import regex

GPT2_BPE_DIR = Path(__file__).resolve().parents[2] / "resources" / "source" / "gpt2-bpe"

# GPT-2's split pattern exactly as published (the app uses an equivalent, faster spelling).
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table.

    Printable latin-1 bytes map to themselves; the rest (controls, space, soft hyphen...)
    are shifted to code points from 256 upwards so that no BPE symbol is whitespace.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    code_points = printable[:]
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            code_points.append(256 + shift)
            shift += 1
    return dict(zip(printable, (chr(c) for c in code_points), strict=True))


def symbol_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


class ReferenceBPE:
    def __init__(self, bpe_dir: Path = GPT2_BPE_DIR, merge_limit: int | None = None) -> None:
        """merge_limit keeps only the first merges: the BPE of a truncated vocabulary."""
        self.encoder: dict[str, int] = json.loads((bpe_dir / "encoder.json").read_text("utf-8"))
        self.decoder = {token_id: symbol for symbol, token_id in self.encoder.items()}
        merge_lines = (bpe_dir / "vocab.bpe").read_text("utf-8").split("\n")[1:]
        merges = [tuple(line.split()) for line in merge_lines if line.strip()][:merge_limit]
        self.merge_ranks: dict[tuple[str, str], int] = {
            pair: rank for rank, pair in enumerate(merges)
        }
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {char: byte for byte, char in self.byte_encoder.items()}
        self.split_pattern = regex.compile(GPT2_SPLIT_PATTERN)
        self._piece_cache: dict[str, tuple[str, ...]] = {}

    def bpe(self, piece: str) -> tuple[str, ...]:
        """Merge one pre-token (in byte-unicode form) into its final BPE symbols."""
        cached = self._piece_cache.get(piece)
        if cached is not None:
            return cached
        word = tuple(piece)
        pairs = symbol_pairs(word)
        while pairs:
            best = min(pairs, key=lambda pair: self.merge_ranks.get(pair, float("inf")))
            if best not in self.merge_ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            pairs = symbol_pairs(word)
        self._piece_cache[piece] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self.split_pattern.findall(text):
            as_symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[symbol] for symbol in self.bpe(as_symbols))
        return ids

    def decode(self, ids: list[int]) -> str:
        symbols = "".join(self.decoder[token_id] for token_id in ids)
        return bytes(self.byte_decoder[char] for char in symbols).decode("utf-8", errors="replace")

    def vocab_bytes(self) -> list[bytes]:
        """The vocabulary as a GGML GPT-2 file stores it: raw token bytes in id order."""
        return [
            bytes(self.byte_decoder[char] for char in self.decoder[token_id])
            for token_id in range(len(self.decoder))
        ]
