"""Replace a file's contents all-or-nothing: the old bytes or the new ones, never a mix.

The recipe: write a temp file in the same folder (so the final rename never crosses a
filesystem), flush and fsync it, give it the old file's permissions, os.replace it over
the target, then fsync the folder so the rename itself survives a power cut (POSIX).
If anything fails before the rename, the temp file is removed and the target is untouched.

Tests simulate a full disk half-way through by passing `write_chunk`, a stand-in for
os.write, instead of patching the os module for the whole process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

WriteChunk = Callable[[int, bytes], int]  # same contract as os.write(fd, data) -> written

CHUNK_SIZE = 64 * 1024


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    write_chunk: WriteChunk = os.write,
) -> os.stat_result:
    """Atomically replace `path` with `data`; returns the stat of the new file.

    A symlink is followed, so the file it points at is replaced and the link survives.
    Raises the underlying OSError on failure (see `explain_write_failure`).
    """
    target = Path(os.path.realpath(path))
    old_mode = _existing_mode(target)
    temp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    # 0o666 lets the umask decide the mode of brand-new files, as any editor would.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, 0o666)
    try:
        try:
            _write_all(fd, data, write_chunk)
            if old_mode is not None:
                os.chmod(temp, old_mode)
            os.fsync(fd)
            written = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written temp file behind.
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_folder(target.parent)
    return written


def _existing_mode(target: Path) -> int | None:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return None


def _write_all(fd: int, data: bytes, write_chunk: WriteChunk) -> None:
    view = memoryview(data)
    while view:
        count = write_chunk(fd, view[:CHUNK_SIZE])
        if count <= 0:  # a write that makes no progress would loop forever
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[count:]


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a folder as a file; NTFS journals the rename itself
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse to fsync folders; the data itself is already safe
    finally:
        os.close(dir_fd)


def explain_write_failure(error: OSError, *, what: str, existed: bool) -> str:
    """A sentence a writer can act on, e.g. 'The disk is full; your document was NOT saved.'"""
    unchanged = "The previous version is unchanged." if existed else "Nothing was written to disk."
    reasons = {
        # Listed before ENOSPC: where EDQUOT is missing (Windows) ENOSPC must win.
        getattr(errno, "EDQUOT", errno.ENOSPC): "Your disk quota is used up",
        errno.ENOSPC: "The disk is full",
        errno.EACCES: "You do not have permission to write to that folder",
        errno.EPERM: "You do not have permission to write to that folder",
        errno.EROFS: "That disk is read-only",
        errno.ENOENT: "That folder no longer exists",
        errno.ENAMETOOLONG: "The file name is too long",
        errno.EIO: "The disk reported a hardware error",
    }
    reason = reasons.get(error.errno if error.errno is not None else -1)
    if reason is None:
        reason = f"The system refused the write ({error.strerror or error})"
    return f"{reason}; {what} was NOT saved. {unchanged}"
