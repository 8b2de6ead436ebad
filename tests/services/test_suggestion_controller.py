"""SuggestionController with a scripted source and no widgets."""

from __future__ import annotations

import random

import pytest

from tests.support.dummy_suggestion_source import DummySuggestionSource
from writer_app.engine.protocol import Alternative as TokenChoice
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.services.suggestion import TokenStep
from writer_app.services.suggestion_controller import (
    AcceptPart,
    SuggestionController,
    SuggestionPreferences,
    SuggestionSource,
)

FAST = SuggestionPreferences(debounce_ms=20)
LENGTH_STOP = SamplingSettings(stop_at=StopAt.LENGTH)


class Editor:
    """Stands in for the widget: holds text and cursor, reports like the widget does."""

    def __init__(self, controller: SuggestionController, text: str = "") -> None:
        self.controller = controller
        self.text = text
        self.cursor = len(text)
        self.revision = 0
        self.selection = False

    def report(self) -> None:
        self.controller.update_context(
            self.text[: self.cursor],
            self.text[self.cursor :],
            self.cursor,
            self.revision,
            self.selection,
        )

    def type(self, typed: str) -> None:
        self.text = self.text[: self.cursor] + typed + self.text[self.cursor :]
        self.cursor += len(typed)
        self.revision += 1
        self.report()

    def move_to(self, position: int) -> None:
        self.cursor = position
        self.report()

    def select(self, selected: bool) -> None:
        self.selection = selected
        self.report()


@pytest.fixture
def source() -> DummySuggestionSource:
    return DummySuggestionSource(auto_stream=False)


def make_controller(source, settings=LENGTH_STOP, preferences=FAST, seed=1234):
    return SuggestionController(source, settings, preferences, rng=random.Random(seed))


@pytest.fixture
def controller(qtbot, source) -> SuggestionController:
    return make_controller(source)


@pytest.fixture
def ghosts(controller) -> list:
    """What the view was told, as (text or None) in order."""
    seen: list = []
    controller.ghostChanged.connect(lambda s: seen.append(None if s is None else s.text))
    return seen


def shown(controller) -> str | None:
    return None if controller.suggestion is None else controller.suggestion.text


# --- debounce and requests ------------------------------------------------------------------


def test_typing_requests_once_after_the_pause(qtbot, controller, source):
    editor = Editor(controller)
    for char in "The cat":
        editor.type(char)
    assert source.requests == []  # nothing while typing
    qtbot.waitUntil(lambda: len(source.requests) == 1)
    assert source.last.prompt == "The cat"
    assert controller.busy


def test_prompt_leaves_the_trailing_space_to_the_model(qtbot, controller, source):
    Editor(controller, "The cat ").type(" ")
    qtbot.waitUntil(lambda: len(source.requests) == 1)
    assert source.last.prompt == "The cat"


def test_settings_reach_the_source(qtbot, source):
    settings = SamplingSettings(temperature=0.5, max_tokens=9, stop_at=StopAt.LENGTH)
    controller = make_controller(source, settings=settings)
    Editor(controller, "Hello").type("!")
    assert controller.trigger()
    assert source.last.settings == settings


def test_streamed_pieces_show_as_they_arrive_and_busy_ends(qtbot, controller, source, ghosts):
    busy: list[bool] = []
    controller.busyChanged.connect(busy.append)
    Editor(controller, "The cat").report()
    controller.trigger()
    source.emit_piece(source.last.request_id, " sat")
    source.emit_piece(source.last.request_id, " down")
    source.emit_finished(source.last.request_id)
    assert ghosts == ["", " sat", " sat down", " sat down"]
    assert busy == [True, False]
    assert controller.suggestion.done


def test_edit_cancels_the_request_in_flight(qtbot, controller, source, ghosts):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    first = source.last.request_id
    source.emit_piece(first, " sat")
    editor.type("s")
    assert source.cancelled == [first]
    assert controller.suggestion is None and ghosts[-1] is None
    assert not controller.busy
    assert controller.debounce_pending  # the edit asks again after the pause


def test_a_stale_piece_never_reaches_the_screen(qtbot, controller, source, ghosts):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    stale = source.last.request_id
    editor.type(" ran")
    qtbot.waitUntil(lambda: len(source.requests) == 2)
    current = source.last.request_id
    assert current > stale
    source.emit_piece(stale, " STALE")
    source.emit_finished(stale)
    source.emit_piece(current, " away")
    assert all(text is None or "STALE" not in text for text in ghosts)
    assert shown(controller) == " away"
    assert controller.busy  # the stale finish did not end the current request


def test_cursor_move_dismisses_without_asking_again(qtbot, controller, source, ghosts):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    source.stream_all()
    editor.move_to(3)
    assert controller.suggestion is None
    assert not controller.debounce_pending


def test_cursor_move_cancels_a_pending_pause(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    editor.type("s")
    assert controller.debounce_pending
    editor.move_to(0)
    assert not controller.debounce_pending


def test_request_ids_increase(qtbot, controller, source):
    editor = Editor(controller, "Hello")
    editor.report()
    for _ in range(3):
        controller.trigger()
    ids = [r.request_id for r in source.requests]
    assert ids == sorted(ids) and len(set(ids)) == 3


# --- when not to ask ----------------------------------------------------------------------


def test_no_request_while_text_is_selected(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    source.stream_all()
    editor.select(True)
    assert controller.suggestion is None
    editor.type("x")  # typing over a selection, still selected in this stand-in
    assert not controller.debounce_pending
    assert not controller.trigger()
    assert len(source.requests) == 1


def test_no_automatic_request_mid_word_by_default(qtbot, controller, source):
    editor = Editor(controller, "wor")
    editor.text = "world"
    editor.type("")  # the cursor sits in "wor|ld"
    editor.type("l")
    assert not controller.debounce_pending
    assert controller.trigger()  # Ctrl+Space asks anyway
    assert source.last.prompt == "worl"


def test_mid_word_requests_when_allowed(qtbot, source):
    controller = make_controller(
        source, preferences=SuggestionPreferences(debounce_ms=20, suggest_mid_word=True)
    )
    editor = Editor(controller, "world")
    editor.cursor = 3
    editor.type("x")
    qtbot.waitUntil(lambda: len(source.requests) == 1)


def test_auto_trigger_off_still_allows_manual_trigger(qtbot, source):
    controller = make_controller(source, preferences=SuggestionPreferences(auto_trigger=False))
    editor = Editor(controller, "The cat")
    editor.type(" sat")
    assert not controller.debounce_pending
    assert controller.trigger()
    assert source.last.prompt == "The cat sat"


def test_turning_auto_trigger_off_stops_a_pending_pause(qtbot, controller, source):
    Editor(controller, "The").type(" cat")
    assert controller.debounce_pending
    controller.set_preferences(SuggestionPreferences(auto_trigger=False))
    assert not controller.debounce_pending


def test_empty_document_asks_nothing(qtbot, controller, source):
    Editor(controller, "").type(" ")
    assert not controller.debounce_pending
    assert not controller.trigger()


def test_composition_dismisses_and_blocks_requests(qtbot, controller, source, ghosts):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    source.stream_all()
    controller.set_composing(True)
    assert controller.suggestion is None and ghosts[-1] is None
    editor.type("k")
    assert not controller.debounce_pending and not controller.trigger()
    controller.set_composing(False)
    editor.type("a")
    assert controller.debounce_pending


def test_bad_debounce_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="typing pause must be between"):
        SuggestionPreferences(debounce_ms=-5)


# --- type-through and accept --------------------------------------------------------------


def ready(controller, source, editor, pieces):
    editor.report()
    controller.trigger()
    for piece in pieces:
        source.emit_piece(source.last.request_id, piece)
    source.emit_finished(source.last.request_id)


def test_type_through_consumes_without_a_new_request(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat", " down"])
    editor.type(" s")
    assert shown(controller) == "at down"
    assert controller.suggestion.position == len("The cat s")
    assert not controller.debounce_pending and len(source.requests) == 1


def test_type_through_while_streaming_keeps_the_stream(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    source.emit_piece(source.last.request_id, " sat")
    editor.type(" sa")
    source.emit_piece(source.last.request_id, " down")
    assert shown(controller) == "t down"
    assert source.cancelled == []


def test_typing_through_to_the_end_of_a_stream_asks_again_after_the_pause(
    qtbot, controller, source
):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    source.emit_piece(source.last.request_id, " sat")
    editor.type(" sat")  # all that was shown, while more may still come
    assert controller.suggestion is not None and not controller.debounce_pending
    source.emit_finished(source.last.request_id)  # ...but nothing more did
    assert controller.suggestion is None
    qtbot.waitUntil(lambda: len(source.requests) == 2)
    assert source.last.prompt == "The cat sat"


def test_a_stream_that_ends_untouched_does_not_ask_again(qtbot, controller, source, ghosts):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat"])
    assert shown(controller) == " sat" and not controller.debounce_pending


def test_a_mismatching_character_dismisses_and_asks_again(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat"])
    editor.type(" r")
    assert controller.suggestion is None
    qtbot.waitUntil(lambda: len(source.requests) == 2)
    assert source.last.prompt == "The cat r"


def test_backspace_dismisses(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat"])
    editor.type(" s")
    editor.text, editor.cursor = "The cat ", 8
    editor.revision += 1
    editor.report()
    assert controller.suggestion is None


def test_accept_word_then_the_rest(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat,", " then", " slept"])
    word = controller.accept(AcceptPart.WORD)
    assert word == " sat,"
    editor.type(word)  # the widget inserts what accept() returned
    assert shown(controller) == " then slept"
    rest = controller.accept(AcceptPart.ALL)
    assert rest == " then slept"
    editor.type(rest)
    assert controller.suggestion is None
    assert editor.text == "The cat sat, then slept"
    assert controller.debounce_pending  # like any edit: a next suggestion may follow


def test_accept_sentence_and_line(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat.", " It", " purred\n", "Next"])
    assert controller.accept(AcceptPart.SENTENCE) == " sat."
    editor.type(" sat.")
    assert controller.accept(AcceptPart.LINE) == " It purred"


def test_accept_all_while_streaming_stops_the_stream(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    request = source.last.request_id
    source.emit_piece(request, " sat")
    assert controller.accept(AcceptPart.ALL) == " sat"
    assert source.cancelled == [request]
    editor.type(" sat")
    source.emit_piece(request, " late")
    assert controller.suggestion is None


def test_accept_with_nothing_shown_returns_nothing(qtbot, controller, source):
    assert controller.accept() == ""
    Editor(controller, "The cat").report()
    controller.trigger()
    assert controller.accept() == ""


def test_dismiss(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    assert not controller.dismiss()
    ready(controller, source, editor, [" sat"])
    assert controller.dismiss()
    assert controller.suggestion is None


# --- stop rules, failures, empty answers ----------------------------------------------------------


def test_reaching_the_stop_rule_cancels_the_rest_of_the_generation(qtbot, source):
    controller = make_controller(source, settings=SamplingSettings(stop_at=StopAt.SENTENCE))
    Editor(controller, "The cat").report()
    controller.trigger()
    request = source.last.request_id
    for piece in [" sat", ".", " It"]:
        source.emit_piece(request, piece)
    assert source.cancelled == [request]
    assert shown(controller) == " sat." and controller.suggestion.done
    assert not controller.busy


def test_failure_reports_a_message_and_ends_busy(qtbot, controller, source):
    Editor(controller, "The cat").report()
    source.fail_next = "The model file could not be read."
    with qtbot.waitSignal(controller.errorOccurred) as blocker:
        controller.trigger()
    assert blocker.args == ["The model file could not be read."]
    assert not controller.busy and controller.suggestion is None


def test_an_empty_answer_leaves_no_ghost(qtbot, controller, source, ghosts):
    Editor(controller, "The cat").report()
    controller.trigger()
    source.emit_piece(source.last.request_id, "<|endoftext|>")
    assert controller.suggestion is None and ghosts[-1] is None


def test_the_source_interface_says_what_is_missing(qtbot):
    with pytest.raises(NotImplementedError, match="does not implement request"):
        SuggestionSource().request(1, "x", SamplingSettings(), 0)


# --- alternatives, seeds, retry ---------------------------------------------------------------------


def test_cycling_generates_alternatives_on_demand_with_distinct_seeds(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat"])
    assert controller.cycle(+1)
    assert len(source.requests) == 2
    source.emit_piece(source.last.request_id, " ran")
    source.emit_finished(source.last.request_id)
    assert shown(controller) == " ran"
    assert controller.suggestion.counter_text == "2/3"
    assert controller.cycle(-1)
    assert shown(controller) == " sat" and len(source.requests) == 2  # already there
    assert controller.cycle(-1)  # backwards from the first: wraps to the last one
    assert shown(controller) == " ran"
    assert controller.cycle(+1)
    source.stream_all()
    assert controller.suggestion.counter_text == "3/3"
    assert controller.cycle(+1)  # all three exist: wraps without asking
    assert controller.suggestion.counter_text == "1/3" and len(source.requests) == 3
    seeds = [r.seed for r in source.requests]
    assert len(set(seeds)) == 3
    assert {r.prompt for r in source.requests} == {"The cat"}


def test_fixed_seed_gives_consecutive_seeds(qtbot, source):
    controller = make_controller(source, settings=SamplingSettings(seed=41, stop_at=StopAt.LENGTH))
    ready(controller, source, Editor(controller, "The cat"), [" sat"])
    controller.cycle(+1)
    source.stream_all()
    controller.cycle(+1)
    assert [r.seed for r in source.requests] == [41, 42, 43]


def test_cycling_to_a_new_alternative_cancels_the_one_streaming(qtbot, controller, source):
    Editor(controller, "The cat").report()
    controller.trigger()
    first = source.last.request_id
    source.emit_piece(first, " sat")
    controller.cycle(+1)
    assert source.cancelled == [first]
    source.emit_piece(first, " STALE")
    controller.cycle(-1)
    assert shown(controller) == " sat"


def test_greedy_decoding_has_no_alternatives(qtbot, source):
    controller = make_controller(
        source, settings=SamplingSettings(temperature=0.0, stop_at=StopAt.LENGTH)
    )
    ready(controller, source, Editor(controller, "The cat"), [" sat"])
    assert not controller.cycle(+1)
    assert len(source.requests) == 1


def test_no_new_alternatives_after_typing_through(qtbot, controller, source):
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat"])
    editor.type(" s")
    assert not controller.cycle(+1)


def test_retry_uses_a_fresh_seed_even_with_a_fixed_one(qtbot, source):
    controller = make_controller(source, settings=SamplingSettings(seed=5, stop_at=StopAt.LENGTH))
    editor = Editor(controller, "The cat")
    ready(controller, source, editor, [" sat"])
    assert controller.retry()
    assert source.requests[0].seed == 5
    assert source.last.seed != 5
    assert controller.suggestion.alternatives[0].seed == source.last.seed


def test_retry_cancels_the_request_in_flight(qtbot, controller, source):
    Editor(controller, "The cat").report()
    controller.trigger()
    first = source.last.request_id
    controller.retry()
    assert source.cancelled == [first]
    source.emit_piece(first, " STALE")
    assert shown(controller) == ""


def test_automatic_streaming_end_to_end(qtbot):
    source = DummySuggestionSource(default=[" sat", " on", " the", " mat"], step_ms=1)
    controller = make_controller(source)
    Editor(controller, "The").type(" cat")
    qtbot.waitUntil(lambda: controller.suggestion is not None and controller.suggestion.done)
    assert shown(controller) == " sat on the mat"

def test_accept_all_takes_a_held_back_sentence_end_along(qtbot, source):
    controller = make_controller(source, settings=SamplingSettings(stop_at=StopAt.SENTENCE))
    editor = Editor(controller, "The cat")
    editor.report()
    controller.trigger()
    source.emit_piece(source.last.request_id, " sat")
    source.emit_piece(source.last.request_id, ".")  # held: "3." or "sat." is not known yet
    assert shown(controller) == " sat"
    assert controller.accept(AcceptPart.ALL) == " sat."
    editor.type(" sat.")
    assert controller.suggestion is None


# --- new settings, the editor context, choosing another token ---------------------------------


def test_new_settings_restart_a_suggestion_in_flight(qtbot, controller, source, ghosts):
    Editor(controller, "The cat").report()
    controller.trigger()
    first = source.last.request_id
    source.emit_piece(first, " sat")
    warmer = LENGTH_STOP.with_changes(temperature=1.3)
    controller.set_settings(warmer)
    assert source.cancelled == [first]
    assert source.last.request_id != first and source.last.settings == warmer
    assert source.last.prompt == "The cat"
    assert ghosts[-1] == ""  # the old text is gone; the new one streams in
    source.emit_piece(first, " late")  # the old request's stragglers are ignored
    source.emit_piece(source.last.request_id, " purred")
    assert shown(controller) == " purred"


def test_new_settings_leave_a_complete_suggestion_and_apply_next_time(qtbot, controller, source):
    Editor(controller, "The cat").report()
    controller.trigger()
    source.stream_all()
    colder = LENGTH_STOP.with_changes(temperature=0.2)
    controller.set_settings(colder)
    assert len(source.requests) == 1 and shown(controller) == " and then it rained."
    controller.retry()
    assert source.last.settings == colder


def test_the_same_settings_again_change_nothing(qtbot, controller, source):
    Editor(controller, "The cat").report()
    controller.trigger()
    controller.set_settings(SamplingSettings(stop_at=StopAt.LENGTH))  # equal, not identical
    assert len(source.requests) == 1 and source.cancelled == []


def test_context_changes_are_announced(qtbot, controller):
    seen = []
    controller.contextChanged.connect(seen.append)
    editor = Editor(controller, "The cat")
    editor.report()
    editor.report()  # nothing changed: said once
    editor.move_to(3)
    assert [(c.before, c.after) for c in seen] == [("The cat", ""), ("The", " cat")]
    assert controller.context.position == 3


class ForcingSource(DummySuggestionSource):
    """Records forced tokens too, and sends a TokenStep before every piece."""

    def __init__(self) -> None:
        super().__init__(auto_stream=False)
        self.forced: list[tuple[int, ...]] = []

    def request(self, request_id, prompt_text, settings, seed, forced_ids=()):
        self.forced.append(tuple(forced_ids))
        super().request(request_id, prompt_text, settings, seed)

    def send(self, request_id: int, token_id: int, text: str, choices=()) -> None:
        self.step.emit(request_id, TokenStep(token_id, text, 0.5, tuple(choices)))
        self.token.emit(request_id, text)


CHOICES = (TokenChoice(1, " sat", 0.5), TokenChoice(2, " ran", 0.3), TokenChoice(3, ".", 0.2))


@pytest.fixture
def forcing(qtbot):
    source = ForcingSource()
    return source, make_controller(source)


def test_choosing_another_token_keeps_the_steps_before_it_and_continues(qtbot, forcing):
    source, controller = forcing
    Editor(controller, "The cat").report()
    controller.trigger()
    first = source.last.request_id
    source.send(first, 1, " sat", CHOICES)
    source.send(first, 10, " on", ())
    source.send(first, 11, " it", ())
    assert [s.text for s in controller.suggestion.current.steps] == [" sat", " on", " it"]
    seen = []
    controller.ghostChanged.connect(lambda s: seen.append(s and s.text))
    assert controller.choose_token(0, 2)
    assert first in source.cancelled
    assert source.forced[-1] == (2,) and source.last.seed == source.requests[0].seed
    assert seen == [" ran"] and shown(controller) == " ran"
    source.send(source.last.request_id, 20, " away", ())
    assert shown(controller) == " ran away"
    steps = controller.suggestion.current.steps
    assert [(s.token_id, s.probability) for s in steps] == [(2, 0.3), (20, 0.5)]
    assert steps[0].choices == CHOICES  # the same step can be chosen again


def test_choosing_later_keeps_the_tokens_before_and_forces_them(qtbot, forcing):
    source, controller = forcing
    Editor(controller, "The cat").report()
    controller.trigger()
    first = source.last.request_id
    source.send(first, 1, " sat", ())
    source.send(first, 10, " on", CHOICES)
    source.emit_finished(first)
    assert controller.choose_token(1, 3)
    assert source.forced[-1] == (1, 3)
    assert shown(controller) == " sat."


def test_choosing_is_refused_past_typed_text_and_for_unknown_tokens(qtbot, forcing):
    source, controller = forcing
    editor = Editor(controller, "The cat")
    editor.report()
    assert not controller.choose_token(0, 2)  # nothing on screen
    controller.trigger()
    first = source.last.request_id
    source.send(first, 1, " sat", CHOICES)
    source.send(first, 10, " on", CHOICES)
    assert not controller.choose_token(0, 99)  # not one of that step's choices
    assert not controller.choose_token(5, 2)  # no such step
    editor.type(" sa")  # typed into the first token
    assert not controller.choose_token(0, 2)
    assert controller.choose_token(1, 3)
    assert shown(controller) == "t."
    assert source.forced[-1] == (1, 3)


def test_a_chosen_token_that_ends_the_suggestion_asks_for_nothing_more(qtbot, forcing):
    source, controller = forcing
    controller.set_settings(SamplingSettings(stop_at=StopAt.PARAGRAPH))
    Editor(controller, "The cat").report()
    controller.trigger()
    first = source.last.request_id
    newline = (TokenChoice(5, " sat", 0.6), TokenChoice(6, "\n", 0.4))
    source.send(first, 1, " purred", ())
    source.send(first, 5, " sat", newline)
    requests = len(source.requests)
    assert controller.choose_token(1, 6)
    assert len(source.requests) == requests and not controller.busy
    assert shown(controller) == " purred" and controller.suggestion.done


class PreparingSource(DummySuggestionSource):
    """Records what the controller asks it to get ready for."""

    def __init__(self) -> None:
        super().__init__(auto_stream=False)
        self.prepared: list[str] = []

        self.prepared_settings: list = []

    def prepare(self, prompt_text, settings):
        self.prepared.append(prompt_text)
        self.prepared_settings.append(settings)


def test_each_edit_asks_the_source_to_prepare_the_prompt_it_will_request(qtbot):
    source = PreparingSource()
    controller = make_controller(source)
    editor = Editor(controller, "")
    editor.type("The cat sat ")
    assert source.prepared[-1] == "The cat sat"  # the request's prompt: trailing space dropped
    qtbot.waitUntil(lambda: bool(source.requests), timeout=5_000)
    assert source.last.prompt == source.prepared[-1]
    prepared = len(source.prepared)
    editor.select(True)
    editor.type("x")  # an edit with a selection: no request will follow, so no prewarm
    assert len(source.prepared) == prepared


def test_a_cursor_move_prepares_the_prompt_there_without_asking(qtbot):
    source = PreparingSource()
    controller = make_controller(source)
    editor = Editor(controller, "The cat sat on the mat. It slept.")
    editor.move_to(len("The cat sat"))
    assert source.prepared[-1] == "The cat sat"
    editor.select(True)
    prepared = len(source.prepared)
    editor.move_to(len("The cat"))  # with a selection: nothing will be asked there
    assert len(source.prepared) == prepared
    assert not controller.debounce_pending and source.requests == []


@pytest.mark.parametrize("fixed_seed", [-1, 77])
def test_a_prepare_carries_the_settings_and_seed_the_request_after_the_pause_uses(
    qtbot, fixed_seed
):
    # llama.cpp draws the first token during the prewarm: only right if it's the same draw.
    source = PreparingSource()
    settings = LENGTH_STOP.with_changes(seed=fixed_seed)
    controller = make_controller(source, settings=settings)
    editor = Editor(controller, "")
    seeds = []
    for words in ("The cat sat ", "on the ", "mat and "):
        editor.type(words)
        qtbot.waitUntil(lambda: len(source.requests) > len(seeds), timeout=5_000)
        prepared = source.prepared_settings[-1]
        assert prepared == settings.with_changes(seed=source.last.seed)
        seeds.append(source.last.seed)
        editor.type("x")  # typed over the suggestion: a new one follows the next pause
    if fixed_seed >= 0:
        assert seeds == [fixed_seed] * 3
    else:
        assert len(set(seeds)) == 3  # still a fresh random seed for every suggestion
