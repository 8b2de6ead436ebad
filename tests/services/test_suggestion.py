"""Suggestion: shaping of streamed text, the accept helpers, type-through, alternatives."""

from __future__ import annotations

import pytest

from writer_app.engine.sampling import StopAt
from writer_app.services.suggestion import (
    END_OF_TEXT,
    Suggestion,
    cut_before_duplicate,
    is_mid_word,
    prompt_for,
    utf16_length,
)


def streamed(
    pieces: list[str],
    before: str = "The cat",
    after: str = "",
    stop_at: StopAt = StopAt.LENGTH,
    finish: bool = True,
) -> Suggestion:
    suggestion = Suggestion(
        anchor=len(before), before=before, after=after, revision=1, stop_at=stop_at
    )
    alternative = suggestion.add_alternative(seed=7)
    for piece in pieces:
        suggestion.append(alternative, piece)
    if finish:
        suggestion.finish(alternative)
    return suggestion


# --- shaping ------------------------------------------------------------------------


def test_text_grows_while_streaming_and_done_only_at_the_end():
    suggestion = Suggestion(anchor=7, before="The cat", after="", revision=1, stop_at=StopAt.LENGTH)
    alternative = suggestion.add_alternative(seed=1)
    seen = []
    for piece in [" sat", " on", " the", " mat"]:
        suggestion.append(alternative, piece)
        seen.append((suggestion.text, suggestion.done))
    assert seen == [
        (" sat", False),
        (" sat on", False),
        (" sat on the", False),
        (" sat on the mat", False),
    ]
    suggestion.finish(alternative)
    assert suggestion.done and suggestion.text == " sat on the mat"


def test_no_doubled_space_when_the_text_before_ends_with_one():
    assert streamed([" sat", " down"], before="The cat ").text == "sat down"
    assert streamed([" ", " sat"], before="The cat\t").text == "sat"
    # Without a space before the cursor the model's space is needed.
    assert streamed([" sat"], before="The cat").text == " sat"


def test_a_new_paragraph_does_not_start_with_spaces():
    assert streamed(["  It", " rained"], before="The end.\n").text == "It rained"


def test_end_of_text_marker_and_everything_after_it_is_dropped():
    suggestion = streamed([" sat", END_OF_TEXT, " garbage"], finish=False)
    assert suggestion.text == " sat" and suggestion.done


def test_end_of_text_split_over_pieces_is_held_back_then_dropped():
    suggestion = streamed([" sat", "<|end"], finish=False)
    assert suggestion.text == " sat"  # "<|end" may be the marker: not shown yet
    assert not suggestion.done
    suggestion.append(suggestion.current, "oftext|>")
    assert suggestion.text == " sat" and suggestion.done


def test_a_lone_angle_bracket_is_shown_once_it_cannot_be_the_marker():
    suggestion = streamed([" a <", " b"], finish=False)
    assert suggestion.text == " a < b"


def test_sentence_stop_cuts_after_the_first_sentence():
    suggestion = streamed([" sat", ".", " Then", " it"], stop_at=StopAt.SENTENCE, finish=False)
    assert suggestion.text == " sat." and suggestion.done


def test_sentence_stop_keeps_abbreviations_and_numbers():
    suggestion = streamed(
        [" met", " Dr", ".", " Who", " at", " 3", ".", "14"], stop_at=StopAt.SENTENCE, finish=False
    )
    assert suggestion.text == " met Dr. Who at 3.14" and not suggestion.done


def test_paragraph_stop_cuts_at_a_newline_after_text():
    suggestion = streamed(
        [" sat.", " It", " rained", ".\n", "Next"], stop_at=StopAt.PARAGRAPH, finish=False
    )
    assert suggestion.text == " sat. It rained." and suggestion.done


def test_a_suggestion_may_start_a_new_paragraph():
    suggestion = streamed(["\n\n", "It", " rained", "."], stop_at=StopAt.SENTENCE)
    assert suggestion.text == "\n\nIt rained."


def test_length_stop_keeps_newlines():
    assert streamed([" a.\n", "b"], stop_at=StopAt.LENGTH).text == " a.\nb"


# --- text after the cursor ------------------------------------------------------------


def test_suggestion_is_cut_where_it_would_repeat_the_text_after_the_cursor():
    suggestion = streamed(
        ["a", " big", " dog", ".", " Then"], before="I saw ", after="dog.", finish=False
    )
    assert suggestion.text == "a big " and suggestion.done


def test_repeat_cut_drops_the_space_the_document_already_has():
    suggestion = streamed([" a", " big", " dog", "."], before="I saw", after=" dog.")
    assert suggestion.text == " a big"


def test_repeat_of_a_closing_bracket_is_cut():
    assert streamed([" hi", ")", " and"], before="(say", after=")").text == " hi"


def test_only_whole_words_count_as_a_repeat():
    # "an" is not a repeat of "a"; "a" at the end of a streaming text may still become "an".
    assert cut_before_duplicate("have an", "a b", final=True) == ("have an", False)
    assert cut_before_duplicate("have a", "a", final=False) == ("have ", False)
    assert cut_before_duplicate("have a", "a", final=True) == ("have ", True)


def test_a_possible_start_of_a_repeat_is_held_back_while_streaming():
    suggestion = streamed(["a", " big", " d"], before="I saw ", after="dog.", finish=False)
    assert suggestion.text == "a big "
    suggestion.append(suggestion.current, "rum")
    assert suggestion.text == "a big drum"


def test_text_after_the_cursor_on_a_later_line_is_not_compared():
    assert streamed([" sat", " down"], after="\nsat down").text == " sat down"


# --- cursor rules and prompt ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("wor", "ld", True),
        ("don", "'t", True),
        ("word", "", False),
        ("word", " next", False),
        ("word ", "next", False),
        ("", "word", False),
        ("word", ".", False),
    ],
)
def test_mid_word(before, after, expected):
    assert is_mid_word(before, after) is expected


def test_prompt_drops_trailing_spaces_but_keeps_newlines():
    assert prompt_for("The cat  ") == "The cat"
    assert prompt_for("The end.\n") == "The end.\n"


def test_position_moves_in_utf16_units_when_typing_through():
    suggestion = streamed(["😀 ok"], before="a ")
    assert utf16_length("😀") == 2
    assert suggestion.consume("😀")
    assert suggestion.position == suggestion.anchor + 2
    assert suggestion.text == " ok"


# --- accept helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "word"),
    [
        (" quick, brown fox", " quick,"),
        (" (see below) now", " (see"),
        (" don't stop", " don't"),
        (" well-known fact", " well-known"),
        ("ing. Then", "ing."),
        (" ... and", " ..."),
        ("\n\nThe next", "\n\nThe"),
    ],
)
def test_next_word(text, word):
    assert streamed([text], before="x").next_word() == word


def test_next_word_of_a_streaming_suggestion_takes_what_is_there():
    suggestion = streamed([" quick"], finish=False)
    assert suggestion.next_word() == " quick"


def test_to_line_end():
    assert streamed([" one two\nthree"]).to_line_end() == " one two"
    assert streamed(["\n\nNew para\nnext"]).to_line_end() == "\n\nNew para"
    assert streamed([" no newline"]).to_line_end() == " no newline"


def test_to_sentence_end():
    assert streamed([' He said "stop." Then he left.']).to_sentence_end() == ' He said "stop."'
    assert streamed([" Wait! What?"]).to_sentence_end() == " Wait!"
    assert streamed([" no end here"]).to_sentence_end() == " no end here"
    assert streamed([" a line\nwith. more"]).to_sentence_end() == " a line"


# --- type-through ---------------------------------------------------------------------------


def test_consume_matching_characters_moves_the_ghost():
    suggestion = streamed([" sat down"])
    assert suggestion.consume(" s")
    assert suggestion.text == "at down"
    assert suggestion.position == suggestion.anchor + 2
    assert suggestion.fits("The cat s", "")
    assert not suggestion.fits("The cat", "")


def test_consume_rejects_a_mismatch_and_changes_nothing():
    suggestion = streamed([" sat down"])
    assert not suggestion.consume(" x")
    assert not suggestion.consume("")
    assert suggestion.text == " sat down" and suggestion.consumed == ""


def test_consuming_everything_exhausts_a_finished_suggestion():
    suggestion = streamed([" sat"])
    assert suggestion.consume(" sat")
    assert suggestion.exhausted


def test_consuming_everything_of_a_streaming_suggestion_is_not_the_end():
    suggestion = streamed([" sat"], finish=False)
    assert suggestion.consume(" sat")
    assert not suggestion.exhausted
    suggestion.append(suggestion.current, " down")
    assert suggestion.text == " down"


# --- alternatives --------------------------------------------------------------------------


def two_alternatives(first: str, second: str) -> Suggestion:
    suggestion = Suggestion(
        anchor=3, before="The", after="", revision=1, stop_at=StopAt.LENGTH, total=3
    )
    for seed, text in ((11, first), (22, second)):
        alternative = suggestion.add_alternative(seed)
        suggestion.append(alternative, text)
        suggestion.finish(alternative)
    return suggestion


def test_counter_appears_with_a_second_alternative():
    suggestion = Suggestion(anchor=0, before="x", after="", revision=1, total=3)
    suggestion.add_alternative(1)
    assert suggestion.counter_text == ""
    suggestion.add_alternative(2)
    suggestion.select(1)
    assert suggestion.counter_text == "2/3"
    assert suggestion.seeds == [1, 2]


def test_select_out_of_range_says_so():
    suggestion = two_alternatives(" a", " b")
    with pytest.raises(IndexError, match="no alternative 5 of 2"):
        suggestion.select(4)


def test_typing_through_drops_alternatives_that_no_longer_match():
    suggestion = two_alternatives(" cat sat", " dog ran")
    assert suggestion.consume(" c")
    assert len(suggestion.alternatives) == 1
    assert suggestion.text == "at sat"


def test_typing_through_keeps_alternatives_that_still_match():
    suggestion = two_alternatives(" cat sat", " cat ran")
    suggestion.select(1)
    assert suggestion.consume(" cat")
    assert [a.full_text for a in suggestion.alternatives] == [" cat sat", " cat ran"]
    assert suggestion.text == " ran"
    suggestion.select(0)
    assert suggestion.text == " sat"


def test_removing_the_shown_alternative_shows_the_previous_one():
    suggestion = two_alternatives(" a", " b")
    suggestion.select(1)
    suggestion.remove(suggestion.current)
    assert suggestion.index == 0 and suggestion.text == " a"
