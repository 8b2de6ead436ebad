"""A checkpoint's tokenizer files turned into the GGML vocabulary (token bytes by id).

Accepted: GPT-2's byte-level BPE, from vocab.json + merges.txt or from tokenizer.json.
The app's tokenizer (engine/tokenizer.py) rebuilds BPE from the vocabulary alone, taking
a token's id as its merge rank, as in GPT-2. So a vocabulary is accepted only if that
reading gives the same merges as the checkpoint's merge list: every merged token is in
the vocabulary, and ids grow with merge rank. Any other BPE (SentencePiece, a different
byte alphabet, merges out of id order) would tokenize differently and is refused.

Tokens added after training (ids from the base vocabulary's end, e.g. a pad token) are
kept by their text; rows of the embedding beyond the tokenizer (vocab_size padded up to
a multiple of 8, say) get placeholder tokens, so the GGML vocabulary has one token per
row as the file format requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from writer_app.models.safetensors_file import InvalidCheckpoint, read_json

GPT2_VOCAB_SIZE = 50257
REFUSED = ("{folder}'s tokenizer is not GPT-2's byte-level BPE ({why}), so the app's "
           "tokenizer would split text differently from the one the model was trained with.")


def byte_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character -> the byte it stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def placeholder(token_id: int) -> bytes:
    return f"<|unused_{token_id}|>".encode()


def read_vocabulary(folder: Path, vocab_size: int) -> list[bytes]:
    """Token bytes for ids 0..vocab_size-1, or InvalidCheckpoint saying why not.

    A Trainer checkpoint (checkpoint-500/) often has no tokenizer files; with GPT-2's own
    50,257 rows it was trained with GPT-2's tokenizer, which the demo model carries."""
    if vocab_size == GPT2_VOCAB_SIZE and not _has_tokenizer(folder):
        from writer_app.assets import demo_model_path
        from writer_app.engine.ggml import read_vocab

        return read_vocab(demo_model_path())
    vocab, merges, added = _read_files(folder)
    alphabet = byte_alphabet()
    name = folder.name
    by_id: dict[int, bytes] = {}
    for text, token_id in vocab.items():
        try:
            by_id[token_id] = bytes(alphabet[c] for c in text)
        except KeyError:
            if token_id in added or text == "<|endoftext|>":
                by_id[token_id] = text.encode()
                continue
            bad = next(c for c in text if c not in alphabet)
            raise InvalidCheckpoint(REFUSED.format(
                folder=name, why=f"token {text!r} uses {bad!r}, outside its byte alphabet"
            )) from None
    for token_id, text in added.items():
        by_id.setdefault(token_id, text.encode())
    base = {text: i for text, i in vocab.items() if i not in added}
    _check_merges(name, base, merges, alphabet)
    size = max(by_id, default=-1) + 1
    if size > vocab_size:
        raise InvalidCheckpoint(
            f"{name}'s tokenizer has {size:,} tokens but the model's embedding only "
            f"{vocab_size:,} (config.json vocab_size)."
        )
    gaps = [i for i in range(size) if i not in by_id]
    if gaps:
        raise InvalidCheckpoint(f"{name}'s tokenizer has no token with id {gaps[0]}.")
    tokens = [by_id[i] for i in range(size)]
    tokens += [placeholder(i) for i in range(size, vocab_size)]
    return tokens


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json",
                                                        "merges.txt"))


def _check_merges(name: str, vocab: dict[str, int], merges: list[tuple[str, str]],
                  alphabet: dict[str, int]) -> None:
    missing = [c for c in alphabet if c not in vocab]
    if missing:
        raise InvalidCheckpoint(REFUSED.format(
            folder=name, why=f"it lacks {len(missing)} of the 256 byte tokens"))
    last = -1
    merged: set[str] = set()
    for rank, (left, right) in enumerate(merges):
        token_id = vocab.get(left + right)
        if token_id is None or left not in vocab or right not in vocab:
            raise InvalidCheckpoint(REFUSED.format(
                folder=name, why=f"merge {rank} ({left} {right}) makes a token it does not have"))
        if token_id <= last:
            raise InvalidCheckpoint(REFUSED.format(
                folder=name, why=f"merge {rank} makes token {token_id}, out of id order"))
        last = token_id
        merged.add(left + right)
    unmerged = [t for t in vocab if len(t) > 1 and t not in merged and t != "<|endoftext|>"
                and all(c in alphabet for c in t)]
    if unmerged:
        raise InvalidCheckpoint(REFUSED.format(
            folder=name, why=f"no merge makes its token {unmerged[0]!r}"))


def _read_files(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]], dict[int, str]]:
    """(vocab, merges, added tokens by id) from tokenizer.json or vocab.json + merges.txt."""
    fast = folder / "tokenizer.json"
    if fast.is_file():
        data = read_json(fast)
        model = data.get("model") or {}
        pre = data.get("pre_tokenizer") or {}
        if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
            why = f"its model is {model.get('type')} with a {pre.get('type')} pre-tokenizer"
            raise InvalidCheckpoint(REFUSED.format(folder=folder.name, why=why))
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
                  for m in model.get("merges") or []]
        added = {int(t["id"]): str(t["content"]) for t in data.get("added_tokens") or []}
        return _vocab(model.get("vocab"), fast), merges, added  # type: ignore[return-value]
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    if not vocab_file.is_file() or not merges_file.is_file():
        raise InvalidCheckpoint(
            f"{folder.name} has no tokenizer (vocab.json and merges.txt, or tokenizer.json); "
            "save it with tokenizer.save_pretrained(DIR) next to the model."
        )
    config_file = folder / "tokenizer_config.json"
    config = read_json(config_file) if config_file.is_file() else {}
    kind = config.get("tokenizer_class") or "GPT2Tokenizer"
    if not str(kind).startswith("GPT2Tokenizer"):
        raise InvalidCheckpoint(REFUSED.format(folder=folder.name, why=f"it is a {kind}"))
    lines = merges_file.read_text(encoding="utf-8").splitlines()
    merges = []
    for line in lines:
        if line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise InvalidCheckpoint(f"merges.txt in {folder.name} has a malformed line: {line!r}.")
        merges.append((parts[0], parts[1]))
    added: dict[int, str] = {}
    added_file = folder / "added_tokens.json"
    if added_file.is_file():
        added |= {int(i): str(t) for t, i in read_json(added_file).items()}
    for token_id, token in (config.get("added_tokens_decoder") or {}).items():
        added[int(token_id)] = str(token.get("content"))
    return _vocab(read_json(vocab_file), vocab_file), merges, added


def _vocab(raw: Any, path: Path) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in raw.items()
    ):
        raise InvalidCheckpoint(f"{path.name} in {path.parent.name} is not a vocabulary "
                                "of token ids.")
    if len(set(raw.values())) != len(raw):
        raise InvalidCheckpoint(f"{path.name} in {path.parent.name} gives two tokens one id.")
    return raw


