"""The suggestion controller: when to ask for ghost text, and which answers may be shown.

It sits between the editor widget (which reports what the writer does) and a
SuggestionSource (which generates text). It never touches a widget, so every rule here
is tested with a scripted source and plain method calls:

    - an edit restarts the debounce timer; when it fires, a request goes out,
    - every request has a new, increasing id; an edit or a cursor move cancels the one
      in flight, and anything the source still sends for an id that is not the current
      one is dropped, so a stale continuation never reaches the screen,
    - characters that match the start of the ghost text consume it (type-through),
      anything else dismisses it,
    - alternatives are generated on demand, each with its own seed,
    - new sampling settings restart a suggestion that is still being generated, so a
      change shows at once (a suggestion already complete stays as it is),
    - the writer may pick another token at any step of the suggestion on screen: it is
      generated again from there, the tokens before that step and the chosen one kept,
    - nothing is requested while text is selected or an input method is composing, and
      by default not in the middle of a word (Ctrl+Space still asks, even then).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from PySide6.QtCore import QObject, QTimer, Signal

from writer_app.engine.sampling import SamplingSettings
from writer_app.services.suggestion import (
    Alternative,
    Suggestion,
    TokenStep,
    is_mid_word,
    prompt_for,
)

SEED_LIMIT = 2**31  # seeds are non-negative 31-bit integers (SamplingSettings.LIMITS)


class SuggestionSource(QObject):
    """What generates suggestions. The engine's worker implements this; tests script it.

    request() must return at once and answer later through the signals, always with the
    request id it was given. After cancel(id) the source may still emit for that id (a
    piece may already be queued); the controller ignores it.

    forced_ids are tokens that follow the prompt because the writer chose them: the
    source continues after them and does not send their text (the controller shows it
    already). The controller passes forced_ids only when there are some, so a source that
    cannot force tokens still serves ordinary suggestions.

    A source that knows the tokens it generates may also emit `step` for each, before
    that token's text piece (which may be empty: text held back is sent later).
    """

    token = Signal(int, str)  # request_id, next piece of text
    step = Signal(int, object)  # request_id, TokenStep of the next generated token
    finished = Signal(int, str)  # request_id, reason ("stop", "length", "cancelled", ...)
    failed = Signal(int, str)  # request_id, a sentence for the writer

    def request(
        self,
        request_id: int,
        prompt_text: str,
        settings: SamplingSettings,
        seed: int,
        forced_ids: tuple[int, ...] = (),
    ) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement request()")

    def cancel(self, request_id: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement cancel()")

    def prepare(self, prompt_text: str, settings: SamplingSettings) -> object:
        """The writer is typing towards a request for this prompt: get ready for it
        (e.g. evaluate the prompt now). Optional; the default does nothing."""
        return None


class AcceptPart(Enum):
    ALL = "all"  # Tab
    WORD = "word"  # Ctrl+Right
    SENTENCE = "sentence"  # Shift+Tab: to the end of the sentence or line
    LINE = "line"


@dataclass(frozen=True)
class SuggestionPreferences:
    auto_trigger: bool = True  # suggest after a pause in typing (Ctrl+Space works anyway)
    debounce_ms: int = 300
    suggest_mid_word: bool = False
    # False: a suggestion is shaped to fit the text after the cursor (trimmed where it
    # would repeat it). True: written as if the cursor were at the end of the text.
    ignore_text_after_cursor: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.debounce_ms <= 10_000:
            raise ValueError(
                f"The typing pause must be between 0 and 10000 ms, got {self.debounce_ms}."
            )


@dataclass(frozen=True)
class EditorContext:
    before: str = ""  # text before the cursor
    after: str = ""  # text after the cursor
    position: int = 0  # cursor position in the document (UTF-16 units)
    revision: int = 0  # changes whenever the text changes
    has_selection: bool = False


@dataclass
class _InFlight:
    request_id: int
    alternative: Alternative


class SuggestionController(QObject):
    ghostChanged = Signal(object)  # Suggestion (its text may be empty) or None
    contextChanged = Signal(object)  # EditorContext: the text or the cursor moved
    busyChanged = Signal(bool)  # a request is being generated
    errorOccurred = Signal(str)  # the source failed; a sentence for the status bar
    sourceChanged = Signal(object)  # SuggestionSource: suggestions now come from it

    def __init__(
        self,
        source: SuggestionSource,
        settings: SamplingSettings | None = None,
        preferences: SuggestionPreferences | None = None,
        rng: random.Random | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._source = source
        self._settings = settings or SamplingSettings()
        self._preferences = preferences or SuggestionPreferences()
        self._rng = rng or random.Random()
        self._drawn_seed: int | None = None  # see _first_seed
        self._context = EditorContext()
        self._composing = False
        self._suggestion: Suggestion | None = None
        self._in_flight: _InFlight | None = None
        self._last_request_id = 0
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(self._preferences.debounce_ms)
        self._debounce.timeout.connect(self._on_debounce_timeout)
        self._connect_source(source, connect=True)

    @property
    def source(self) -> SuggestionSource:
        return self._source

    def set_source(self, source: SuggestionSource) -> None:
        """Generate with another source from now on (Model ▸ Engine: local or remote).
        The suggestion in progress is dropped; the old source's late answers are ignored."""
        if source is self._source:
            return
        self._drop_suggestion()
        self._connect_source(self._source, connect=False)
        self._source = source
        self._connect_source(source, connect=True)
        self.sourceChanged.emit(source)

    def _connect_source(self, source: SuggestionSource, *, connect: bool) -> None:
        for signal, slot in (
            (source.token, self._on_token),
            (source.step, self._on_step),
            (source.finished, self._on_finished),
            (source.failed, self._on_failed),
        ):
            signal.connect(slot) if connect else signal.disconnect(slot)

    # --- settings -------------------------------------------------------------------

    @property
    def settings(self) -> SamplingSettings:
        return self._settings

    def set_settings(self, settings: SamplingSettings) -> None:
        """Used from the next request on. A suggestion still being generated is started
        again with them; one already complete stays on screen as it is."""
        if settings == self._settings:
            return  # the app passes the sampling on with every settings change
        self._settings = settings
        if self._in_flight is not None:
            self._start(fresh_seed=False)

    @property
    def preferences(self) -> SuggestionPreferences:
        return self._preferences

    def set_preferences(self, preferences: SuggestionPreferences) -> None:
        self._preferences = preferences
        self._debounce.setInterval(preferences.debounce_ms)
        if not preferences.auto_trigger:
            self._debounce.stop()

    # --- state for the view ---------------------------------------------------------

    @property
    def suggestion(self) -> Suggestion | None:
        return self._suggestion

    @property
    def context(self) -> EditorContext:
        return self._context

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    @property
    def composing(self) -> bool:
        return self._composing

    @property
    def debounce_pending(self) -> bool:
        return self._debounce.isActive()

    # --- what the editor reports ----------------------------------------------------

    def update_context(
        self,
        before: str,
        after: str,
        position: int,
        revision: int,
        has_selection: bool = False,
    ) -> None:
        """The editor's text or cursor changed. Call it for every edit and cursor move;
        repeated calls with the same state are harmless."""
        context = EditorContext(before, after, position, revision, has_selection)
        if context == self._context:
            return
        edited = revision != self._context.revision
        self._context = context
        self.contextChanged.emit(context)
        if self._keeps_suggestion(context):
            if not self._suggestion.exhausted:
                self.ghostChanged.emit(self._suggestion)
                return
            self._drop_suggestion()  # used up: like any other edit, it may start a new one
        else:
            self._drop_suggestion()
        if edited:
            self._ask_after_the_pause()
        else:
            self._debounce.stop()
            self._prepare_for_the_cursor()

    def set_composing(self, composing: bool) -> None:
        """An input method started or ended composing text: a ghost would collide with
        its pre-edit text, so none is shown or requested meanwhile."""
        self._composing = composing
        if composing:
            self._debounce.stop()
            self._drop_suggestion()

    # --- what the writer asks for ---------------------------------------------------

    def trigger(self) -> bool:
        """Ctrl+Space: suggest now, even with auto-suggest off or mid-word."""
        return self._start(fresh_seed=False)

    def retry(self) -> bool:
        """Ctrl+Shift+Space: throw the suggestion away and generate a new one, new seed."""
        return self._start(fresh_seed=True)

    def dismiss(self) -> bool:
        """Esc. Returns False when there was nothing to dismiss (Esc then means
        whatever else it means)."""
        had_something = self._suggestion is not None or self._debounce.isActive()
        self._debounce.stop()
        self._drop_suggestion()
        return had_something

    def accept(self, part: AcceptPart = AcceptPart.ALL) -> str:
        """Take (part of) the ghost text. Returns what the editor must insert at the
        cursor, "" for nothing; the rest stays on screen."""
        suggestion = self._suggestion
        if suggestion is None or not suggestion.text:
            return ""
        if part is AcceptPart.ALL:
            # Taken as it is: stop generating. Text held back to see whether it ends a
            # sentence (a final ".") is the model's own and comes along.
            self._stop_generating()
            suggestion.finish(suggestion.current)
            text = suggestion.text
        elif part is AcceptPart.WORD:
            text = suggestion.next_word()
        elif part is AcceptPart.SENTENCE:
            text = suggestion.to_sentence_end()
        else:
            text = suggestion.to_line_end()
        if not text:
            return ""
        suggestion.consume(text)
        return text

    def cycle(self, step: int) -> bool:
        """Alt+] (+1) / Alt+[ (-1): show the next or previous alternative, generating it
        if it does not exist yet. False when there is nothing to cycle."""
        suggestion = self._suggestion
        if suggestion is None or not suggestion.alternatives:
            return False
        count = len(suggestion.alternatives)
        may_grow = count < suggestion.total and not suggestion.consumed
        target = suggestion.index + step
        if 0 <= target < count:
            suggestion.select(target)
        elif may_grow and (target >= count or count == 1):
            self._generate_alternative(suggestion, self._new_seed(suggestion, fresh=False))
            suggestion.select(len(suggestion.alternatives) - 1)
        elif count > 1:
            suggestion.select(target % count)
        else:
            return False
        self.ghostChanged.emit(suggestion)
        return True

    def choose_token(self, step_index: int, token_id: int) -> bool:
        """Replace the suggestion on screen from token `step_index` on with `token_id`
        (one of that step's choices) and generate on after it. False when that is not
        possible: no such step or choice, or the writer already typed past that step."""
        suggestion = self._suggestion
        alternative = suggestion.current if suggestion is not None else None
        if alternative is None or not 0 <= step_index < len(alternative.steps):
            return False
        step = alternative.steps[step_index]
        choice = next((c for c in step.choices if c.token_id == token_id), None)
        if choice is None or alternative.step_start(step_index) < len(suggestion.consumed):
            return False
        chosen = TokenStep(choice.token_id, choice.text, choice.probability, step.choices)
        kept = [*alternative.steps[:step_index], chosen]
        self._stop_generating()
        if alternative not in suggestion.alternatives:
            return False
        new = suggestion.replace_alternative(alternative, alternative.seed, kept)
        if new.done:  # the chosen token itself ended the suggestion
            self._forget_if_empty(new)
        else:
            self._request(suggestion, new, tuple(s.token_id for s in kept))
        if self._suggestion is not None:
            self.ghostChanged.emit(suggestion)
        return True

    # --- requests -------------------------------------------------------------------

    def _may_request(self, manual: bool = False) -> bool:
        context = self._context
        if context.has_selection or self._composing or not context.before.strip():
            return False
        return (
            manual
            or self._preferences.suggest_mid_word
            or not is_mid_word(context.before, context.after)
        )

    def _prepare_for_the_cursor(self) -> None:
        """The cursor moved without an edit: no suggestion is due, but typing or
        Ctrl+Space may come next here, so the engine gets this prompt ready (in batches,
        faster than a request's own one-token-at-a-time evaluation)."""
        context = self._context
        if self._preferences.auto_trigger and not context.has_selection and not self._composing:
            self._source.prepare(prompt_for(context.before), self._settings_for_the_pause())

    def _ask_after_the_pause(self) -> None:
        """Start (or restart) the typing pause, and prewarm the prompt meanwhile."""
        if self._preferences.auto_trigger and self._may_request():
            self._debounce.start()
            self._source.prepare(prompt_for(self._context.before), self._settings_for_the_pause())
        else:
            self._debounce.stop()

    def _on_debounce_timeout(self) -> None:
        if self._preferences.auto_trigger and self._may_request():
            self._begin_suggestion(fresh_seed=False)

    def _start(self, fresh_seed: bool) -> bool:
        self._debounce.stop()
        self._drop_suggestion()
        if not self._may_request(manual=True):
            return False
        self._begin_suggestion(fresh_seed)
        return True

    def _begin_suggestion(self, fresh_seed: bool) -> None:
        context = self._context
        settings = self._settings
        suggestion = Suggestion(
            anchor=context.position,
            before=context.before,
            after="" if self._preferences.ignore_text_after_cursor else context.after,
            revision=context.revision,
            stop_at=settings.stop_at,
            # Greedy decoding gives the same text for every seed: one is all there is.
            total=1 if settings.greedy else settings.alternatives,
        )
        self._suggestion = suggestion
        self._generate_alternative(suggestion, self._new_seed(suggestion, fresh_seed))
        self.ghostChanged.emit(suggestion)

    def _generate_alternative(self, suggestion: Suggestion, seed: int) -> None:
        # One model, one request at a time: the newest wish wins.
        self._stop_generating()
        self._request(suggestion, suggestion.add_alternative(seed))

    def _request(
        self, suggestion: Suggestion, alternative: Alternative, forced_ids: tuple[int, ...] = ()
    ) -> None:
        self._last_request_id += 1
        self._in_flight = _InFlight(self._last_request_id, alternative)
        self.busyChanged.emit(True)
        prompt = prompt_for(suggestion.before)
        if forced_ids:
            self._source.request(
                self._last_request_id, prompt, self._settings, alternative.seed, forced_ids
            )
        else:
            self._source.request(self._last_request_id, prompt, self._settings, alternative.seed)

    def _settings_for_the_pause(self) -> SamplingSettings:
        """The settings the next suggestion will be asked with, its seed included, so a
        prewarm can begin exactly that generation (llama.cpp draws its first token)."""
        return self._settings.with_changes(seed=self._first_seed())

    def _first_seed(self) -> int:
        """The seed of the next suggestion's first alternative: the settings' own, or a
        random one drawn now and kept until a suggestion uses it."""
        if self._settings.seed >= 0:
            return self._settings.seed
        if self._drawn_seed is None:
            self._drawn_seed = self._rng.randrange(SEED_LIMIT)
        return self._drawn_seed

    def _new_seed(self, suggestion: Suggestion, fresh: bool) -> int:
        """A fixed seed in the settings makes the first alternative reproducible and the
        others seed+1, seed+2...; otherwise (or on retry) every one is random."""
        if not fresh and not suggestion.alternatives:
            seed, self._drawn_seed = self._first_seed(), None
            return seed
        used = set(suggestion.seeds)
        if self._settings.seed >= 0 and not fresh:
            seed = (self._settings.seed + len(suggestion.alternatives)) % SEED_LIMIT
            while seed in used:
                seed = (seed + 1) % SEED_LIMIT
            return seed
        seed = self._rng.randrange(SEED_LIMIT)
        while seed in used:
            seed = self._rng.randrange(SEED_LIMIT)
        return seed

    def _stop_generating(self) -> None:
        """Cancel the request in flight; what it produced so far stays as it is."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        self._source.cancel(in_flight.request_id)
        suggestion = self._suggestion
        if suggestion is not None and in_flight.alternative in suggestion.alternatives:
            suggestion.finish(in_flight.alternative)
            if not in_flight.alternative.full_text:
                suggestion.remove(in_flight.alternative)
        self.busyChanged.emit(False)

    def _drop_suggestion(self) -> None:
        self._stop_generating()
        if self._suggestion is not None:
            self._suggestion = None
            self.ghostChanged.emit(None)

    def _keeps_suggestion(self, context: EditorContext) -> bool:
        """Whether the suggestion survives this edit: only typing that matches its text
        (or inserting an accepted part of it) does."""
        suggestion = self._suggestion
        if suggestion is None or context.has_selection or self._composing:
            return False
        if not context.before.startswith(suggestion.before) or context.after != suggestion.after:
            return False
        typed = context.before[len(suggestion.before) :]
        if typed == suggestion.consumed:
            return True
        if not typed.startswith(suggestion.consumed):
            return False  # a backspace into the typed-through part
        return suggestion.consume(typed[len(suggestion.consumed) :])

    # --- what the source says ---------------------------------------------------------

    def _current(self, request_id: int) -> _InFlight | None:
        in_flight = self._in_flight
        return in_flight if in_flight is not None and in_flight.request_id == request_id else None

    def _on_step(self, request_id: int, step: TokenStep) -> None:
        in_flight = self._current(request_id)
        if in_flight is not None and self._suggestion is not None:
            in_flight.alternative.steps.append(step)

    def _on_token(self, request_id: int, piece: str) -> None:
        in_flight = self._current(request_id)
        if in_flight is None or self._suggestion is None:
            return  # stale: the writer has moved on
        suggestion = self._suggestion
        alternative = in_flight.alternative
        shown_before = suggestion.text
        suggestion.append(alternative, piece)
        if not suggestion.is_wanted(alternative):
            self._stop_generating()  # reached its end (or no longer matches the typing)
            self._forget_if_empty(alternative)
        if self._suggestion is not None and (
            suggestion.text != shown_before or alternative is suggestion.current
        ):
            self.ghostChanged.emit(suggestion)

    def _on_finished(self, request_id: int, reason: str) -> None:
        self._end_request(request_id)

    def _on_failed(self, request_id: int, message: str) -> None:
        self._end_request(request_id, error=message)

    def _end_request(self, request_id: int, error: str | None = None) -> None:
        in_flight = self._current(request_id)
        if in_flight is None or self._suggestion is None:
            return
        self._in_flight = None
        self.busyChanged.emit(False)
        self._suggestion.finish(in_flight.alternative)
        self._forget_if_empty(in_flight.alternative)
        if error is not None:
            self.errorOccurred.emit(error)
        if self._suggestion is not None:
            self.ghostChanged.emit(self._suggestion)

    def _forget_if_empty(self, alternative: Alternative) -> None:
        """An alternative that ended with nothing to show is removed; a suggestion left
        with nothing to show is over."""
        suggestion = self._suggestion
        if suggestion is None:
            return
        nothing_to_show = alternative.done and not alternative.full_text[len(suggestion.consumed) :]
        others_left = alternative is not suggestion.current or len(suggestion.alternatives) > 1
        if nothing_to_show and others_left:
            suggestion.remove(alternative)
        if suggestion.exhausted:
            self._suggestion = None
            self.ghostChanged.emit(None)
            if suggestion.consumed:
                # Typed through to its end while it streamed: the text has moved on since
                # the request, so after a pause a new suggestion is due, as after any edit.
                self._ask_after_the_pause()
