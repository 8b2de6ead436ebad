"""Text from files made safe to show: one line, no terminal control sequences.

Tensor names, vocabulary tokens and file names come from files anyone can write. Put
into a message as they are, a newline splits an error into two lines, an ESC byte
reaches the terminal as the start of a control sequence, and a file name that is not
UTF-8 (held by Python as lone surrogates) can't even be printed. Every message built
from such text passes it through printable().
"""

from __future__ import annotations

import unicodedata

# Line and paragraph separators end a line in many terminals and editors too.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Bidirectional overrides and isolates can make a name display as something else.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """`text` with control characters escaped (\\n, \\x1b, \\u2028) and bytes that were not
    UTF-8 shown as \\xNN. Text that is already printable comes back unchanged, so applying
    it twice changes nothing."""
    if text.isprintable():
        return text
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if char not in _BIDI_CONTROLS and unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    escaped = char.encode("unicode_escape").decode("ascii")
    return escaped if escaped != char else f"\\u{code:04x}"
