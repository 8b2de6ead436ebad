"""Documents open in the right encoding, save back byte-exact, and saves are all-or-nothing."""

from __future__ import annotations

import codecs
import errno
import os
import stat

import pytest

from writer_app.documents.textfile import (
    ChangedDuringSave,
    OpenError,
    SaveError,
    UnencodableTextError,
    changed_on_disk,
    read_text_file,
    write_text_file_atomic,
)
from writer_app.safe_files import CHUNK_SIZE

PROSE = "It is a truth universally acknowledged — café, naïve, 東京, 😀.\nSecond line.\n"


def _round_trip(path, data: bytes):
    path.write_bytes(data)
    loaded = read_text_file(path)
    write_text_file_atomic(
        path, loaded.text, encoding=loaded.encoding, newline=loaded.newline, bom=loaded.had_bom
    )
    assert path.read_bytes() == data
    return loaded


def test_utf8_round_trips_without_notice(tmp_path):
    loaded = _round_trip(tmp_path / "a.txt", PROSE.encode("utf-8"))
    assert (loaded.text, loaded.encoding, loaded.had_bom, loaded.notice) == (
        PROSE,
        "utf-8",
        False,
        None,
    )


def test_utf8_bom_is_hidden_from_the_editor_and_restored(tmp_path):
    loaded = _round_trip(tmp_path / "a.txt", codecs.BOM_UTF8 + PROSE.encode("utf-8"))
    assert loaded.text == PROSE
    assert loaded.had_bom and loaded.encoding == "utf-8"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_with_bom_round_trip(tmp_path, encoding):
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }[encoding]
    data = bom + PROSE.replace("\n", "\r\n").encode(encoding)
    loaded = _round_trip(tmp_path / "a.txt", data)
    assert (loaded.text, loaded.encoding, loaded.newline) == (PROSE, encoding, "\r\n")
    assert encoding.upper()[:6] in loaded.notice.upper()


def test_utf16_without_bom_is_recognised(tmp_path):
    loaded = _round_trip(tmp_path / "a.txt", "Plain words, café.\n".encode("utf-16-le"))
    assert (loaded.text, loaded.encoding, loaded.had_bom) == (
        "Plain words, café.\n",
        "utf-16-le",
        False,
    )


def test_windows_1252_file_opens_with_notice_and_saves_back_byte_exact(tmp_path):
    data = b"caf\xe9 \x93quoted\x94 costs \x80 5\r\n"
    loaded = _round_trip(tmp_path / "old.txt", data)
    assert loaded.text == "café “quoted” costs € 5\n"
    assert loaded.encoding == "cp1252"
    assert "not UTF-8" in loaded.notice and "Windows-1252" in loaded.notice


def test_bytes_undefined_in_windows_1252_fall_back_to_latin1_and_every_byte_round_trips(tmp_path):
    data = bytes(b for b in range(1, 256) if b not in (10, 13))  # 0x81 is undefined in cp1252
    loaded = _round_trip(tmp_path / "odd.txt", data)
    assert loaded.encoding == "latin-1"
    assert "Latin-1" in loaded.notice


def test_mixed_line_endings_take_the_majority_and_say_so(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"one\r\ntwo\r\nthree\nfour\rfive")
    loaded = read_text_file(path)
    assert loaded.text == "one\ntwo\nthree\nfour\nfive"
    assert loaded.newline == "\r\n"
    assert "mixed line endings" in loaded.notice and "Windows (CRLF)" in loaded.notice
    write_text_file_atomic(path, loaded.text, encoding=loaded.encoding, newline=loaded.newline)
    assert path.read_bytes() == b"one\r\ntwo\r\nthree\r\nfour\r\nfive"


def test_crlf_is_preserved_when_edited_text_is_saved(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(b"first\r\nsecond\r\n")
    loaded = read_text_file(path)
    assert loaded.text == "first\nsecond\n" and loaded.notice is None
    write_text_file_atomic(path, loaded.text + "third\n", newline=loaded.newline)
    assert path.read_bytes() == b"first\r\nsecond\r\nthird\r\n"


def test_old_mac_cr_endings_round_trip(tmp_path):
    loaded = _round_trip(tmp_path / "mac.txt", b"a\rb\rc")
    assert (loaded.text, loaded.newline) == ("a\nb\nc", "\r")


def test_binary_and_missing_files_are_refused_with_a_sentence(tmp_path):
    binary = tmp_path / "letter.docx"
    binary.write_bytes(b"PK\x03\x04\x00\x00\x08\x00garbage\xff\xfe\x00")
    with pytest.raises(OpenError, match="binary file"):
        read_text_file(binary)
    with pytest.raises(OpenError, match="Could not open missing.txt"):
        read_text_file(tmp_path / "missing.txt")


def test_damaged_file_behind_a_bom_is_refused(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(codecs.BOM_UTF8 + b"fine \xff broken")
    with pytest.raises(OpenError, match="damaged"):
        read_text_file(path)


def _disk_fills_after(limit: int, calls: list[int]):
    """A stand-in for os.write that writes `limit` bytes for real, then reports ENOSPC."""

    def write_chunk(fd: int, data) -> int:
        calls.append(len(data))
        if os.fstat(fd).st_size >= limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    return write_chunk


def test_disk_full_half_way_leaves_old_file_identical_and_no_temp_file(tmp_path):
    path = tmp_path / "novel.txt"
    old = ("Chapter one.\n" * 2000).encode("utf-8")
    path.write_bytes(old)
    calls: list[int] = []
    new_text = "Rewritten chapter.\n" * 20000  # several chunks long
    with pytest.raises(SaveError) as caught:
        write_text_file_atomic(path, new_text, write_chunk=_disk_fills_after(CHUNK_SIZE, calls))
    assert str(caught.value) == (
        "The disk is full; your document was NOT saved. The previous version is unchanged."
    )
    assert len(calls) == 2  # one chunk really reached the temp file before the disk filled
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["novel.txt"]


def test_failed_save_of_a_new_file_says_nothing_was_written(tmp_path):
    path = tmp_path / "new.txt"
    with pytest.raises(SaveError, match="Nothing was written to disk") as caught:
        write_text_file_atomic(path, "x" * 10, write_chunk=_disk_fills_after(0, []))
    assert "disk is full" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_fsync_failure_also_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "novel.txt"
    path.write_bytes(b"old words")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(SaveError, match="hardware error"):
        write_text_file_atomic(path, "new words")
    assert path.read_bytes() == b"old words"
    assert os.listdir(tmp_path) == ["novel.txt"]


def test_unencodable_character_is_refused_before_touching_the_file(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes(b"caf\xe9\r\n")
    loaded = read_text_file(path)
    with pytest.raises(UnencodableTextError) as caught:
        write_text_file_atomic(
            path, loaded.text + "smile 😀\n", encoding=loaded.encoding, newline=loaded.newline
        )
    assert (caught.value.character, caught.value.line) == ("😀", 2)
    assert "Windows-1252" in str(caught.value) and "NOT saved" in str(caught.value)
    assert path.read_bytes() == b"caf\xe9\r\n"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_permissions_of_the_original_file_are_kept(tmp_path):
    path = tmp_path / "private.txt"
    path.write_text("secret")
    path.chmod(0o640)
    write_text_file_atomic(path, "new secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_text() == "new secret"


@pytest.mark.skipif(os.name != "posix", reason="symlinks need privileges on Windows")
def test_saving_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text_file_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_changes_by_another_program_are_detected(tmp_path):
    path = tmp_path / "shared.txt"
    path.write_bytes(b"version one")
    stamp = read_text_file(path).stamp
    assert not changed_on_disk(path, stamp)

    os.utime(path, ns=(stamp.mtime_ns + 10**9, stamp.mtime_ns + 10**9))
    assert not changed_on_disk(path, stamp)  # touched, same bytes: no false alarm

    path.write_bytes(b"version two")  # same size, other bytes
    assert changed_on_disk(path, stamp)

    stamp = write_text_file_atomic(path, "version three")
    assert not changed_on_disk(path, stamp)
    path.write_bytes(b"longer version four")
    assert changed_on_disk(path, stamp)
    path.unlink()
    assert changed_on_disk(path, stamp)


def test_a_file_rewritten_during_the_save_is_kept_and_reported(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("mine\n", encoding="utf-8")
    stamp = read_text_file(path).stamp

    def other_program(target) -> None:
        target.write_text("theirs, same size\n", encoding="utf-8")

    with pytest.raises(ChangedDuringSave, match="changed by another program"):
        write_text_file_atomic(path, "new\n", expected=stamp, before_replace=other_program)
    assert path.read_text(encoding="utf-8") == "theirs, same size\n"
    assert os.listdir(tmp_path) == ["doc.txt"]


def test_a_file_only_touched_during_the_save_is_saved_over(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("mine\n", encoding="utf-8")
    stamp = read_text_file(path).stamp

    def touch(target) -> None:
        os.utime(target, ns=(stamp.mtime_ns + 10**9, stamp.mtime_ns + 10**9))

    write_text_file_atomic(path, "new\n", expected=stamp, before_replace=touch)
    assert path.read_text(encoding="utf-8") == "new\n"
