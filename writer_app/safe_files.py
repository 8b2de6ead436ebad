"""One home for writing files safely: all-or-nothing replaces, and OS file locks.

The replace recipe: write a temp file in the target's folder (so the final rename never
crosses a filesystem) under a fresh random name (two writers never share a temp file),
fsync it, give it the old file's permissions, os.replace it over the target, then fsync
the folder so the rename itself survives a power cut (POSIX). If anything fails or the
caller raises before the rename, the temp file is removed and the target is untouched:
readers see the old bytes or the new ones, never a mix, and no temp file is left.

`AtomicWriter` streams (model files, copies of large files); `write_bytes_atomic` and
`write_text_atomic` write what is already in memory. A writer can also insist that the
target is still what its caller last saw (`still_expected`) or does not exist yet
(`create_only`), so a file another program put there meanwhile is never overwritten
without asking: see `TargetChanged`.

Locks (`try_lock` / `unlock`) are exclusive, non-blocking, and dropped by the OS when
the process holding them dies, however it dies. Downloads lock their partial file and
each running crash-recovery store its owner file with them.

This module imports nothing from the app, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

WriteChunk = Callable[[int, bytes], int]  # same contract as os.write(fd, data) -> written
StillExpected = Callable[[Path], bool]  # True if the target is still what the caller saw

CHUNK_SIZE = 64 * 1024
TEMP_SUFFIX = ".tmp"
_TEMP_NAME_ATTEMPTS = 100


class TargetChanged(OSError):
    """The target was created or replaced by someone else during the write; the new
    file was NOT put in place, the other program's file is untouched."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.EEXIST, "changed by another program during the write", str(path))


class AtomicWriter:
    """`with AtomicWriter(path) as out: out.write(...)` replaces `path` on a clean exit.

    An exception inside the block (a crash of the producer, a cancel, a full disk)
    leaves the old file untouched and no temp file behind. A symlink is followed, so
    the file it points at is replaced and the link survives. After the block, `written`
    is the stat of the new file (its mtime and size are the target's from then on).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        write_chunk: WriteChunk = os.write,
        still_expected: StillExpected | None = None,
        create_only: bool = False,
        before_replace: Callable[[Path], None] | None = None,
    ) -> None:
        """`write_chunk` stands in for os.write (tests fill the disk half-way with it);
        `still_expected` is asked right before the replace; `create_only` refuses to
        replace a file that exists by then; `before_replace` runs just before that final
        check (a test hook: it lets a test play the other program)."""
        self.target = Path(os.path.realpath(path))
        self.written: os.stat_result | None = None
        self._write_chunk = write_chunk
        self._still_expected = still_expected
        self._create_only = create_only
        self._before_replace = before_replace
        self._fd: int | None = None
        self._temp: Path | None = None

    def __enter__(self) -> AtomicWriter:
        self._fd, self._temp = _open_temp_beside(self.target)
        return self

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of `data` (any C-contiguous buffer, e.g. a numpy array's memoryview)."""
        assert self._fd is not None, "write() outside the with block"
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            count = self._write_chunk(self._fd, view[:CHUNK_SIZE])
            if count <= 0:  # a write that makes no progress would loop forever
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[count:]
        return size

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._fd is not None and self._temp is not None
        fd, temp = self._fd, self._temp
        self._fd = None
        if kind is not None:
            # Also on KeyboardInterrupt: never leave a half-written temp file behind.
            os.close(fd)
            _remove_quietly(temp)
            return  # the caller's exception goes on
        try:
            try:
                self._finish_temp(fd, temp)
            finally:
                os.close(fd)
            self._put_in_place(temp)
        except BaseException:
            _remove_quietly(temp)
            raise
        fsync_folder(self.target.parent)

    def _finish_temp(self, fd: int, temp: Path) -> None:
        mode = _existing_mode(self.target)
        if mode is not None:
            os.chmod(temp, mode)
        os.fsync(fd)
        self.written = os.fstat(fd)

    def _put_in_place(self, temp: Path) -> None:
        if self._before_replace is not None:
            self._before_replace(self.target)
        if self._create_only and _link_no_replace(temp, self.target):
            return
        # POSIX has no "rename only if the target is still this inode", so between this
        # check and the rename a window of microseconds stays open (Linux's renameat2
        # RENAME_NOREPLACE closes it only for new files, which the hard link above
        # already does). The check runs after the slow part, the temp file's write and
        # fsync, which is where another program's save used to slip in unnoticed.
        if self._create_only and os.path.lexists(self.target):
            raise TargetChanged(self.target)
        if self._still_expected is not None and not self._still_expected(self.target):
            raise TargetChanged(self.target)
        os.replace(temp, self.target)


def write_bytes_atomic(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    *,
    write_chunk: WriteChunk = os.write,
    still_expected: StillExpected | None = None,
    create_only: bool = False,
    before_replace: Callable[[Path], None] | None = None,
) -> os.stat_result:
    """Replace `path` with `data` all-or-nothing; returns the stat of the new file.
    The options are AtomicWriter's. Raises the OSError (see `explain_write_failure`)."""
    writer = AtomicWriter(
        path,
        write_chunk=write_chunk,
        still_expected=still_expected,
        create_only=create_only,
        before_replace=before_replace,
    )
    with writer as out:
        out.write(data)
    assert writer.written is not None
    return writer.written


def write_text_atomic(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8"
) -> os.stat_result:
    """write_bytes_atomic for text (no newline translation: what you pass is written)."""
    return write_bytes_atomic(path, text.encode(encoding))


def replace_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a finished, fsynced file over `target`, then make the rename durable."""
    os.replace(source, target)
    fsync_folder(Path(target).parent)


def link_into_place(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Hard-link `source` to `target` all-or-nothing (instant, no second copy on disk);
    False if links are impossible there (another filesystem, or none supported)."""
    target = Path(target)
    for _ in range(_TEMP_NAME_ATTEMPTS):
        temp = _temp_name(target)
        try:
            os.link(source, temp)
            break
        except FileExistsError:
            continue
        except OSError:
            return False
    else:
        raise FileExistsError(errno.EEXIST, "no free temp name", str(target.parent))
    try:
        replace_file(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise
    return True


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make renames in `folder` durable; quietly nothing where the OS can't."""
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


def is_read_only(path: str | os.PathLike[str]) -> bool:
    """True for an existing file nobody may write (0444) or this user may not write.

    The mode bits are asked too because os.access says "writable" to root for any file,
    yet a 0444 file says "leave me alone" to root as well (as editors treat it)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(
        path, os.W_OK
    )


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
    if isinstance(error, TargetChanged):
        reason = "Another program changed the file while it was being saved"
    if reason is None:
        reason = f"The system refused the write ({error.strerror or error})"
    return f"{reason}; {what} was NOT saved. {unchanged}"


# ----- OS file locks -------------------------------------------------------------------

if os.name == "nt":
    import msvcrt

    # Windows locks byte ranges, and a locked range can't be read by others: lock one
    # byte far past any file's end, so readers of the data are never blocked.
    _LOCKED_BYTE = 1 << 40

    def try_lock(fd: int) -> bool:
        """Take the exclusive lock on open file `fd`; False if another holder has it."""
        position = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
        finally:
            os.lseek(fd, position, os.SEEK_SET)

    def unlock(fd: int) -> None:
        """Give the lock back (closing the file also does)."""
        position = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        try:
            with contextlib.suppress(OSError):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.lseek(fd, position, os.SEEK_SET)

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Take the exclusive lock on open file `fd`; False if another holder has it."""
        # flock, not lockf: flock locks conflict even between two opens in one process.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def unlock(fd: int) -> None:
        """Give the lock back (closing the file also does)."""
        fcntl.flock(fd, fcntl.LOCK_UN)


# ----- internals -----------------------------------------------------------------------


def _temp_name(target: Path) -> Path:
    # Hidden and suffixed, so folder scans (the models folder, recovery) skip it.
    return target.parent / f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def _open_temp_beside(target: Path) -> tuple[int, Path]:
    # 0o666 lets the umask decide the mode of brand-new files, as any editor would.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_TEMP_NAME_ATTEMPTS):
        temp = _temp_name(target)
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue  # O_EXCL: someone else's temp file; never share one
    raise FileExistsError(errno.EEXIST, "no free temp name", str(target.parent))


def _existing_mode(target: Path) -> int | None:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return None


def _link_no_replace(temp: Path, target: Path) -> bool:
    """Put `temp` at `target` only if nothing is there, atomically (a hard link fails
    if the name exists). False if this filesystem has no hard links: check, then rename."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise TargetChanged(target) from None
    except OSError:
        return False
    _remove_quietly(temp)
    return True


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
