"""Exact GPT-2 byte-pair encoding, built from the vocabulary stored in a model file.

ctransformers' own tokenizer is a greedy longest match (it disagrees with GPT-2 on words
like " DEAF" or "2023") and corrupts memory on emoji and CJK, so the app never calls it.
Instead we rebuild real BPE from the GGML vocabulary: in a GPT-2 vocabulary a token's id is
its merge rank, so tiktoken, given {token bytes: id} and GPT-2's split pattern, performs the
same merges as OpenAI's original encoder (tiktoken is only used offline here; nothing is
downloaded).

Vocabularies that are not rank-ordered BPE vocabularies are refused with
UnsupportedVocabulary rather than tokenized approximately: a silently different
tokenization makes a model write nonsense with no visible cause. A vocabulary is accepted
when every one of the 256 single bytes is a token, no token is empty or repeated, and every
longer token is the concatenation of two tokens with smaller ids (so a prefix of GPT-2's
vocabulary, or the 256 bytes alone, are fine). The exceptions are `<|endoftext|>`, which
is a special token: it becomes `eos_id` and is never produced by `encode`, and tokens after
it that are not merges (added when a checkpoint was fine-tuned), which are treated alike.
"""

from __future__ import annotations

import codecs
import functools
import operator
import threading
from collections.abc import Iterable, Sequence

import tiktoken

END_OF_TEXT = b"<|endoftext|>"

# GPT-2's split pattern in tiktoken's spelling: the same pieces as the published
# 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# with possessive quantifiers and a `\s++$` branch that keep long runs linear-time.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


class TokenizerError(ValueError):
    """Base class for tokenizer problems."""


class UnsupportedVocabulary(TokenizerError):
    """The model's vocabulary is not a byte-level BPE vocabulary ordered by merge rank."""


class InvalidTokenId(TokenizerError):
    """A token id outside the vocabulary (e.g. from a model whose head is larger)."""


class Tokenizer:
    """Encodes ordinary text to token ids and back for one model's vocabulary.

    Immutable and safe to share between threads (tiktoken's encoder is thread-safe).
    """

    def __init__(
        self, tokens: tuple[bytes, ...], encoding: tiktoken.Encoding, eos_id: int | None
    ) -> None:
        # Use from_vocab(); this constructor trusts that the pieces agree.
        self._tokens = tokens
        self._encoding = encoding
        self._eos_id = eos_id

    @classmethod
    def from_vocab(cls, tokens: Sequence[bytes]) -> Tokenizer:
        """Build from token bytes in id order, exactly as a GGML file stores them."""
        token_tuple = tuple(bytes(token) for token in tokens)
        mergeable_ranks, eos_id = _ranked(token_tuple)
        special_tokens = {END_OF_TEXT.decode("ascii"): eos_id} if eos_id is not None else {}
        encoding = tiktoken.Encoding(
            f"writer-app-bpe-{len(token_tuple)}",
            pat_str=GPT2_SPLIT_PATTERN,
            mergeable_ranks=mergeable_ranks,
            special_tokens=special_tokens,
        )
        return cls(token_tuple, encoding, eos_id)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def eos_id(self) -> int | None:
        return self._eos_id

    def encode(self, text: str) -> list[int]:
        """Tokenize a writer's text. "<|endoftext|>" typed in the text stays plain text."""
        # Lone surrogates (possible in text pasted through Qt) are replaced by U+FFFD
        # inside encode_ordinary rather than raising.
        return self._encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text for a run of ids; bytes that are not valid UTF-8 become U+FFFD."""
        id_list = list(ids)
        try:
            if id_list and min(id_list) < 0:
                raise IndexError  # a negative index would silently wrap around
            raw = b"".join([self._tokens[token_id] for token_id in id_list])
        except (IndexError, TypeError):
            bad = next(token_id for token_id in id_list if not self.is_valid_id(token_id))
            raise self._invalid(bad) from None
        return raw.decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        if not self.is_valid_id(token_id):
            raise self._invalid(token_id)
        return self._tokens[operator.index(token_id)]

    def is_valid_id(self, token_id: int) -> bool:
        if isinstance(token_id, bool):
            return False
        try:
            index = operator.index(token_id)  # accepts numpy integers, refuses floats
        except TypeError:
            return False
        return 0 <= index < len(self._tokens)

    def _invalid(self, token_id: object) -> InvalidTokenId:
        return InvalidTokenId(
            f"Token id {token_id!r} is not in this model's vocabulary "
            f"(valid ids are 0 to {len(self._tokens) - 1})."
        )


class TokenizerCache:
    """Tokenizers by vocabulary, so switching models doesn't rebuild one.

    gpt2 and gpt2-large (and all their quantizations) share one vocabulary, and building
    its tokenizer takes 0.1-0.2 s of work that holds the GIL, which stalls the GUI
    thread when done on a loader thread. Keeps the `size` most recently used. Safe to
    share between threads (the model loader and the inference worker both load models).
    """

    def __init__(self, size: int = 2) -> None:
        self._size = max(1, size)
        self._by_vocab: dict[tuple[bytes, ...], Tokenizer] = {}
        self._lock = threading.Lock()

    def get(self, tokens: Sequence[bytes]) -> Tokenizer:
        with self._lock:
            return self._get(tuple(tokens))

    def _get(self, key: tuple[bytes, ...]) -> Tokenizer:
        tokenizer = self._by_vocab.pop(key, None)
        if tokenizer is None:
            tokenizer = Tokenizer.from_vocab(key)
        self._by_vocab[key] = tokenizer  # now the most recent
        while len(self._by_vocab) > self._size:
            del self._by_vocab[next(iter(self._by_vocab))]
        return tokenizer


class IncrementalDecoder:
    """Turns generated tokens into text one at a time without splitting characters.

    One emoji or CJK character is often spread over several GPT-2 tokens; push() holds
    back an incomplete UTF-8 tail until it completes. Bytes that can never become valid
    (a stray continuation byte, a lead byte followed by a non-continuation) are emitted
    as U+FFFD as soon as that is certain, so nothing is held forever.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""

    def push(self, token_id: int) -> str:
        """Add one token; returns the newly completed text (may be "")."""
        piece = self._utf8.decode(self._tokenizer.token_bytes(token_id))
        self._text += piece
        return piece

    def flush(self) -> str:
        """End of generation: an unfinished character left over becomes U+FFFD."""
        piece = self._utf8.decode(b"", final=True)
        self._text += piece
        return piece

    @property
    def text(self) -> str:
        """Everything emitted so far (by push and flush)."""
        return self._text


def check_vocabulary(tokens: Sequence[bytes]) -> None:
    """Raise UnsupportedVocabulary unless Tokenizer.from_vocab(tokens) would accept them.

    The model validator calls this, so a file is refused before it is listed, imported
    or loaded, rather than when the first suggestion needs its tokenizer."""
    _ranked(tuple(bytes(token) for token in tokens))


# A model is validated several times on its way to loading, and its tokenizer is built
# right after: the check's work (~50 ms for GPT-2's vocabulary, holding the GIL) is
# done once. The dict is shared, so nobody may change it (tiktoken copies it).
@functools.lru_cache(maxsize=2)
def _ranked(tokens: tuple[bytes, ...]) -> tuple[dict[bytes, int], int | None]:
    return _mergeable_ranks(tokens)


def _mergeable_ranks(tokens: tuple[bytes, ...]) -> tuple[dict[bytes, int], int | None]:
    """Check the vocabulary is rank-ordered byte-level BPE; return {bytes: rank} and eos id."""
    if not tokens:
        raise UnsupportedVocabulary("The model's vocabulary is empty.")
    present = set(tokens)
    missing = [byte for byte in range(256) if bytes([byte]) not in present]
    if missing:
        raise UnsupportedVocabulary(
            f"The model's vocabulary lacks {len(missing)} of the 256 single-byte tokens "
            f"(e.g. byte {missing[0]:#04x}), so it is not a byte-level BPE vocabulary "
            "like GPT-2's and cannot represent every text."
        )
    ranks: dict[bytes, int] = {}
    eos_id: int | None = None
    added: set[bytes] = set()
    for token_id, token in enumerate(tokens):
        if token in added or token in ranks or (token == END_OF_TEXT and eos_id is not None):
            first = eos_id if token == END_OF_TEXT else ranks.get(token, tokens.index(token))
            raise UnsupportedVocabulary(
                f"Token {token_id} ({token!r}) repeats token {first}; a BPE vocabulary "
                "has each token once."
            )
        if token == END_OF_TEXT:
            eos_id = token_id
            continue
        if not token:
            raise UnsupportedVocabulary(f"Token {token_id} in the model's vocabulary is empty.")
        if len(token) > 1 and not _is_merge_of_known(token, ranks):
            if eos_id is not None and token not in added:
                # After <|endoftext|>: a token added in fine-tuning (a pad or marker
                # token). Like <|endoftext|> it decodes to its text but encode never
                # produces it from typed text.
                added.add(token)
                continue
            raise UnsupportedVocabulary(
                f"Token {token_id} ({token!r}) is not a merge of two earlier tokens, so "
                "the model's vocabulary is not ordered by BPE merge rank as GPT-2's is."
            )
        ranks[token] = token_id
    return ranks, eos_id


def _is_merge_of_known(token: bytes, ranks: dict[bytes, int]) -> bool:
    # A plain loop: this runs for ~50k tokens per model load, and a generator
    # expression with any() is about three times slower here.
    for split in range(1, len(token)):  # noqa: SIM110
        if token[split:] in ranks and token[:split] in ranks:
            return True
    return False
