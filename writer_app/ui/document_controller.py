"""New, open, save, save as, reload and restore for the window's one document.

Rules that keep every word safe:
  - The text always comes from `editor.toPlainText()`, which never holds ghost text.
  - Saving is atomic (documents/textfile.py): a failed save leaves the old file
    byte-identical, and the writer is told why in a sentence.
  - Before overwriting, the file is compared with what we last read or wrote; if another
    program changed it the writer chooses: overwrite it, reload it, or cancel. The same
    check runs again right before the new file replaces the old, so a program that
    saves while ours is being written is asked about too, not overwritten.
  - A read-only file is only saved over when the writer agrees (it stays read-only).
  - Before the document is replaced or the window closes, unsaved changes are offered
    for saving (Save / Discard / Cancel).
  - The file's encoding, BOM and line endings are kept; the editor only sees "\\n".
The editor's QTextDocument object is kept for the whole session (setPlainText), so
whoever watches it (ghost text, word count, autosave) never has to re-attach.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from writer_app.documents.recovery import RecoveryEntry, new_doc_id
from writer_app.documents.textfile import (
    ENCODING_NAMES,
    ChangedDuringSave,
    FileStamp,
    OpenError,
    SaveError,
    UnencodableTextError,
    changed_on_disk,
    read_text_file,
    stamp_file,
)
from writer_app.documents.textfile import write_text_file_atomic as _write_text_file_atomic
from writer_app.safe_files import WriteChunk, is_read_only
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import Settings
from writer_app.ui.choosers import FileChooser
from writer_app.ui.dialogs import Choice, Messenger

UNTITLED = "Untitled"
# A writing app has no business loading a 500 MB log file into a text widget.
MAX_OPEN_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class DocumentInfo:
    """Everything about the open document except its text (which lives in the editor)."""

    doc_id: str = field(default_factory=new_doc_id)  # names its recovery entry
    path: str | None = None
    encoding: str = "utf-8"
    newline: str = "\n"
    had_bom: bool = False
    stamp: FileStamp | None = None  # the file as we last read or wrote it
    last_saved: datetime | None = None

    @property
    def title(self) -> str:
        return Path(self.path).name if self.path else UNTITLED


@dataclass(frozen=True)
class _Expected:
    """What the save may replace, checked again right before it does: the file as we
    last saw it (`stamp`), or no file at all (`create`); neither means "don't check"."""

    stamp: FileStamp | None
    create: bool = False


def _as_it_is_now(path: str) -> _Expected:
    try:
        return _Expected(stamp_file(path))
    except FileNotFoundError:
        return _Expected(None, create=True)
    except OSError:
        return _Expected(None)  # unreadable now: the write itself will say why


class DocumentController(QObject):
    info_changed = Signal(object)  # DocumentInfo: path/title may have changed
    notice = Signal(str)  # a remark for the writer that needs no answer (encoding etc.)
    discard_recovery = Signal(str)  # doc_id whose unsaved copy is no longer needed

    def __init__(
        self,
        editor: QPlainTextEdit,
        *,
        messenger: Messenger,
        file_chooser: FileChooser,
        settings: SettingsKeeper,
        dialog_parent: QWidget | None = None,
        write_chunk: WriteChunk = os.write,
    ) -> None:
        super().__init__()
        self.editor = editor
        self.info = DocumentInfo()
        self.write_chunk = write_chunk  # tests swap in a failing writer (disk full)
        # Runs between the temp file's write and the replace: tests play another program.
        self.before_replace: Callable[[Path], None] | None = None
        self._read_only_agreed: str | None = None  # the read-only file the writer said yes to
        self._messenger = messenger
        self._chooser = file_chooser
        self._settings = settings
        self._parent = dialog_parent
        # (path, sha256 or None if gone) of the outside change last told about
        self._outside_change_told: tuple[str, str | None] | None = None

    # ----- state ---------------------------------------------------------------------

    def text(self) -> str:
        return self.editor.toPlainText()

    def is_modified(self) -> bool:
        return self.editor.document().isModified()

    # ----- commands ------------------------------------------------------------------

    def new_document(self) -> bool:
        if not self.keep_or_discard_changes("starting a new document"):
            return False
        self._replace(DocumentInfo(), "", modified=False)
        return True

    def new_document_at(self, path: str) -> None:
        """An empty document that will be saved as `path` (a name given on the command
        line for a file that does not exist yet)."""
        self._replace(DocumentInfo(path=os.path.abspath(path)), "", modified=False)

    def open_dialog(self) -> bool:
        if not self.keep_or_discard_changes("opening another document"):
            return False
        start = str(Path(self.info.path).parent) if self.info.path else str(Path.home())
        path = self._chooser.open_path(self._parent, start)
        return self.open_path(path, ask_first=False) if path else False

    def open_path(self, path: str, *, ask_first: bool = True) -> bool:
        """Open `path` in place of the current document; False if it did not happen."""
        path = os.path.abspath(path)
        if ask_first and not self.keep_or_discard_changes("opening another document"):
            return False
        try:
            if os.path.getsize(path) > MAX_OPEN_BYTES:
                raise OpenError(
                    f"{Path(path).name} is larger than {MAX_OPEN_BYTES // 2**20} MB, "
                    "too large to edit here; it was not opened."
                )
            loaded = read_text_file(path)
        except OSError as error:
            self._cannot_open(path, f"Could not open {Path(path).name}: {error.strerror}.")
            return False
        except OpenError as error:
            self._cannot_open(path, str(error))
            return False
        info = DocumentInfo(
            path=path,
            encoding=loaded.encoding,
            newline=loaded.newline,
            had_bom=loaded.had_bom,
            stamp=loaded.stamp,
        )
        self._replace(info, loaded.text, modified=False)
        self._remember(path)
        if loaded.notice:
            self.notice.emit(f"{info.title}: {loaded.notice}")
        return True

    def save(self) -> bool:
        if self.info.path is None:
            return self.save_as()
        return self._save_to(self.info.path, check_disk=True)

    def save_as(self) -> bool:
        suggested = self.info.path or str(Path.home() / f"{UNTITLED}.txt")
        path = self._chooser.save_path(self._parent, suggested)
        if not path:
            return False
        path = os.path.abspath(path)
        # The same file again: still protect changes made to it by another program.
        return self._save_to(path, check_disk=path == self.info.path)

    def reload_from_disk(self) -> bool:
        """Replace the text with the file's current contents (the writer asked for it)."""
        if self.info.path is None:
            return False
        return self.open_path(self.info.path, ask_first=False)

    def check_disk(self) -> None:
        """The writer came back to the app: notice a file another program changed
        meanwhile, instead of only at the next save. An unchanged document is reloaded
        (nothing of the writer's can be lost); one with unsaved changes is kept as it
        is, and the writer is told once per outside version (saving will ask)."""
        path, stamp = self.info.path, self.info.stamp
        if path is None or stamp is None or not changed_on_disk(path, stamp):
            return
        name = Path(path).name
        if not os.path.exists(path):
            seen = None
            message = (f"“{name}” was moved or deleted by another program. Your text is "
                       "still here; save it to keep it.")
        else:
            seen = stamp_file(path).sha256
            if not self.is_modified():
                if self.open_path(path, ask_first=False):
                    self.notice.emit(f"“{name}” was changed by another program; "
                                     "this is its new version.")
                return
            message = (f"“{name}” was changed by another program. Your unsaved version "
                       "is kept; saving will ask which one to keep.")
        if (path, seen) != self._outside_change_told:
            self._outside_change_told = (path, seen)
            self.notice.emit(message)

    def restore(self, entry: RecoveryEntry) -> None:
        """Show a recovered copy as an unsaved document, keeping its path and id."""
        info = DocumentInfo(doc_id=entry.doc_id, path=entry.path, last_saved=entry.last_saved)
        if entry.path and os.path.exists(entry.path):
            try:  # keep the file's encoding and line endings, and its stamp as the base
                loaded = read_text_file(entry.path)
                info = replace(
                    info,
                    encoding=loaded.encoding,
                    newline=loaded.newline,
                    had_bom=loaded.had_bom,
                    stamp=loaded.stamp,
                )
            except OpenError:
                pass  # unreadable now: the text is safe in the editor; saving says more
        self._replace(info, entry.text, modified=True)

    def keep_or_discard_changes(self, doing: str) -> bool:
        """Offer to save unsaved changes; True means it is fine to go on."""
        if not self.is_modified():
            return True
        answer = self._messenger.ask(
            "Unsaved changes",
            f"“{self.info.title}” has changes that are not saved. Save them before {doing}?",
            [Choice.SAVE, Choice.DISCARD, Choice.CANCEL],
            Choice.SAVE,
        )
        if answer == Choice.SAVE:
            return self.save()
        if answer == Choice.DISCARD:
            self.discard_recovery.emit(self.info.doc_id)
            return True
        return False

    # ----- internals -----------------------------------------------------------------

    def _save_to(self, path: str, *, check_disk: bool) -> bool:
        if check_disk and self._changed_since_read(path):
            if not self._overwrite_outside_change(path):
                return False
            expected = _as_it_is_now(path)  # the version the writer agreed to overwrite
        elif check_disk:
            expected = _Expected(self.info.stamp, create=self.info.stamp is None)
        else:
            expected = _as_it_is_now(path)  # Save As: what the file dialog showed
        if not self._agree_to_read_only(path):
            return False
        info = self.info
        text = self.text()
        while True:
            try:
                stamp = _write_text_file_atomic(
                    path,
                    text,
                    encoding=info.encoding,
                    newline=info.newline,
                    bom=info.had_bom,
                    expected=expected.stamp,
                    create_only=expected.create,
                    write_chunk=self.write_chunk,
                    before_replace=self.before_replace,
                )
                break
            except ChangedDuringSave:
                # Another program saved while our temp file was being written: theirs is
                # still there, untouched. Ask again, about the version that is there now.
                if not self._overwrite_outside_change(path):
                    return False
                expected = _as_it_is_now(path)
            except UnencodableTextError as error:
                if not self._agree_to_utf8(error):
                    return False
                info = replace(info, encoding="utf-8", had_bom=False)
            except SaveError as error:
                self._messenger.error("Not saved", str(error))
                return False
        self.info = replace(info, path=path, stamp=stamp, last_saved=datetime.now(timezone.utc))
        self.editor.document().setModified(False)
        self.discard_recovery.emit(self.info.doc_id)
        self._remember(path)
        self.info_changed.emit(self.info)
        return True

    def _overwrite_outside_change(self, path: str) -> bool:
        """Ask about another program's change; True means overwrite it with ours."""
        decision = self._ask_about_outside_change(path)
        if decision == Choice.DISCARD:
            self.reload_from_disk()
        return decision == Choice.SAVE

    def _agree_to_read_only(self, path: str) -> bool:
        """A read-only file is the writer's (or a colleague's) "do not change this":
        ask before saving over it, once per file while it stays open. Agreeing saves and
        keeps the file read-only, as Vim's :w! does; the mode is the owner's decision."""
        if self._read_only_agreed == path or not is_read_only(path):
            return True
        answer = self._messenger.ask(
            "Read-only file",
            f"“{Path(path).name}” is read-only. Save your changes over it anyway?\n\n"
            "It stays read-only afterwards. Cancel keeps your changes here, unsaved.",
            [Choice.SAVE, Choice.CANCEL],
            Choice.CANCEL,
        )
        if answer != Choice.SAVE:
            return False
        self._read_only_agreed = path
        return True

    def _changed_since_read(self, path: str) -> bool:
        if self.info.stamp is None:  # never read: any file there now is someone else's
            return os.path.exists(path)
        return changed_on_disk(path, self.info.stamp)

    def _ask_about_outside_change(self, path: str) -> Choice:
        name = Path(path).name
        if not os.path.exists(path):
            return self._messenger.ask(
                "File moved or deleted",
                f"“{name}” was moved or deleted by another program since you opened it. "
                "Save your text there anyway?",
                [Choice.SAVE, Choice.CANCEL],
                Choice.SAVE,
            )
        return self._messenger.ask(
            "File changed by another program",
            f"“{name}” was changed by another program since you opened it.\n\n"
            "Save: overwrite it with your version (their changes are lost).\n"
            "Discard: reload it from disk (your unsaved changes are lost).\n"
            "Cancel: do nothing for now.",
            [Choice.SAVE, Choice.DISCARD, Choice.CANCEL],
            Choice.CANCEL,
        )

    def _agree_to_utf8(self, error: UnencodableTextError) -> bool:
        answer = self._messenger.ask(
            "Cannot save in this encoding",
            f"{error}\n\nSave the document as UTF-8 instead? "
            f"(It was {ENCODING_NAMES[error.encoding]}; UTF-8 can store every character.)",
            [Choice.YES, Choice.CANCEL],
            Choice.CANCEL,
        )
        return answer == Choice.YES

    def _replace(self, info: DocumentInfo, text: str, *, modified: bool) -> None:
        old_id = self.info.doc_id
        # setPlainText reports "unmodified" while self.info still names the old document,
        # so listeners that drop the old recovery copy never touch the new one's.
        self.editor.setPlainText(text)
        self.info = info
        self._read_only_agreed = None  # another document, or a fresh read: ask again
        self.editor.moveCursor(QTextCursor.MoveOperation.Start)
        self.editor.document().setModified(modified)
        if old_id != info.doc_id:
            # Callers asked first (keep_or_discard_changes), so its changes were dealt with.
            self.discard_recovery.emit(old_id)
        self.info_changed.emit(info)

    def _remember(self, path: str) -> None:
        self._settings.update(lambda settings: settings.with_recent_file(path))

    def _cannot_open(self, path: str, message: str) -> None:
        if not os.path.exists(path):
            self._forget(path)
        self._messenger.error("Could not open", message)

    def _forget(self, path: str) -> None:
        def without(settings: Settings) -> Settings:
            recent = tuple(p for p in settings.window.recent_files if p != path)
            return replace(settings, window=replace(settings.window, recent_files=recent))

        self._settings.update(without)
