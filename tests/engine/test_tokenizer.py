"""The app tokenizer must be exactly GPT-2 BPE: checked against an independent classic encoder."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.support.reference_bpe import ReferenceBPE
from writer_app.engine.tokenizer import (
    IncrementalDecoder,
    InvalidTokenId,
    Tokenizer,
    UnsupportedVocabulary,
)

ENGLISH_SENTENCES = [
    "Hello world",
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife.",
    "The quick brown fox jumps over the lazy dog.",
    "She was DEAF to all entreaty; he was deaf to reason.",
    "In 2023 the café on Main St. served 1,234 cups of coffee.",
    "Mr. and Mrs. Bennet had five daughters.",
    '"Why, my dear, you must know," said she.',
    "Don't you think it's time we'd gone? I'll go; you're staying, aren't you?",
    "THEY'LL SAY IT'S FINE, BUT I'VE HEARD OTHERWISE.",
    "e-mail me at someone@example.com or visit https://example.org/path?q=1&x=2.",
    "The year 1813 saw Pride and Prejudice published; 200+ years later it still sells.",
    "Chapter XIV. In which nothing happens (at first).",
    "He paused... then -- quite suddenly -- laughed!!!",
    "Version 3.11.4 fixed bug #4521 at 09:45 on 2024-02-29.",
    "   Indented line with trailing spaces   ",
    "Line one\nLine two\n\nParagraph two\r\nWindows line",
    "Tabs\tbetween\twords\t\tand\t\t\ttabs",
    "A list:\n  - first item\n  - second item\n",
    "Pi is roughly 3.14159265358979 and e is 2.71828.",
    "CamelCaseWords and snake_case_words and kebab-case-words",
    "Quotes: 'single' \"double\" `back` «guillemets» „low‟",
    "What?! No way... Really?!?! Yes.",
    "$100, €85, £70, ¥11000 and 50% off!",
    " DEAF",
]

FIXED_CASES: dict[str, str] = {
    "deaf": " DEAF",
    "cafe": " café",
    "year": "2023",
    "contractions": "'s 't 're 've 'm 'll 'd 'S 'LL It's don't I've y'all rock'n'roll ''",
    "numbers": "0 7 42 2023 1234567890 3.14 -17 1e10 0x1F 1,000,000 ½ ² ٣ 四",
    "punctuation_runs": "!!!???...,,,;;;:::---___***###@@@&&&%%%$$$^^^(((]]]}}}|||\\\\///",
    "typographic_punctuation": "—–…“”‘’•·†‡§¶※‼⁇",
    "whitespace_runs": "a  b   c    d\n\ne\n\n\n\tf \t \n g  \n",
    "only_whitespace": " \t\n  \r\n\t\t   ",
    "trailing_spaces": "end of line     ",
    "leading_spaces": "      start",
    "unicode_spaces": "a\u00a0b\u2003c\u2009d\u3000e\u200bf\u2028g\u2029h\x85i",
    "control_chars": "\x00\x01\x07\x1b[0m\x1c\x1d\x1e\x1f\x7f\x80\x9f",
    "emoji": "I love it 🙂😀🎉🔥 so much 👍!",
    "emoji_skin_tone": "👍🏽👋🏿🤷🏼‍♀️",
    "emoji_zwj_family": "👨‍👩‍👧‍👦 and 👩‍❤️‍💋‍👨 and 🏳️‍🌈",
    "emoji_flags": "🇫🇷🇯🇵🇺🇸🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "emoji_keycaps": "1️⃣#️⃣*️⃣",
    "cjk_chinese": "我们今天去公园散步。天气很好！",
    "cjk_japanese": "日本語のテキストです。カタカナとひらがな。",
    "cjk_korean": "한국어 텍스트입니다. 안녕하세요!",
    "cjk_rare": "𠀀𪚥𡨸 漢字",
    "accented": "naïve façade résumé Ångström Øresund Ærø crème brûlée Łódź Škoda",
    "combining": "e\u0301 a\u0308 n\u0303 o\u0302\u0323 Z\u0324\u0354\u0367\u0311\u0313",
    "zalgo": "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
    "hebrew": "שלום עולם, מה שלומך?",
    "arabic": "مرحبا بالعالم! كيف حالك؟ ١٢٣",
    "bidi_mixed": "The word \u202bשלום\u202c means peace; \u200fمرحبا\u200e too.",
    "devanagari": "नमस्ते दुनिया",
    "greek_cyrillic": "Καλημέρα κόσμε — Привет, мир!",
    "thai": "สวัสดีชาวโลก",
    "math_symbols": "∀x∈ℝ: x²≥0 ⇒ √(x²)=|x| ∑∫∂",
    "endoftext_alone": "<|endoftext|>",
    "endoftext_in_text": "The end.<|endoftext|>The beginning <|endoftext|> again",
    "dash_run_40k": "-" * 40_000,
    "space_run": " " * 5_000 + "x" + " " * 5_000,
    "newline_run": "\n" * 3_000,
    "letter_run": "a" * 20_000,
    "digit_run": "9" * 10_000,
    "apostrophe_run": "'" * 1_000 + "s",
    "empty": "",
}


def _many_emoji(seed: int, count: int) -> str:
    rng = random.Random(seed)
    pool = [chr(c) for c in range(0x1F300, 0x1F650)] + ["👨‍👩‍👧‍👦", "👍🏽", "🇫🇷", "❤️"]
    return "".join(rng.choice(pool) for _ in range(count))


def _mixed_text(seed: int, length: int) -> str:
    """Random but reproducible text mixing every kind of character the cases above use."""
    rng = random.Random(seed)
    words = " ".join(ENGLISH_SENTENCES).split()
    alphabets = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r  ",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~—…“”",
        "éèêëçñøåæœßàùüöïÅÉÑ",
        "\u0301\u0308\u0303\u0323\u200d\ufe0f",
        "我们今天去公园散步日本語のテキスト한국어",
        "שלוםעולםمرحبابالعالم",
        "🙂😀🎉🔥👍🏽🇫🇷👨‍👩‍👧",
        "\x00\x1f\x7f\u00a0\u2028",
    ]
    parts: list[str] = []
    size = 0
    while size < length:
        if rng.random() < 0.5:
            part = rng.choice(words) + rng.choice([" ", " ", "\n", ", ", ". ", "  "])
        else:
            alphabet = rng.choice(alphabets)
            part = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        parts.append(part)
        size += len(part)
    return "".join(parts)[:length]


CASES: dict[str, str] = {
    **FIXED_CASES,
    **{f"english_{i}": sentence for i, sentence in enumerate(ENGLISH_SENTENCES)},
    "english_paragraphs": "\n\n".join(ENGLISH_SENTENCES) * 3,
    "emoji_200_in_a_row": _many_emoji(seed=7, count=200),
    "mixed_100k_seed_1": _mixed_text(seed=1, length=100_000),
    "mixed_100k_seed_2": _mixed_text(seed=2, length=100_000),
}


@pytest.fixture(scope="module")
def reference() -> ReferenceBPE:
    return ReferenceBPE()


@pytest.fixture(scope="module")
def tokenizer(reference: ReferenceBPE) -> Tokenizer:
    # The same bytes a GGML GPT-2 file stores, derived from encoder.json.
    return Tokenizer.from_vocab(reference.vocab_bytes())


def _byte_token_ids(tokenizer: Tokenizer) -> dict[int, int]:
    """byte value -> id of the token that is exactly that byte."""
    return {
        tokenizer.token_bytes(i)[0]: i
        for i in range(tokenizer.vocab_size)
        if len(tokenizer.token_bytes(i)) == 1
    }


# --- exactness against the classic GPT-2 encoder ---------------------------------------


def test_known_spot_checks(tokenizer: Tokenizer, reference: ReferenceBPE) -> None:
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.encode(" DEAF") == reference.encode(" DEAF")
    assert tokenizer.encode("2023") == reference.encode("2023")
    assert tokenizer.encode(" café") == reference.encode(" café")
    assert tokenizer.vocab_size == 50257
    assert tokenizer.eos_id == 50256


@pytest.mark.parametrize("name", list(CASES))
def test_encode_matches_classic_gpt2_bpe(
    name: str, tokenizer: Tokenizer, reference: ReferenceBPE
) -> None:
    text = CASES[name]
    assert tokenizer.encode(text) == reference.encode(text)


@pytest.mark.parametrize("name", list(CASES))
def test_decode_inverts_encode(name: str, tokenizer: Tokenizer) -> None:
    text = CASES[name]
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("name", list(CASES))
def test_incremental_decoder_never_emits_partial_characters(
    name: str, tokenizer: Tokenizer
) -> None:
    text = CASES[name]
    decoder = IncrementalDecoder(tokenizer)
    position = 0
    for token_id in tokenizer.encode(text):
        piece = decoder.push(token_id)
        # Every piece must be exactly the next stretch of the text: a split character
        # would show up as U+FFFD, which none of the inputs contains.
        assert piece == text[position : position + len(piece)]
        position += len(piece)
    assert position == len(text)
    assert decoder.flush() == ""
    assert decoder.text == text


def test_sampled_code_points_from_every_plane(
    tokenizer: Tokenizer, reference: ReferenceBPE
) -> None:
    # Checks that both split regexes put every kind of character in the same class
    # (letter, number, other, space), in the contexts where the class matters.
    # Mostly the planes where characters are assigned, plus some of the rest.
    rng = random.Random(11)
    sampled = rng.sample(range(0x32000), 4000) + rng.sample(range(0x32000, 0x110000), 300)
    code_points = [c for c in sampled if not 0xD800 <= c <= 0xDFFF]
    for code_point in code_points:
        char = chr(code_point)
        text = f"a{char} {char}1{char}  {char}\n'{char}"
        assert tokenizer.encode(text) == reference.encode(text), hex(code_point)


def test_truncated_gpt2_vocabulary_is_exact_bpe_of_its_merges() -> None:
    # A small model may keep only GPT-2's first tokens: still valid BPE with fewer merges.
    reference = ReferenceBPE(merge_limit=744)
    small = Tokenizer.from_vocab(ReferenceBPE().vocab_bytes()[:1000])
    assert small.vocab_size == 1000
    assert small.eos_id is None
    for text in [CASES["english_paragraphs"], CASES["emoji"], CASES["mixed_100k_seed_1"][:5000]]:
        ids = small.encode(text)
        assert ids == reference.encode(text)
        assert max(ids) < 1000
        assert small.decode(ids) == text


# --- special token ------------------------------------------------------------------------


def test_endoftext_typed_by_the_writer_is_plain_text(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("The end.<|endoftext|>")
    assert tokenizer.eos_id not in ids
    assert len(ids) > 2
    assert tokenizer.decode(ids) == "The end.<|endoftext|>"


def test_eos_token_decodes_to_its_text(tokenizer: Tokenizer) -> None:
    assert tokenizer.token_bytes(50256) == b"<|endoftext|>"
    assert tokenizer.decode([464, 50256]) == "The<|endoftext|>"


def test_eos_is_found_by_its_bytes_wherever_it_sits() -> None:
    byte_tokens = [bytes([b]) for b in range(256)]
    tokenizer = Tokenizer.from_vocab(byte_tokens[:10] + [b"<|endoftext|>"] + byte_tokens[10:])
    assert tokenizer.eos_id == 10
    assert tokenizer.encode("\x0a") == [11]  # byte 10 now has id 11


# --- other vocabularies -----------------------------------------------------------------


def test_byte_only_vocabulary_in_any_order_encodes_byte_by_byte() -> None:
    order = list(range(256))
    random.Random(3).shuffle(order)
    tokenizer = Tokenizer.from_vocab([bytes([b]) for b in order])
    id_of_byte = {b: i for i, b in enumerate(order)}
    text = "Héllo 🙂"
    assert tokenizer.encode(text) == [id_of_byte[b] for b in text.encode("utf-8")]
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.eos_id is None


def test_merges_apply_in_id_order_not_length_order() -> None:
    byte_tokens = [bytes([b]) for b in range(256)]
    # "bc" outranks "ab", so "abc" must become "a" + "bc" even though "ab" comes first.
    tokenizer = Tokenizer.from_vocab(byte_tokens + [b"bc", b"ab"])
    assert tokenizer.encode("abc") == [ord("a"), 256]
    assert tokenizer.encode("abd") == [257, ord("d")]


@pytest.mark.parametrize(
    ("vocab", "message"),
    [
        ([], "empty"),
        ([b"tok0", b"tok1", b"tok2"], "lacks 256 of the 256 single-byte tokens"),
        ([bytes([b]) for b in range(255)], "lacks 1 of the 256"),
        ([bytes([b]) for b in range(256)] + [b"ab", b"ab"], "repeats token 256"),
        ([bytes([b]) for b in range(256)] + [b""], "is empty"),
        ([bytes([b]) for b in range(256)] + [b"abc", b"ab"], "not a merge of two earlier"),
        (
            [bytes([b]) for b in range(256)] + [b"<|endoftext|>", b"<|endoftext|>"],
            "repeats token 256",
        ),
    ],
    ids=[
        "empty",
        "no_bytes",
        "missing_byte",
        "duplicate",
        "empty_token",
        "out_of_order",
        "two_eos",
    ],
)
def test_unsupported_vocabularies_are_refused_with_a_reason(
    vocab: list[bytes], message: str
) -> None:
    with pytest.raises(UnsupportedVocabulary, match=message):
        Tokenizer.from_vocab(vocab)


def test_gpt2_vocabulary_with_two_tokens_swapped_is_refused(reference: ReferenceBPE) -> None:
    vocab = reference.vocab_bytes()
    # " the" (id 262) is made from " t" (256) + "he" (258); moving it first breaks rank order.
    vocab[256], vocab[262] = vocab[262], vocab[256]
    with pytest.raises(UnsupportedVocabulary, match="Token 256"):
        Tokenizer.from_vocab(vocab)


# --- token ids ----------------------------------------------------------------------------


def test_valid_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.is_valid_id(0)
    assert tokenizer.is_valid_id(50256)
    assert tokenizer.is_valid_id(np.int64(995))
    assert not tokenizer.is_valid_id(-1)
    assert not tokenizer.is_valid_id(50257)
    assert not tokenizer.is_valid_id(2**62)
    assert not tokenizer.is_valid_id(1.0)  # type: ignore[arg-type]
    assert not tokenizer.is_valid_id(True)


def test_decode_accepts_numpy_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.decode(np.array([15496, 995], dtype=np.int32)) == "Hello world"
    assert tokenizer.token_bytes(np.int64(995)) == b" world"


@pytest.mark.parametrize("bad_id", [-1, 50257, 10**12])
def test_invalid_ids_raise_a_clear_error(tokenizer: Tokenizer, bad_id: int) -> None:
    with pytest.raises(InvalidTokenId, match=f"Token id {bad_id} is not in this model"):
        tokenizer.token_bytes(bad_id)
    with pytest.raises(InvalidTokenId, match=f"Token id {bad_id} is not"):
        tokenizer.decode([15496, bad_id, 995])
    with pytest.raises(InvalidTokenId):
        IncrementalDecoder(tokenizer).push(bad_id)


def test_lone_surrogates_in_text_do_not_crash(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("a\ud800b")
    assert tokenizer.decode(ids) == "a\ufffdb"


# --- incremental decoding of broken UTF-8 -------------------------------------------------


def test_incomplete_character_is_held_until_complete(tokenizer: Tokenizer) -> None:
    byte_id = _byte_token_ids(tokenizer)
    decoder = IncrementalDecoder(tokenizer)
    assert decoder.push(byte_id[0xE2]) == ""
    assert decoder.push(byte_id[0x82]) == ""
    assert decoder.push(byte_id[0xAC]) == "€"
    assert decoder.text == "€"


def test_lone_continuation_byte_is_replaced_at_once(tokenizer: Tokenizer) -> None:
    byte_id = _byte_token_ids(tokenizer)
    decoder = IncrementalDecoder(tokenizer)
    assert decoder.push(byte_id[0x80]) == "\ufffd"
    assert decoder.push(byte_id[0xFF]) == "\ufffd"


def test_interrupted_character_is_replaced_when_the_next_byte_arrives(
    tokenizer: Tokenizer,
) -> None:
    byte_id = _byte_token_ids(tokenizer)
    decoder = IncrementalDecoder(tokenizer)
    assert decoder.push(byte_id[0xF0]) == ""
    assert decoder.push(byte_id[0x9F]) == ""
    assert decoder.push(byte_id[ord("A")]) == "\ufffdA"


def test_flush_replaces_an_unfinished_character(tokenizer: Tokenizer) -> None:
    byte_id = _byte_token_ids(tokenizer)
    decoder = IncrementalDecoder(tokenizer)
    assert decoder.push(15496) == "Hello"
    assert decoder.push(byte_id[0xE2]) == ""
    assert decoder.flush() == "\ufffd"
    assert decoder.text == "Hello\ufffd"


def test_random_byte_soup_streams_like_one_shot_decode(tokenizer: Tokenizer) -> None:
    rng = random.Random(5)
    byte_id = _byte_token_ids(tokenizer)
    for _ in range(300):
        ids = [byte_id[rng.choice([0x41, 0x80, 0xBF, 0xC3, 0xE2, 0xF0, 0x9F, 0xFF, 0xED])]]
        ids += [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randint(0, 6))]
        ids += [byte_id[rng.randrange(256)] for _ in range(rng.randint(0, 6))]
        decoder = IncrementalDecoder(tokenizer)
        streamed = "".join(decoder.push(token_id) for token_id in ids)
        # Whatever came before, a plain ASCII byte settles everything held back.
        settled = decoder.push(byte_id[ord("A")])
        assert settled.endswith("A")
        assert decoder.flush() == ""
        assert streamed + settled == tokenizer.decode(ids) + "A"
        assert decoder.text == streamed + settled
