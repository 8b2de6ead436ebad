"""Open and save the writer's documents without ever corrupting or losing them.

Encoding rule (decided once, here):
  1. A byte-order mark wins: UTF-8, UTF-16 LE/BE or UTF-32 LE/BE; the BOM is kept on save.
  2. Otherwise strict UTF-8, the norm.
  3. Otherwise BOM-less UTF-16, recognised by NUL bytes in every other position.
  4. Any other NUL byte means a binary file (a .docx, a picture): refused, never "opened".
  5. Otherwise Windows-1252, or Latin-1 for the five bytes Windows-1252 leaves undefined.
A document is saved back in the encoding it was opened with, so its bytes round-trip
exactly; `notice` tells the writer in plain words whenever the file was not plain UTF-8.
The editor always sees "\\n" line endings; saving restores the file's own line ending
(the majority one if the file mixed them, which `notice` also mentions).
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from writer_app.safe_files import (
    TargetChanged,
    WriteChunk,
    explain_write_failure,
    write_bytes_atomic,
)

ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-16-le": "UTF-16 (little-endian)",
    "utf-16-be": "UTF-16 (big-endian)",
    "utf-32-le": "UTF-32 (little-endian)",
    "utf-32-be": "UTF-32 (big-endian)",
    "cp1252": "Windows-1252 (Western European)",
    "latin-1": "Latin-1 (ISO-8859-1)",
}
NEWLINE_NAMES = {"\n": "Unix (LF)", "\r\n": "Windows (CRLF)", "\r": "old Mac (CR)"}

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_BOM_FOR = {encoding: bom for bom, encoding in _BOMS}


class OpenError(Exception):
    """The file could not be opened as a text document; str() is a sentence for the writer."""


class SaveError(Exception):
    """The document was not saved; str() says why and that the old file is unchanged."""


class ChangedDuringSave(SaveError):
    """Another program created or replaced the file while it was being saved; theirs is
    kept, ours was not written. The caller asks the writer which one to keep."""


class UnencodableTextError(SaveError):
    """The text holds characters the file's encoding cannot store (e.g. emoji in cp1252)."""

    def __init__(self, message: str, *, encoding: str, character: str, line: int) -> None:
        super().__init__(message)
        self.encoding = encoding
        self.character = character
        self.line = line


@dataclass(frozen=True)
class FileStamp:
    """What a file looked like when we last read or wrote it."""

    mtime_ns: int
    size: int
    sha256: str


@dataclass(frozen=True)
class LoadedText:
    text: str  # "\n" line endings only, no BOM
    encoding: str  # a key of ENCODING_NAMES; pass it back to write_text_file_atomic
    newline: str  # "\n", "\r\n" or "\r"
    had_bom: bool
    notice: str | None  # a plain-words remark for the writer, or None if all was ordinary
    stamp: FileStamp  # for changed_on_disk() before the next save


def read_text_file(path: str | os.PathLike[str]) -> LoadedText:
    try:
        with open(path, "rb") as file:
            data = file.read()
            info = os.fstat(file.fileno())
    except OSError as error:
        raise OpenError(f"Could not open {Path(path).name}: {error.strerror or error}.") from error
    stamp = FileStamp(info.st_mtime_ns, len(data), hashlib.sha256(data).hexdigest())
    encoding, had_bom = _detect_encoding(data, Path(path).name)
    body = data[len(_BOM_FOR[encoding]) :] if had_bom else data
    raw_text = body.decode(encoding)  # cannot fail: _detect_encoding checked it
    newline, newline_notice = _detect_newline(raw_text)
    text = raw_text.replace("\r\n", "\n").replace("\r", "\n")
    notes = [note for note in (_encoding_notice(encoding, had_bom), newline_notice) if note]
    return LoadedText(text, encoding, newline, had_bom, " ".join(notes) or None, stamp)


def write_text_file_atomic(
    path: str | os.PathLike[str],
    text: str,
    *,
    encoding: str = "utf-8",
    newline: str = "\n",
    bom: bool = False,
    expected: FileStamp | None = None,
    create_only: bool = False,
    write_chunk: WriteChunk = os.write,
    before_replace: Callable[[Path], None] | None = None,
) -> FileStamp:
    """Save `text` (with "\\n" line endings) all-or-nothing; raises SaveError on failure.

    `expected` (the file as the caller last saw it) or `create_only` (the caller saw no
    file there) is checked again right before the new file replaces the old, after the
    slow write: if another program got there first, ChangedDuringSave is raised and its
    file stays. `before_replace` is a test hook that runs just before that check.
    """
    if encoding not in ENCODING_NAMES or newline not in NEWLINE_NAMES:
        raise ValueError(f"unsupported encoding {encoding!r} or newline {newline!r}")
    data = _encode(text, newline, encoding)
    if bom and encoding in _BOM_FOR:
        data = _BOM_FOR[encoding] + data
    existed = os.path.exists(path)
    try:
        info = write_bytes_atomic(
            path,
            data,
            write_chunk=write_chunk,
            still_expected=None if expected is None else partial(_still_as_stamped, expected),
            create_only=create_only,
            before_replace=before_replace,
        )
    except TargetChanged as error:
        raise ChangedDuringSave(
            f"{Path(path).name} was changed by another program while it was being saved; "
            "your document was NOT saved there, and the other version is kept."
        ) from error
    except OSError as error:
        raise SaveError(
            explain_write_failure(error, what="your document", existed=existed)
        ) from error
    return FileStamp(info.st_mtime_ns, len(data), hashlib.sha256(data).hexdigest())


def stamp_file(path: str | os.PathLike[str]) -> FileStamp:
    with open(path, "rb") as file:
        data = file.read()
        info = os.fstat(file.fileno())
    return FileStamp(info.st_mtime_ns, len(data), hashlib.sha256(data).hexdigest())


def changed_on_disk(path: str | os.PathLike[str], stamp: FileStamp) -> bool:
    """True if another program changed, replaced or deleted the file since `stamp`.

    The content hash decides, so a program that merely touches or rewrites identical
    bytes does not raise a false alarm; a size change answers without reading the file.
    """
    try:
        if os.stat(path).st_size != stamp.size:
            return True
        return stamp_file(path).sha256 != stamp.sha256
    except OSError:
        return True  # gone or unreadable: certainly not the file we saved


def _still_as_stamped(stamp: FileStamp, path: Path) -> bool:
    """changed_on_disk's opposite, quick when nothing happened: the same size and mtime
    need no read; only a touched file is hashed to tell a real change from a touch."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    if (info.st_size, info.st_mtime_ns) == (stamp.size, stamp.mtime_ns):
        return True
    return not changed_on_disk(path, stamp)


def _detect_encoding(data: bytes, name: str) -> tuple[str, bool]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as error:
                raise OpenError(
                    f"{name} says it is {ENCODING_NAMES[encoding]} but is damaged "
                    f"near byte {error.start + len(bom)}; it was not opened."
                ) from error
            return encoding, True
    try:
        data.decode("utf-8")
        if b"\0" not in data:
            return "utf-8", False
    except UnicodeDecodeError:
        pass
    utf16 = _bomless_utf16(data)
    if utf16:
        return utf16, False
    if b"\0" in data:
        raise OpenError(
            f"{name} looks like a binary file (for example a Word document or a picture), "
            "not plain text, so it was not opened."
        )
    try:
        data.decode("cp1252")
        return "cp1252", False
    except UnicodeDecodeError:
        return "latin-1", False  # defines all 256 bytes, so this always round-trips


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 text that is mostly Latin script has a NUL in every other byte."""
    if len(data) < 2 or len(data) % 2:
        return None
    pairs = len(data) // 2
    even_nuls, odd_nuls = data[0::2].count(0), data[1::2].count(0)
    for encoding, nuls, other in (
        ("utf-16-le", odd_nuls, even_nuls),
        ("utf-16-be", even_nuls, odd_nuls),
    ):
        if nuls >= pairs * 0.3 and other == 0:
            try:
                data.decode(encoding)
                return encoding
            except UnicodeDecodeError:
                return None
    return None


def _detect_newline(text: str) -> tuple[str, str | None]:
    crlf = text.count("\r\n")
    counts = {"\r\n": crlf, "\n": text.count("\n") - crlf, "\r": text.count("\r") - crlf}
    used = {newline: count for newline, count in counts.items() if count}
    if not used:
        return "\n", None
    # max() keeps the first of equal counts, so a tie goes to "\n", then "\r\n".
    chosen = max(("\n", "\r\n", "\r"), key=counts.__getitem__)
    if len(used) == 1:
        return chosen, None
    mix = ", ".join(f"{count} {NEWLINE_NAMES[nl]}" for nl, count in used.items())
    return chosen, (
        f"This file mixed line endings ({mix}); it will be saved with "
        f"{NEWLINE_NAMES[chosen]} line endings throughout."
    )


def _encoding_notice(encoding: str, had_bom: bool) -> str | None:
    if encoding == "utf-8":
        return None
    if encoding.startswith("utf-"):
        return f"This file is {ENCODING_NAMES[encoding]}; it will be saved the same way."
    return (
        f"This file is not UTF-8. It was opened as {ENCODING_NAMES[encoding]} and will be "
        "saved back in that encoding, so its bytes stay exactly as they were. "
        "If some letters look wrong, the file may use a different encoding."
    )


def _encode(text: str, newline: str, encoding: str) -> bytes:
    try:
        return text.replace("\n", newline).encode(encoding)
    except UnicodeEncodeError as error:
        character = error.object[error.start]
        line = error.object.count(newline, 0, error.start) + 1
        raise UnencodableTextError(
            f"The character {character!r} on line {line} cannot be stored in "
            f"{ENCODING_NAMES[encoding]}, this file's encoding; the document was NOT saved. "
            "Remove that character, or save the document as UTF-8.",
            encoding=encoding,
            character=character,
            line=line,
        ) from error
