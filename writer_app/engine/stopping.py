"""Stop rules, applied to the decoded text while a suggestion streams.

Tokens arrive as bytes; Utf8Stream turns them into text without ever splitting a
character (a token may end in the middle of a multi-byte character). StopScanner then
decides, character by character, how much of that text may be shown and whether the
suggestion is complete:

    sentence   ends after . ! ? or … (plus any closing quotes/brackets) once whitespace
               follows, or at a newline. Not sentence ends: common abbreviations
               ("Mr.", "Mrs.", "Dr.", "St.", "etc."), initials ("J. R. R."), decimals
               ("3.14"), and an ellipsis ("..." or "…") that a lowercase word follows
               ("I thought... maybe"), which needs one more character to decide
    paragraph  ends at a newline
    length     only the token limit ends the suggestion

A possible sentence end is held back until the next character shows whether it really
ends the sentence, so the writer never sees text that a later token takes back. The
whitespace that proves a sentence ended is not part of the suggestion. Newlines before
any visible text do not stop (a suggestion at the end of a paragraph may start a new
one). The end-of-text token never reaches this module: the generation loop stops on it.

The same rule decides how far Shift+Tab accepts (services/suggestion.py feeds the ghost
text through a StopScanner), so the two always agree.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from writer_app.engine.sampling import StopAt

TERMINATORS = frozenset(".!?…")
# Full-width terminators need no following space (CJK text has none).
FULLWIDTH_TERMINATORS = frozenset("。！？")
CLOSERS = frozenset("\"'”’)]}»」』")
# Words that end in a period without ending the sentence (compared lowercase).
ABBREVIATIONS = frozenset(
    [
        # titles
        "mr",
        "mrs",
        "messrs",
        "ms",
        "dr",
        "prof",
        "rev",
        "hon",
        "gen",
        "col",
        "capt",
        "lt",
        "sgt",
        "gov",
        "sen",
        "rep",
        "st",
        "mt",
        "jr",
        "sr",
        # places
        "ave",
        "rd",
        "blvd",
        # everything else
        "vs",
        "etc",
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "nos",
        "fig",
        "figs",
        "approx",
        "dept",
        "est",
        "vol",
        "cf",
        "al",  # "et al."
        "ibid",
    ]
)
ELLIPSES = ("...", "…")
_LAST_WORD = re.compile(r"(\w+)$")
_TAIL_CHARS = 32  # enough text before a period to recognise an abbreviation


class Utf8Stream:
    """Bytes in, complete characters out; invalid bytes become U+FFFD, never a crash."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        """The rest at the end of the stream; an unfinished character becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)


@dataclass(frozen=True)
class StopResult:
    text: str  # what may be shown now
    stopped: bool  # the suggestion is complete; nothing after `text` belongs to it
    # Whether any character of the fed piece is part of the suggestion (shown now or
    # held back). False when a piece only proved that earlier text ended a sentence.
    piece_used: bool = True


class StopScanner:
    """Feeds decoded text pieces through one stop rule. Pure state machine."""

    def __init__(self, stop_at: StopAt, preceding_text: str = "") -> None:
        self._stop_at = StopAt(stop_at)
        self._tail = preceding_text[-_TAIL_CHARS:]  # text before the current character
        self._held = ""  # a possible sentence end, waiting for the next character
        # Whitespace after a held ellipsis, waiting for the word that decides it.
        self._held_space = ""
        self._seen_visible = False  # generated any non-whitespace yet
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def feed(self, piece: str) -> StopResult:
        if self._stopped:
            return StopResult("", True, False)
        out: list[str] = []
        used = False
        for char in piece:
            if self._held_space:
                if char.isspace() and char != "\n":
                    self._held_space += char
                    used = True
                    continue
                if char == "\n" or not char.islower():
                    out.append(self._held)
                    return self._stop(out, used)
                # "I thought... maybe": the sentence goes on.
                out.append(self._held + self._held_space)
                self._remember(self._held + self._held_space)
                self._held = self._held_space = ""
            if self._held:
                if char in CLOSERS or char in TERMINATORS or char in FULLWIDTH_TERMINATORS:
                    self._held += char
                    used = True
                    continue
                if char.isspace() and char != "\n" and self._held_is_ellipsis():
                    self._held_space = char
                    used = True
                    continue
                if char.isspace() or self._held_is_fullwidth_end():
                    out.append(self._held)
                    return self._stop(out, used)
                # "3.14", "e.g.x": not a sentence end after all.
                out.append(self._held)
                self._remember(self._held)
                self._held = ""
            if char == "\n" and self._stop_at != StopAt.LENGTH and self._seen_visible:
                return self._stop(out, used)
            used = True
            if self._stop_at == StopAt.SENTENCE and self._may_end_sentence(char):
                self._held = char
                self._seen_visible = True
                continue
            out.append(char)
            self._remember(char)
            if not char.isspace():
                self._seen_visible = True
        return StopResult("".join(out), False)

    def finish(self) -> str:
        """Text still held back when the generation ends for another reason."""
        held, self._held, self._held_space = self._held, "", ""
        return "" if self._stopped else held

    def _may_end_sentence(self, char: str) -> bool:
        if char in FULLWIDTH_TERMINATORS or char in "!?…":
            return True
        if char != ".":
            return False
        match = _LAST_WORD.search(self._tail)
        if match is None:
            return True
        word = match.group(1)
        # Initials ("J. R. R."), "e.g.", "i.e." and known abbreviations go on.
        return not (len(word) == 1 and word.isalpha()) and word.lower() not in ABBREVIATIONS

    def _held_is_ellipsis(self) -> bool:
        core = self._held.rstrip("".join(CLOSERS))
        return core.endswith(ELLIPSES)

    def _held_is_fullwidth_end(self) -> bool:
        return any(char in FULLWIDTH_TERMINATORS for char in self._held)

    def _remember(self, text: str) -> None:
        self._tail = (self._tail + text)[-_TAIL_CHARS:]

    def _stop(self, out: list[str], piece_used: bool) -> StopResult:
        self._stopped = True
        self._held = self._held_space = ""
        return StopResult("".join(out), True, piece_used)
