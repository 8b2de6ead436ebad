"""Text from files is shown escaped: one line, no terminal control sequences."""

from __future__ import annotations

import os

import pytest

from writer_app.engine.printable import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("model/h0\nln_1", "model/h0\\nln_1"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("a\rb\tc\x00d\x7fe\x85f", "a\\rb\\tc\\x00d\\x7fe\\x85f"),
        ("line\u2028sep\u2029para", "line\\u2028sep\\u2029para"),
        ("evil\u202etxt.bin", "evil\\u202etxt.bin"),  # a right-to-left override
        (os.fsdecode(b"caf\xe9.bin"), "caf\\xe9.bin"),  # a Latin-1 name: not UTF-8
    ],
)
def test_control_characters_and_undecodable_bytes_are_escaped(raw, shown):
    assert printable(raw) == shown
    assert printable(shown) == shown  # escaping twice changes nothing
    assert shown.isprintable()


@pytest.mark.parametrize("text", ["café.bin", "模型.bin", "a\u00a0b", "👩\u200d💻 notes", ""])
def test_printable_text_is_unchanged(text):
    assert printable(text) == text
