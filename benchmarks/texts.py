"""The text the benchmark works with: Jane Austen (public domain, resources/source/austen),
joined into one line per paragraph the way a writer would type it."""

from __future__ import annotations

import re
from pathlib import Path

AUSTEN_DIR = Path(__file__).resolve().parents[1] / "resources" / "source" / "austen"


def prose(book: str) -> str:
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", book))
    return "\n\n".join(p.replace("_", "").replace("--", "\u2014") for p in paragraphs if p)


def _book(name: str) -> str:
    text = prose((AUSTEN_DIR / name).read_text("utf-8"))
    start = text.find("CHAPTER I")
    return text[start:] if start >= 0 else text


def document(words: int, book: str = "emma.txt") -> str:
    """The first `words` words of a novel (whole paragraphs, the last one cut)."""
    paragraphs = _book(book).split("\n\n")
    kept: list[str] = []
    count = 0
    for paragraph in paragraphs:
        paragraph_words = paragraph.split(" ")
        take = paragraph_words[: words - count]
        kept.append(" ".join(take))
        count += len(take)
        if count >= words:
            break
    return "\n\n".join(kept)


def typing_words(count: int, book: str = "persuasion.txt") -> list[str]:
    """Words for the simulated writer to type, in order, from another novel (ASCII only,
    so every character is one plain key press)."""
    words = [w for w in _book(book).split() if w.isascii() and w != "CHAPTER"]
    return words[300 : 300 + count]


def word_count(text: str) -> int:
    return len(text.split())


HUGE_PARAGRAPH_CHARS = 100_000
# The texts that were slowest to lay out: prose, one endless word, and a letter with a
# combining accent (two characters per letter to shape as one).
HUGE_PARAGRAPH_KINDS = ("prose", "one word", "combining accents")


def huge_paragraph(kind: str, chars: int = HUGE_PARAGRAPH_CHARS) -> str:
    """One paragraph (no line break) of `chars` characters of the given kind."""
    if kind == "prose":
        text = " ".join(document(chars // 4).split())  # a novel's opening, run together
        assert len(text) >= chars, "the novel is shorter than the paragraph asked for"
        return text[:chars].rstrip()
    if kind == "one word":
        return "a" * chars
    if kind == "combining accents":
        return "e\u0301" * (chars // 2)
    raise ValueError(f"no such paragraph kind: {kind}")
