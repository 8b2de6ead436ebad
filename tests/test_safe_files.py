"""Safe replaces are all-or-nothing and leave no temp files; OS locks exclude other processes."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from writer_app.safe_files import (
    CHUNK_SIZE,
    AtomicWriter,
    TargetChanged,
    explain_write_failure,
    is_read_only,
    link_into_place,
    try_lock,
    unlock,
    write_bytes_atomic,
    write_text_atomic,
)

OLD = b"the old content, which must survive\n"


class ProducerCrashed(Exception):
    pass


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_crash_inside_the_block_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(OLD)
    with pytest.raises(ProducerCrashed), AtomicWriter(target) as out:
        out.write(b"x" * (3 * CHUNK_SIZE))  # well past the first chunk: bytes hit the disk
        assert len(_names(tmp_path)) == 2  # the temp file exists beside the target
        raise ProducerCrashed
    assert target.read_bytes() == OLD
    assert _names(tmp_path) == ["model.bin"]


def test_a_crash_before_any_file_existed_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), AtomicWriter(tmp_path / "new.bin") as out:
        out.write(b"half")
        raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_a_disk_that_fills_half_way_keeps_the_old_file(tmp_path):
    target = tmp_path / "settings.json"
    target.write_bytes(OLD)
    written: list[int] = []

    def fills_after_one_chunk(fd: int, data: bytes) -> int:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(data))
        return os.write(fd, data)

    with pytest.raises(OSError) as caught:
        write_bytes_atomic(target, b"y" * (2 * CHUNK_SIZE), write_chunk=fills_after_one_chunk)
    assert caught.value.errno == errno.ENOSPC
    assert written == [CHUNK_SIZE]
    assert target.read_bytes() == OLD
    assert _names(tmp_path) == ["settings.json"]
    message = explain_write_failure(caught.value, what="the settings file", existed=True)
    assert message == "The disk is full; the settings file was NOT saved. The previous version is unchanged."


def test_a_clean_exit_replaces_the_file_and_reports_its_stat(tmp_path):
    target = tmp_path / "cache.json"
    target.write_bytes(OLD)
    with AtomicWriter(target) as out:
        out.write(b"new ")
        out.write(memoryview(b"content"))
    assert target.read_bytes() == b"new content"
    assert out.written is not None
    assert (out.written.st_size, out.written.st_mtime_ns) == (
        target.stat().st_size,
        target.stat().st_mtime_ns,
    )
    assert _names(tmp_path) == ["cache.json"]


def test_streams_numpy_buffers_byte_for_byte(tmp_path):
    array = np.arange(24, dtype="<f4").reshape(2, 3, 4)
    with AtomicWriter(tmp_path / "t.bin") as out:
        assert out.write(memoryview(array)) == array.nbytes
    assert (tmp_path / "t.bin").read_bytes() == array.tobytes()


def test_permissions_of_an_existing_target_are_kept(tmp_path):
    target = tmp_path / "private.txt"
    target.write_bytes(OLD)
    target.chmod(0o640)
    write_text_atomic(target, "secret")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_text() == "secret"


def test_a_new_file_gets_the_umask_mode_not_a_private_temp_mode(tmp_path):
    old_umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "fresh.txt", "hello")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "fresh.txt").stat().st_mode) == 0o644


def test_a_symlink_is_followed_and_survives(tmp_path):
    real = tmp_path / "real.txt"
    real.write_bytes(OLD)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_bytes_atomic(link, b"through the link")
    assert link.is_symlink()
    assert real.read_bytes() == b"through the link"


def test_concurrent_writers_never_share_a_temp_file(tmp_path):
    target = tmp_path / "shared.json"
    target.write_bytes(OLD)
    writers = [AtomicWriter(target) for _ in range(16)]
    for writer in writers:
        writer.__enter__()
    temps = [name for name in _names(tmp_path) if name != "shared.json"]
    assert len(temps) == len(set(temps)) == 16
    for number, writer in enumerate(writers):
        writer.write(f"writer {number}\n".encode() * 1000)
        writer.__exit__(None, None, None)
    # Each replace was whole: the last writer's content, no mix, no temp left.
    assert target.read_bytes() == b"writer 15\n" * 1000
    assert _names(tmp_path) == ["shared.json"]


def test_threads_saving_the_same_file_always_leave_one_whole_version(tmp_path):
    target = tmp_path / "settings.json"
    versions = [bytes([65 + n]) * 200_000 for n in range(8)]
    errors: list[BaseException] = []

    def save(data: bytes) -> None:
        try:
            for _ in range(5):
                write_bytes_atomic(target, data)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() in versions
    assert _names(tmp_path) == ["settings.json"]


def test_a_file_replaced_before_the_rename_is_not_overwritten(tmp_path):
    target = tmp_path / "chapter.txt"
    target.write_bytes(OLD)
    seen = target.stat()

    def other_program_saves(path) -> None:
        (tmp_path / "theirs").write_bytes(b"their version")
        os.replace(tmp_path / "theirs", path)

    def unchanged(path) -> bool:
        now = path.stat()
        return (now.st_ino, now.st_size, now.st_mtime_ns) == (
            seen.st_ino,
            seen.st_size,
            seen.st_mtime_ns,
        )

    with pytest.raises(TargetChanged):
        write_bytes_atomic(
            target, b"ours", still_expected=unchanged, before_replace=other_program_saves
        )
    assert target.read_bytes() == b"their version"
    assert _names(tmp_path) == ["chapter.txt"]


def test_create_only_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "new.txt"

    def other_program_creates(path) -> None:
        path.write_bytes(b"theirs")

    with pytest.raises(TargetChanged):
        write_bytes_atomic(target, b"ours", create_only=True, before_replace=other_program_creates)
    assert target.read_bytes() == b"theirs"
    assert _names(tmp_path) == ["new.txt"]
    write_bytes_atomic(tmp_path / "other.txt", b"ours", create_only=True)
    assert (tmp_path / "other.txt").read_bytes() == b"ours"
    assert _names(tmp_path) == ["new.txt", "other.txt"]


def test_link_into_place_replaces_without_copying(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights")
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "model.bin"
    target.write_bytes(OLD)
    assert link_into_place(source, target)
    assert os.path.samefile(source, target)
    assert _names(tmp_path / "models") == ["model.bin"]


def test_a_0444_file_is_read_only_even_for_root(tmp_path):
    target = tmp_path / "locked.txt"
    target.write_bytes(OLD)
    assert not is_read_only(target)
    target.chmod(0o444)
    assert is_read_only(target)
    assert not is_read_only(tmp_path / "missing.txt")


_HOLDER = textwrap.dedent(
    """
    import os, sys
    from writer_app.safe_files import try_lock
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    print("locked" if try_lock(fd) else "refused", flush=True)
    sys.stdin.readline()  # hold it until told to go (or killed)
    """
)


def _start_holder(path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_lock_excludes_another_process_until_it_lets_go(tmp_path):
    path = tmp_path / "owner.lock"
    holder = _start_holder(path)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        fd = os.open(path, os.O_RDWR)
        try:
            assert not try_lock(fd)
            holder.communicate("go\n", timeout=30)  # the holder exits: the OS drops its lock
            assert try_lock(fd)
            second = _start_holder(path)  # and now we hold it against others
            assert second.stdout is not None and second.stdout.readline().strip() == "refused"
            second.communicate("go\n", timeout=30)
            unlock(fd)
        finally:
            os.close(fd)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_killed_holder_releases_its_lock(tmp_path):
    path = tmp_path / "part.lock"
    holder = _start_holder(path)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    fd = os.open(path, os.O_RDWR)
    try:
        assert try_lock(fd)
    finally:
        os.close(fd)
