from __future__ import annotations

import re

import pytest

from writer_app.engine.sampling import StopAt
from writer_app.engine.stopping import StopResult, StopScanner, Utf8Stream


def run(stop_at: StopAt, pieces: list[str], preceding: str = "") -> tuple[str, bool]:
    """Feed pieces until the rule stops; return the shown text and whether it stopped."""
    scanner = StopScanner(stop_at, preceding)
    shown = []
    for piece in pieces:
        result = scanner.feed(piece)
        shown.append(result.text)
        if result.stopped:
            return "".join(shown), True
    shown.append(scanner.finish())
    return "".join(shown), False


def chars(text: str) -> list[str]:
    return list(text)


def words(text: str) -> list[str]:
    """Pieces the way GPT-2 tokens usually come: a leading space, then the word."""
    return re.findall(r" ?\S+|\s+", text)


@pytest.mark.parametrize("split", [chars, lambda text: [text], words])
def test_sentence_stops_after_the_period_without_the_following_space(split):
    text, stopped = run(StopAt.SENTENCE, split(" sat on the mat. Then it slept."))
    assert stopped
    assert text == " sat on the mat."


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        (' said "stop." She left', ' said "stop."'),
        (" asked (why?) and left", " asked (why?)"),
        (" really?! Yes", " really?!"),
        (" waited... Then", " waited..."),
        (" ran.\nNext", " ran."),
        (" it’s ‘mine.’ Then", " it’s ‘mine.’"),
    ],
)
def test_sentence_end_includes_terminators_and_closers(generated, expected):
    assert run(StopAt.SENTENCE, chars(generated)) == (expected, True)


@pytest.mark.parametrize(
    "generated",
    [
        " costs 3.50 dollars",
        " met Dr. Smith and Mrs. Jones",
        " read J. R. R. Tolkien",
        " e.g. apples and i.e. pears",
        " visited example.com today",
    ],
)
def test_things_that_are_not_sentence_ends_go_on(generated):
    assert run(StopAt.SENTENCE, chars(generated)) == (generated, False)


def test_abbreviation_can_come_from_the_prompt():
    # The prompt ends with "Dr", the model continues with ". Who".
    assert run(StopAt.SENTENCE, chars(". Who"), preceding="I met Dr") == (". Who", False)
    assert run(StopAt.SENTENCE, chars(". Who"), preceding="I met them") == (".", True)


def test_period_held_back_until_the_next_character_decides():
    scanner = StopScanner(StopAt.SENTENCE)
    assert scanner.feed(" the end.").text == " the end"
    result = scanner.feed("5")
    assert result == StopResult(".5", False)


def test_held_period_is_released_when_generation_ends_otherwise():
    assert run(StopAt.SENTENCE, [" the end."]) == (" the end.", False)


def test_fullwidth_terminator_needs_no_space():
    assert run(StopAt.SENTENCE, chars("猫が座った。次に")) == ("猫が座った。", True)
    assert run(StopAt.SENTENCE, chars("本当？」と言った")) == ("本当？」", True)


def test_sentence_stops_at_a_newline():
    assert run(StopAt.SENTENCE, chars(" and so on\nmore")) == (" and so on", True)


def test_leading_newlines_do_not_stop():
    assert run(StopAt.SENTENCE, chars("\n\nA new start. More")) == ("\n\nA new start.", True)
    assert run(StopAt.PARAGRAPH, chars("\n\nA new start.\nMore")) == ("\n\nA new start.", True)


def test_paragraph_ignores_sentence_ends_and_stops_at_newline():
    assert run(StopAt.PARAGRAPH, chars(" One. Two! Three?\nFour")) == (" One. Two! Three?", True)


def test_length_only_never_stops():
    text = " One. Two!\n\nThree?\nFour"
    assert run(StopAt.LENGTH, chars(text)) == (text, False)


def test_nothing_after_a_stop():
    scanner = StopScanner(StopAt.PARAGRAPH)
    assert scanner.feed("a\nb").stopped
    assert scanner.feed("more") == StopResult("", True, piece_used=False)
    assert scanner.finish() == ""
    assert scanner.stopped


def test_utf8_stream_never_splits_a_character():
    data = "héllo 猫 🐈".encode()
    stream = Utf8Stream()
    pieces = [stream.push(data[i : i + 1]) for i in range(len(data))]
    pieces.append(stream.flush())
    assert "".join(pieces) == "héllo 猫 🐈"
    assert all("\ufffd" not in piece for piece in pieces)
    # The cat emoji is four bytes: nothing is shown until the last one arrives.
    assert pieces[-5:-1] == ["", "", "", "🐈"]


def test_utf8_stream_replaces_invalid_bytes_instead_of_failing():
    stream = Utf8Stream()
    assert stream.push(b"a\xff") == "a\ufffd"
    assert stream.push(b"\xe7\x8c") == ""
    assert stream.flush() == "\ufffd"


def test_stop_reports_whether_the_last_piece_belongs_to_the_suggestion():
    scanner = StopScanner(StopAt.SENTENCE)
    assert scanner.feed(" the mat.").text == " the mat"
    # " Then" only proves the sentence ended: its token is not part of the suggestion.
    assert scanner.feed(" Then") == StopResult(".", True, piece_used=False)

    scanner = StopScanner(StopAt.SENTENCE)
    scanner.feed(" the mat")
    # ".\n" contributes the period before its newline ends the sentence.
    assert scanner.feed(".\n") == StopResult(".", True, piece_used=True)

    scanner = StopScanner(StopAt.PARAGRAPH)
    scanner.feed(" words")
    assert scanner.feed("\n\n") == StopResult("", True, piece_used=False)


# One sentence rule for the sentence stop and Shift+Tab: (generated, first sentence).
# tests/ui/test_ghost_editor.py runs the same cases through Shift+Tab.
SENTENCE_CASES = [
    (" could be made Mr. Darcy's friend. Then", " could be made Mr. Darcy's friend."),
    (" and Mrs. Bennet sighed. She", " and Mrs. Bennet sighed."),
    (" on St. James's Street, etc. and more. After", " on St. James's Street, etc. and more."),
    (" Dr. Jones and Capt. Wentworth came. They", " Dr. Jones and Capt. Wentworth came."),
    (" by J. R. R. Tolkien was read. It", " by J. R. R. Tolkien was read."),
    (" it cost 3.50 pounds. Then", " it cost 3.50 pounds."),
    (" I thought... maybe not. So", " I thought... maybe not."),
    (" I thought… maybe not. So", " I thought… maybe not."),
    (" she waited... Then he came.", " she waited..."),
    (' "Wait..." he said. Then', ' "Wait..." he said.'),
    (" she waited...\nmore", " she waited..."),
    (" really?! Yes.", " really?!"),
]


@pytest.mark.parametrize("split", [chars, lambda text: [text], words])
@pytest.mark.parametrize(("generated", "expected"), SENTENCE_CASES)
def test_one_sentence_rule(generated, expected, split):
    assert run(StopAt.SENTENCE, split(generated)) == (expected, True)


def test_an_ellipsis_at_the_end_of_the_generation_is_kept():
    assert run(StopAt.SENTENCE, words(" she waited... ")) == (" she waited...", False)
