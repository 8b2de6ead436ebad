"""One ghost-text suggestion: what the writer sees in grey, and what each key takes of it.

Pure data and logic, no Qt, so every rule here is testable on plain strings.

A Suggestion is anchored where the cursor was when it was requested and remembers the
text around the cursor at that moment. The source streams raw text pieces into one of
its alternatives; each alternative shapes them on the way in:

    - the end-of-text marker and everything after it is dropped (held back while a
      piece could still be the start of the marker),
    - leading spaces are dropped when the text before the cursor already ends in
      whitespace, so accepting never makes a doubled space,
    - the stop rule (sentence / paragraph / length) is the engine's own StopScanner, so
      the screen and the engine always agree on where a suggestion ends,
    - the suggestion is cut where it would repeat the text after the cursor.

The writer can then type through it (consume), take the next word, sentence or line,
cycle through alternatives, or pick another token at one of its steps (each alternative
keeps the tokens it was made of, with their probabilities, as TokenSteps). Positions
are QTextDocument positions, i.e. UTF-16 code units, because that is what the editor's
cursor reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from writer_app.engine.protocol import Alternative as TokenChoice
from writer_app.engine.sampling import StopAt
from writer_app.engine.stopping import StopScanner

END_OF_TEXT = "<|endoftext|>"
_HEAD_CHARS = 24  # how much of the text after the cursor is compared against a suggestion

_WORD = re.compile(r"\s*[^\w\s]*\w+(?:['’-]\w+)*[^\w\s]*")
_ANY_TOKEN = re.compile(r"\s*\S+")


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: how far the editor's cursor moves over `text`."""
    return len(text.encode("utf-16-le")) // 2


def is_mid_word(before: str, after: str) -> bool:
    """True when the cursor sits inside a word ("wor|ld", "don|'t")."""
    if not before or not after:
        return False
    if not before[-1].isalnum():
        return False
    return after[0].isalnum() or (after[0] in "'’" and after[1:2].isalnum())


def prompt_for(before: str) -> str:
    """The prompt for the model: GPT-2 tokens carry their leading space, so a prompt that
    ends in a space makes the model continue badly. The space comes back as the first
    character of the generation (and shaping drops it if the document already has it)."""
    return before.rstrip(" \t")


def _after_head(after: str) -> str:
    """The start of the text after the cursor, as far as a suggestion could repeat it."""
    head = after.lstrip(" \t").split("\n", 1)[0][:_HEAD_CHARS].rstrip()
    cut_mid_word = (
        len(head) == _HEAD_CHARS and after.lstrip(" \t")[_HEAD_CHARS : _HEAD_CHARS + 1].isalnum()
    )
    if cut_mid_word:
        # Compare whole words only: a half word would match too eagerly.
        head = head.rsplit(" ", 1)[0] if " " in head else head
    return head


def cut_before_duplicate(text: str, after: str, final: bool) -> tuple[str, bool]:
    """Cut `text` where it starts repeating the text after the cursor.

    Returns (text to show, whether a cut happened). While streaming (not final), a tail
    that may turn into a repeat is held back rather than shown and later taken back.
    """
    head = _after_head(after)
    if not head:
        return text, False
    starts_word = head[0].isalnum()
    ends_word = head[-1].isalnum()
    # The repeat must begin where a word begins; whole words only at the end as well.
    start_guard = r"(?<!\w)" if starts_word else ""
    end_guard = r"(?!\w)" if ends_word else ""
    for match in re.finditer(start_guard + re.escape(head), text):
        end = match.end()
        if end == len(text) and ends_word and not final:
            return text[: match.start()], False  # "a" might still become "an": wait
        if re.match(end_guard, text[end:]):
            kept = text[: match.start()]
            if after[:1] in (" ", "\t"):
                kept = kept.rstrip(" \t")  # the document already has the space
            return kept, True
    if not final:
        # Hold back a tail that is the beginning of the head ("... the en" before "end").
        for size in range(min(len(head) - 1, len(text)), 0, -1):
            start = len(text) - size
            if text.endswith(head[:size]) and (
                not starts_word or start == 0 or not text[start - 1].isalnum()
            ):
                return text[:start], False
    return text, False


class TextShaper:
    """Turns the raw pieces of one generation into the text to show, as they stream."""

    def __init__(self, before: str, after: str, stop_at: StopAt) -> None:
        self._after = after
        self._drop_leading_space = not before or before[-1].isspace()
        self._scanner = StopScanner(stop_at, preceding_text=before)
        self._raw_pending = ""  # may be the start of END_OF_TEXT
        self._shaped = ""  # after the marker, leading-space and stop rules
        self._visible = ""  # _shaped minus any repeat of the text after the cursor
        self.dropped_lead = 0  # leading characters dropped (a space the document has)
        self.final = False  # no more pieces will come
        self.complete = False  # the suggestion reached its natural end

    def feed(self, piece: str) -> None:
        if self.complete or self.final:
            return
        raw = self._raw_pending + piece
        self._raw_pending = ""
        marker_at = raw.find(END_OF_TEXT)
        if marker_at >= 0:
            self._push(raw[:marker_at])
            self._end(complete=True)
            return
        keep = _marker_prefix_length(raw)
        if keep:
            raw, self._raw_pending = raw[:-keep], raw[-keep:]
        self._push(raw)

    def finish(self) -> None:
        """The source has nothing more: whatever was held back is now shown."""
        if not self.final:
            self._push(self._raw_pending)
            self._raw_pending = ""
            self._end(complete=self.complete)

    @property
    def text(self) -> str:
        return self._visible

    @property
    def done(self) -> bool:
        return self.final or self.complete

    def _push(self, raw: str) -> None:
        if self.complete:
            return
        if self._drop_leading_space and not self._shaped:
            kept = raw.lstrip(" \t")
            self.dropped_lead += len(raw) - len(kept)
            raw = kept
            if not raw:
                return
        result = self._scanner.feed(raw)
        self._shaped += result.text
        if result.stopped:
            self._end(complete=True)
        else:
            self._update_visible()

    def _end(self, complete: bool) -> None:
        if not self._scanner.stopped:
            self._shaped += self._scanner.finish()
        self.complete = complete
        self.final = True
        self._update_visible()

    def _update_visible(self) -> None:
        self._visible, cut = cut_before_duplicate(self._shaped, self._after, self.final)
        if cut:
            self._shaped = self._visible
            self.complete = self.final = True


def _marker_prefix_length(raw: str) -> int:
    """How many trailing characters of `raw` could be the start of END_OF_TEXT."""
    for size in range(min(len(END_OF_TEXT) - 1, len(raw)), 0, -1):
        if raw.endswith(END_OF_TEXT[:size]):
            return size
    return 0


@dataclass(frozen=True)
class TokenStep:
    """One token of a generated continuation, as the probability view shows it."""

    token_id: int
    text: str  # the token on its own (U+FFFD for a byte that is only part of a character)
    probability: float | None  # how likely the model made it at that step (None: unknown)
    choices: tuple[TokenChoice, ...] = ()  # the likeliest tokens at that step, best first


@dataclass(eq=False)
class Alternative:
    """One generated continuation. Compared by identity: two may have the same text."""

    seed: int
    shaper: TextShaper
    steps: list[TokenStep] = field(default_factory=list)

    @property
    def full_text(self) -> str:
        return self.shaper.text

    @property
    def done(self) -> bool:
        return self.shaper.done

    def step_start(self, index: int) -> int:
        """Where step `index` begins in full_text (0 for steps inside a dropped lead)."""
        raw_start = sum(len(step.text) for step in self.steps[:index])
        return max(0, raw_start - self.shaper.dropped_lead)

    def visible_steps(self) -> list[TokenStep]:
        """The steps whose text is (at least partly) in full_text: a stop rule or a
        repeat of the text after the cursor may have cut the rest."""
        shown = len(self.full_text)
        return [step for i, step in enumerate(self.steps) if self.step_start(i) < shown]


@dataclass(eq=False)
class Suggestion:
    anchor: int  # document position (UTF-16 units) of the cursor when it was requested
    before: str  # text before the cursor it was generated for
    after: str  # text after the cursor at that time
    revision: int  # the editor's edit counter at that time
    stop_at: StopAt = StopAt.SENTENCE
    total: int = 1  # how many alternatives may exist (the "/3" of "2/3")
    alternatives: list[Alternative] = field(default_factory=list)
    index: int = 0  # the alternative on screen
    consumed: str = ""  # typed through or accepted since the anchor

    # --- alternatives -------------------------------------------------------------

    def add_alternative(self, seed: int) -> Alternative:
        alternative = Alternative(seed, TextShaper(self.before, self.after, self.stop_at))
        self.alternatives.append(alternative)
        return alternative

    def replace_alternative(
        self, old: Alternative, seed: int, steps: list[TokenStep]
    ) -> Alternative:
        """A new alternative in `old`'s place (shown if `old` was), starting with `steps`
        (their text is fed in as if it had been generated)."""
        new = Alternative(seed, TextShaper(self.before, self.after, self.stop_at), list(steps))
        self.alternatives[self.alternatives.index(old)] = new
        new.shaper.feed("".join(step.text for step in steps))
        return new

    def remove(self, alternative: Alternative) -> None:
        """Forget an alternative (empty, or no longer matching what was typed)."""
        if alternative not in self.alternatives:
            return
        shown = self.current
        self.alternatives.remove(alternative)
        if shown is alternative or shown is None:
            self.index = max(0, min(self.index, len(self.alternatives)) - 1)
        else:
            self.index = self.alternatives.index(shown)

    def select(self, index: int) -> None:
        if not 0 <= index < len(self.alternatives):
            raise IndexError(f"There is no alternative {index + 1} of {len(self.alternatives)}.")
        self.index = index

    @property
    def current(self) -> Alternative | None:
        return self.alternatives[self.index] if self.alternatives else None

    @property
    def seeds(self) -> list[int]:
        return [alternative.seed for alternative in self.alternatives]

    @property
    def counter_text(self) -> str:
        """ "2/3" once there is more than one alternative; "" before that."""
        if len(self.alternatives) < 2:
            return ""
        return f"{self.index + 1}/{max(self.total, len(self.alternatives))}"

    # --- streaming ------------------------------------------------------------------

    def append(self, alternative: Alternative, piece: str) -> None:
        alternative.shaper.feed(piece)
        self._drop_if_diverged(alternative)

    def finish(self, alternative: Alternative) -> None:
        alternative.shaper.finish()
        self._drop_if_diverged(alternative)

    def is_wanted(self, alternative: Alternative) -> bool:
        """Still part of this suggestion and still able to produce more text."""
        return alternative in self.alternatives and not alternative.done

    # --- what the writer sees -------------------------------------------------------

    @property
    def text(self) -> str:
        """The grey text: the shown alternative, minus what was already typed or taken."""
        alternative = self.current
        if alternative is None:
            return ""
        full = alternative.full_text
        return full[len(self.consumed) :] if full.startswith(self.consumed) else ""

    @property
    def done(self) -> bool:
        alternative = self.current
        return alternative is None or alternative.done

    @property
    def exhausted(self) -> bool:
        """Nothing left to show and nothing more coming: the suggestion is over."""
        return self.done and not self.text

    @property
    def position(self) -> int:
        """Where the grey text starts now: the anchor plus whatever was typed through."""
        return self.anchor + utf16_length(self.consumed)

    def fits(self, before: str, after: str) -> bool:
        """Whether the editor's text around the cursor is still the one this was made for."""
        return after == self.after and before == self.before + self.consumed

    # --- taking parts of it ---------------------------------------------------------

    def next_word(self) -> str:
        """Accept-word: leading whitespace, one word, and the punctuation stuck to it."""
        match = _WORD.match(self.text) or _ANY_TOKEN.match(self.text)
        return match.group(0) if match else self.text

    def to_line_end(self) -> str:
        """Up to the end of the line; a leading line break comes with the line after it."""
        text = self.text
        body_start = len(text) - len(text.lstrip("\n"))
        line_end = text.find("\n", body_start)
        return text if line_end < 0 else text[:line_end]

    def to_sentence_end(self) -> str:
        """Up to and including the end of the first sentence, but never past the line.
        Where a sentence ends is the engine's own rule (abbreviations, initials, decimals,
        ellipses), so Shift+Tab stops where a sentence suggestion would."""
        line = self.to_line_end()
        result = StopScanner(StopAt.SENTENCE, self.before + self.consumed).feed(line)
        return result.text if result.stopped else line

    def consume(self, typed: str) -> bool:
        """Type-through: True if `typed` is how the grey text starts (it is then used up)."""
        if not typed or not self.text.startswith(typed):
            return False
        self.consumed += typed
        for alternative in list(self.alternatives):
            self._drop_if_diverged(alternative)
        return True

    def _drop_if_diverged(self, alternative: Alternative) -> None:
        if alternative is self.current:
            return  # the shown one is what consumed came from: it always fits
        full = alternative.full_text
        fits = full.startswith(self.consumed) or (
            not alternative.done and self.consumed.startswith(full)
        )
        if not fits:
            self.remove(alternative)
