"""Documents in the window: open/save round trips, prompts, failed saves, outside changes,
recent files, and files named on the command line."""

# ruff: noqa: F811  (pytest fixtures are imported by name and then requested by name)
from __future__ import annotations

import codecs
import errno
import os

import pytest
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

from tests.ui.window_fixtures import make_window, window_harness  # noqa: F401
from writer_app.settings import MAX_RECENT_FILES, SettingsStore
from writer_app.ui.dialogs import Choice

PROSE = "It is a truth universally acknowledged — café, naïve, 東京.\nSecond line.\n"


def _answer(harness, *choices: Choice) -> None:
    harness.messenger.answers.extend(choices)


def test_open_edit_save_round_trip_keeps_utf8_bytes(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "story.txt"
    path.write_bytes(PROSE.encode("utf-8"))
    assert h.window.documents.open_path(str(path))
    assert h.editor.toPlainText() == PROSE
    assert "story.txt" in h.window.windowTitle() and not h.window.isWindowModified()
    h.editor.moveCursor(h.editor.textCursor().MoveOperation.End)
    h.type("Third line.")
    assert h.window.isWindowModified()
    h.window.menus.actions["save"].trigger()
    assert path.read_bytes() == (PROSE + "Third line.").encode("utf-8")
    assert not h.window.isWindowModified()


@pytest.mark.parametrize(
    "encoding, bom, newline",
    [
        ("utf-8", b"", "\r\n"),
        ("utf-8", codecs.BOM_UTF8, "\n"),
        ("utf-16-le", codecs.BOM_UTF16_LE, "\r\n"),
        ("cp1252", b"", "\r\n"),
    ],
)
def test_encoding_bom_and_line_endings_survive_an_edit(
    window_harness, tmp_path, encoding, bom, newline
):
    h = window_harness
    text = "Première ligne, déjà vu.\nSecond line.\n"
    path = tmp_path / "letter.txt"
    path.write_bytes(bom + text.replace("\n", newline).encode(encoding))
    assert h.window.documents.open_path(str(path))
    assert h.editor.toPlainText() == text  # the editor only ever sees "\n"
    h.editor.moveCursor(h.editor.textCursor().MoveOperation.End)
    h.type("Third.\n")
    assert h.window.documents.save()
    expected = bom + (text + "Third.\n").replace("\n", newline).encode(encoding)
    assert path.read_bytes() == expected


def test_non_utf8_file_shows_its_notice_without_a_modal_box(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "old.txt"
    path.write_bytes("Café crème".encode("cp1252"))
    h.window.documents.open_path(str(path))
    assert not h.window.notice_bar.isHidden()
    assert "Windows-1252" in h.window.notice_bar.label.text()
    assert h.messenger.log == []  # nothing modal was shown
    h.window.notice_bar.dismiss()
    assert h.window.notice_bar.isHidden()


def test_text_the_encoding_cannot_hold_can_be_saved_as_utf8(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "old.txt"
    original = "Café".encode("cp1252")
    path.write_bytes(original)
    h.window.documents.open_path(str(path))
    h.type("😀 ")
    _answer(h, Choice.CANCEL)
    assert not h.window.documents.save()
    assert path.read_bytes() == original
    _answer(h, Choice.YES)
    assert h.window.documents.save()
    assert path.read_bytes() == "😀 Café".encode()


def test_save_as_an_untitled_document_names_it_and_remembers_it(window_harness, tmp_path):
    h = window_harness
    h.type("Fresh words.")
    assert "Untitled" in h.window.windowTitle()
    target = tmp_path / "fresh.md"
    h.files.answers.append(str(target))
    h.window.menus.actions["save"].trigger()  # no path yet: Save means Save As
    assert target.read_text(encoding="utf-8") == "Fresh words."
    assert "fresh.md" in h.window.windowTitle()
    assert h.store.load().settings.window.recent_files[0] == str(target)


def test_cancelling_the_save_dialog_saves_nothing(window_harness):
    h = window_harness
    h.type("words")
    h.files.answers.append(None)
    assert not h.window.documents.save()
    assert h.window.isWindowModified()


def test_title_marks_unsaved_changes_and_undo_back_clears_it(window_harness):
    h = window_harness
    assert "[*]" in h.window.windowTitle()  # Qt shows "*" there while modified
    assert not h.window.isWindowModified()
    h.type("x")
    assert h.window.isWindowModified()
    h.editor.undo()
    assert not h.window.isWindowModified()


def test_close_with_unsaved_changes_cancel_keeps_the_window(window_harness, qtbot):
    h = window_harness
    h.type("precious")
    _answer(h, Choice.CANCEL)
    assert not h.window.close()
    assert h.window.isVisible() and h.editor.toPlainText() == "precious"
    assert "precious" not in str(h.store.load().settings.window)  # nothing else happened


def test_close_with_unsaved_changes_discard_closes_without_writing(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "kept.txt"
    path.write_text("original", encoding="utf-8")
    h.window.documents.open_path(str(path))
    h.type("scribble ")
    _answer(h, Choice.DISCARD)
    assert h.window.close()
    assert path.read_text(encoding="utf-8") == "original"
    assert h.messenger.texts("ask") and "kept.txt" in h.messenger.texts("ask")[0]


def test_close_with_unsaved_changes_save_writes_then_closes(window_harness, tmp_path):
    h = window_harness
    h.type("keep me")
    target = tmp_path / "kept.txt"
    h.files.answers.append(str(target))
    _answer(h, Choice.SAVE)
    assert h.window.close()
    assert target.read_text(encoding="utf-8") == "keep me"


def test_close_when_the_save_fails_keeps_the_window_open(window_harness, tmp_path):
    h = window_harness
    h.type("keep me")
    h.files.answers.append(None)  # the writer cancels the Save As dialog
    _answer(h, Choice.SAVE)
    assert not h.window.close()
    assert h.editor.toPlainText() == "keep me"


@pytest.mark.parametrize("command", ["new", "open"])
def test_new_and_open_ask_first_and_cancel_keeps_the_text(window_harness, command):
    h = window_harness
    h.type("draft")
    _answer(h, Choice.CANCEL)
    h.window.menus.actions[command].trigger()
    assert h.editor.toPlainText() == "draft" and h.window.isWindowModified()
    assert h.files.asked == []  # the open dialog never appeared


def test_new_after_discard_gives_an_empty_untitled_document(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "a.txt"
    path.write_text("text", encoding="utf-8")
    h.window.documents.open_path(str(path))
    h.type("more ")
    _answer(h, Choice.DISCARD)
    h.window.menus.actions["new"].trigger()
    assert h.editor.toPlainText() == "" and "Untitled" in h.window.windowTitle()
    assert h.window.documents.info.path is None


def _disk_full_after_first_chunk():
    calls = []

    def write_chunk(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data[: len(data) // 2])

    return write_chunk


def test_a_failed_save_leaves_the_old_file_byte_identical_and_says_why(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "book" / "novel.txt"
    path.parent.mkdir()
    original = ("Chapter one.\r\n" * 50_000).encode("utf-8")
    path.write_bytes(original)
    h.window.documents.open_path(str(path))
    h.type("A new opening. ")
    h.window.documents.write_chunk = _disk_full_after_first_chunk()
    h.window.menus.actions["save"].trigger()
    assert path.read_bytes() == original
    assert os.listdir(path.parent) == ["novel.txt"]  # no temp file left behind
    (error,) = h.messenger.texts("error")
    assert "disk is full" in error and "NOT saved" in error
    assert h.window.isWindowModified()  # the writer's text is still unsaved, not lost
    h.window.documents.write_chunk = os.write
    assert h.window.documents.save()
    assert path.read_bytes().startswith(b"A new opening. Chapter one.\r\n")


@pytest.fixture
def changed_elsewhere(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "shared.txt"
    path.write_text("first version\n", encoding="utf-8")
    h.window.documents.open_path(str(path))
    h.type("mine: ")
    path.write_text("their version\n", encoding="utf-8")  # another program
    return h, path


def test_outside_change_cancel_keeps_their_file(changed_elsewhere):
    h, path = changed_elsewhere
    _answer(h, Choice.CANCEL)
    assert not h.window.documents.save()
    assert path.read_text(encoding="utf-8") == "their version\n"
    assert "changed by another program" in h.messenger.texts("ask")[0]
    assert h.editor.toPlainText() == "mine: first version\n"


def test_outside_change_overwrite_writes_mine(changed_elsewhere):
    h, path = changed_elsewhere
    _answer(h, Choice.SAVE)
    assert h.window.documents.save()
    assert path.read_text(encoding="utf-8") == "mine: first version\n"
    assert h.window.documents.save()  # the new stamp is ours: no second question
    assert len(h.messenger.texts("ask")) == 1


def test_outside_change_reload_shows_their_text(changed_elsewhere):
    h, path = changed_elsewhere
    _answer(h, Choice.DISCARD)
    assert not h.window.documents.save()
    assert h.editor.toPlainText() == "their version\n"
    assert not h.window.isWindowModified()


def test_a_file_deleted_meanwhile_can_be_written_again(changed_elsewhere):
    h, path = changed_elsewhere
    path.unlink()
    _answer(h, Choice.SAVE)
    assert h.window.documents.save()
    assert "moved or deleted" in h.messenger.texts("ask")[0]
    assert path.read_text(encoding="utf-8") == "mine: first version\n"


def open_file(h, path, text: str):
    """Write `text` to `path` as another program would, and open it in the window."""
    path.write_text(text, encoding="utf-8")
    h.window.documents.open_path(str(path))
    return path


def notices(h) -> list[str]:
    bar = h.window.notice_bar
    return [] if bar.isHidden() else bar.label.text().splitlines()


def test_coming_back_reloads_a_file_changed_elsewhere_when_nothing_is_unsaved(
    window_harness, tmp_path
):
    h = window_harness
    path = open_file(h, tmp_path / "shared.txt", "first version\n")
    path.write_text("their version\n", encoding="utf-8")  # another program, while away
    h.window.documents.check_disk()
    assert h.editor.toPlainText() == "their version\n"
    assert not h.window.isWindowModified()
    assert any("changed by another program" in n for n in notices(h))
    assert h.messenger.log == []  # nothing to decide: nothing of the writer's was lost


def test_coming_back_keeps_unsaved_work_and_says_so_once(changed_elsewhere):
    h, path = changed_elsewhere
    h.window.documents.check_disk()
    h.window.documents.check_disk()  # back again: the same outside version, no repeat
    assert h.editor.toPlainText() == "mine: first version\n"
    assert [n for n in notices(h) if "changed by another program" in n] == [
        "“shared.txt” was changed by another program. Your unsaved version is kept; "
        "saving will ask which one to keep."
    ]
    assert path.read_text(encoding="utf-8") == "their version\n"


def test_coming_back_to_an_unchanged_file_says_nothing(window_harness, tmp_path):
    h = window_harness
    open_file(h, tmp_path / "quiet.txt", "as it was\n")
    h.type("more ")
    h.window.documents.check_disk()
    assert notices(h) == [] and h.editor.toPlainText() == "more as it was\n"


def test_activating_the_window_checks_the_file(window_harness, tmp_path, qtbot):
    h = window_harness
    path = open_file(h, tmp_path / "shared.txt", "first version\n")
    h.window.show()
    h.window.activateWindow()
    qtbot.waitUntil(h.window.isActiveWindow, timeout=5_000)
    path.write_text("their version\n", encoding="utf-8")
    # What Qt sends when the writer switches back to the window:
    QApplication.sendEvent(h.window, QEvent(QEvent.Type.ActivationChange))
    assert h.editor.toPlainText() == "their version\n"


def test_recent_files_keep_the_newest_ten_and_persist(window_harness, tmp_path):
    h = window_harness
    paths = []
    for number in range(12):
        path = tmp_path / f"doc{number}.txt"
        path.write_text(f"document {number}", encoding="utf-8")
        paths.append(str(path))
        assert h.window.documents.open_path(str(path))
    newest_first = tuple(reversed(paths))[:MAX_RECENT_FILES]
    assert SettingsStore(h.store.path).load().settings.window.recent_files == newest_first
    entries = [a for a in h.window.menus.recent.actions() if a.data()]
    assert [a.data() for a in entries] == list(newest_first)
    entries[3].trigger()
    assert h.editor.toPlainText() == "document 8"
    assert h.store.load().settings.window.recent_files[0] == paths[8]


def test_a_vanished_recent_file_is_explained_and_dropped(window_harness, tmp_path):
    h = window_harness
    path = open_file(h, tmp_path / "gone.txt", "soon gone")
    h.window.documents.new_document()
    path.unlink()
    entry = next(a for a in h.window.menus.recent.actions() if a.data() == str(path))
    entry.trigger()
    assert "gone.txt" in h.messenger.texts("error")[0]
    assert str(path) not in h.store.load().settings.window.recent_files


def test_clear_recent_files(window_harness, tmp_path):
    h = window_harness
    open_file(h, tmp_path / "a.txt", "a")
    h.window.menus.actions["clear_recent"].trigger()
    assert h.store.load().settings.window.recent_files == ()
    assert not h.window.menus.actions["clear_recent"].isEnabled()


def test_binary_file_is_refused_and_the_current_text_stays(window_harness, tmp_path):
    h = window_harness
    h.type("my draft")
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    assert not h.window.documents.open_path(str(path), ask_first=False)
    assert "binary" in h.messenger.texts("error")[0]
    assert h.editor.toPlainText() == "my draft"


def test_open_dialog_starts_and_opens(window_harness, tmp_path):
    h = window_harness
    path = tmp_path / "chosen.md"
    path.write_text("# Title\n", encoding="utf-8")
    h.files.answers.append(str(path))
    h.window.menus.actions["open"].trigger()
    assert h.editor.toPlainText() == "# Title\n"
    assert h.files.asked[0][0] == "open"


def test_file_named_on_the_command_line_is_opened(make_window, tmp_path):
    path = tmp_path / "cli.txt"
    path.write_text("from the command line", encoding="utf-8")
    h = make_window(open_path=str(path))
    assert h.editor.toPlainText() == "from the command line"


def test_a_new_file_named_on_the_command_line_is_created_on_save(make_window, tmp_path):
    path = tmp_path / "new-notes.txt"
    h = make_window(open_path=str(path))
    assert "new-notes.txt" in h.window.windowTitle() and h.editor.toPlainText() == ""
    h.type("first words")
    assert h.window.documents.save()
    assert h.files.asked == []  # it already had its name
    assert path.read_text(encoding="utf-8") == "first words"


def test_the_last_document_is_reopened_on_the_next_start(make_window, tmp_path):
    path = tmp_path / "last.txt"
    path.write_text("where I left off", encoding="utf-8")
    first = make_window()
    first.window.documents.open_path(str(path))
    assert first.window.close()
    second = make_window()
    assert second.editor.toPlainText() == "where I left off"
    assert second.window.documents.info.path == str(path)


def test_a_file_that_appeared_under_a_new_documents_name_is_not_clobbered(make_window, tmp_path):
    path = tmp_path / "notes.txt"
    h = make_window(open_path=str(path))
    h.type("my notes")
    path.write_text("someone else's notes", encoding="utf-8")
    h.messenger.answers.append(Choice.CANCEL)
    assert not h.window.documents.save()
    assert path.read_text(encoding="utf-8") == "someone else's notes"


def _folder(tmp_path):
    """A folder of its own, so a test can see that no temp file is left in it."""
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder


def _another_program_saves(path, text: str):
    """A before_replace hook: another program saves `path` (by its own atomic rename)
    after our temp file was written and before it replaces the file."""
    calls = []

    def hook(target) -> None:
        calls.append(target)
        if len(calls) == 1:
            theirs = path.with_name("their-temp")
            theirs.write_text(text, encoding="utf-8")
            os.replace(theirs, path)

    return hook


def test_a_file_replaced_during_the_save_is_not_overwritten_without_asking(window_harness, tmp_path):
    h = window_harness
    path = open_file(h, _folder(tmp_path) / "race.txt", "first version\n")
    h.type("mine: ")
    h.window.documents.before_replace = _another_program_saves(path, "their version\n")
    _answer(h, Choice.CANCEL)
    assert not h.window.documents.save()
    assert path.read_text(encoding="utf-8") == "their version\n"
    (question,) = h.messenger.texts("ask")
    assert "changed by another program" in question
    assert os.listdir(path.parent) == ["race.txt"]  # our temp file is gone too
    assert h.editor.toPlainText() == "mine: first version\n"
    assert h.window.isWindowModified()  # still unsaved, never lost


def test_overwriting_a_file_replaced_during_the_save_writes_mine(window_harness, tmp_path):
    h = window_harness
    path = open_file(h, _folder(tmp_path) / "race.txt", "first version\n")
    h.type("mine: ")
    h.window.documents.before_replace = _another_program_saves(path, "their version\n")
    _answer(h, Choice.SAVE)
    assert h.window.documents.save()
    assert path.read_text(encoding="utf-8") == "mine: first version\n"
    assert len(h.messenger.texts("ask")) == 1
    assert not h.window.isWindowModified()


def test_a_file_created_during_the_first_save_is_not_overwritten(window_harness, tmp_path):
    h = window_harness
    path = _folder(tmp_path) / "new.txt"
    h.type("my words")
    h.files.answers.append(str(path))
    h.window.documents.before_replace = _another_program_saves(path, "theirs\n")
    _answer(h, Choice.CANCEL)
    assert not h.window.documents.save()
    assert path.read_text(encoding="utf-8") == "theirs\n"
    assert os.listdir(path.parent) == ["new.txt"]


def test_an_untouched_file_saves_without_questions(window_harness, tmp_path):
    h = window_harness
    path = open_file(h, tmp_path / "calm.txt", "one\n")
    h.type("two ")
    calls = []
    h.window.documents.before_replace = calls.append
    assert h.window.documents.save() and h.window.documents.save()
    assert len(calls) == 2 and h.messenger.texts("ask") == []
    assert path.read_text(encoding="utf-8") == "two one\n"


@pytest.fixture
def read_only_file(window_harness, tmp_path):
    h = window_harness
    path = open_file(h, _folder(tmp_path) / "locked.txt", "keep me\n")
    path.chmod(0o444)
    h.type("edit: ")
    return h, path


def test_saving_over_a_read_only_file_asks_and_cancel_writes_nothing(read_only_file):
    h, path = read_only_file
    _answer(h, Choice.CANCEL)
    assert not h.window.documents.save()
    (question,) = h.messenger.texts("ask")
    assert "read-only" in question
    assert path.read_text(encoding="utf-8") == "keep me\n"
    assert os.listdir(path.parent) == ["locked.txt"]
    assert h.editor.toPlainText() == "edit: keep me\n"
    assert h.window.isWindowModified()  # unsaved, never lost


def test_saving_over_a_read_only_file_when_the_writer_agrees_keeps_it_read_only(read_only_file):
    h, path = read_only_file
    _answer(h, Choice.SAVE)
    assert h.window.documents.save()
    assert path.read_text(encoding="utf-8") == "edit: keep me\n"
    assert os.stat(path).st_mode & 0o777 == 0o444
    assert not h.window.isWindowModified()
    h.type("more ")
    assert h.window.documents.save()  # agreed once for this file: no second question
    assert len(h.messenger.texts("ask")) == 1


def test_closing_with_a_read_only_file_and_cancel_keeps_the_window(read_only_file, qtbot):
    h, path = read_only_file
    _answer(h, Choice.SAVE, Choice.CANCEL)  # save before closing? yes; over read-only? no
    assert not h.window.close()
    assert h.window.isVisible() and h.window.isWindowModified()
    assert path.read_text(encoding="utf-8") == "keep me\n"
