"""Crash recovery: copies survive crashes, live instances keep their own, damage is survived."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

import writer_app
from writer_app.documents.recovery import RecoveryError, RecoveryStore, new_doc_id

REPO_ROOT = Path(writer_app.__file__).resolve().parent.parent
SAVED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def folder(app_home) -> Path:
    return app_home.recovery_dir


def _leftover(folder: Path, doc_id: str, **overrides) -> Path:
    """An entry as a crashed instance leaves it: its owner's lock file is gone."""
    payload = {
        "format": 1,
        "doc_id": doc_id,
        "path": None,
        "title": "Untitled",
        "last_saved": None,
        "written_at": "2026-03-01T10:00:00+00:00",
        "owner": "deadbeef" * 4,
        "owner_pid": 999999,
        "text": "lost words",
        **overrides,
    }
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{doc_id}.json"
    file.write_text(json.dumps(payload), "utf-8")
    return file


def test_entries_of_a_quit_instance_are_listed_then_discarded(folder):
    named, untitled = new_doc_id(), new_doc_id()
    with RecoveryStore(folder) as first:
        first.write(
            named, "Chapter 1\n", path="/docs/novel.txt", title="novel.txt", last_saved=SAVED_AT
        )
        first.write(untitled, "An idea", path=None, title="Untitled 1", last_saved=None)
        assert first.list() == []  # its own documents are live, not crashed

    with RecoveryStore(folder) as second:
        entries = {entry.doc_id: entry for entry in second.list()}
        assert set(entries) == {named, untitled}
        assert (entries[named].text, entries[named].path) == ("Chapter 1\n", "/docs/novel.txt")
        assert entries[named].last_saved == SAVED_AT and entries[named].title == "novel.txt"
        assert (entries[untitled].path, entries[untitled].last_saved) == (None, None)
        assert entries[untitled].written_at.tzinfo is not None

        second.discard(named)
        second.discard(untitled)
        assert second.list() == []
        assert sorted(p.name for p in folder.glob("*.json")) == []


def test_unchanged_text_is_not_rewritten(folder):
    doc_id = new_doc_id()
    with RecoveryStore(folder) as store:
        assert store.write(doc_id, "same", path=None, title="Untitled", last_saved=None)
        before = os.stat(folder / f"{doc_id}.json")
        assert not store.write(doc_id, "same", path=None, title="Untitled", last_saved=None)
        after = os.stat(folder / f"{doc_id}.json")
        assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
        assert store.write(doc_id, "same", path="/a.txt", title="a.txt", last_saved=SAVED_AT)
        assert store.write(doc_id, "changed", path="/a.txt", title="a.txt", last_saved=SAVED_AT)


def test_a_second_running_instance_does_not_offer_live_documents(folder):
    first = RecoveryStore(folder)
    first.write(new_doc_id(), "being typed", path=None, title="Untitled", last_saved=None)
    with RecoveryStore(folder) as second:
        assert second.list() == []
        first.close()
        assert [entry.text for entry in second.list()] == ["being typed"]


def test_crash_leftovers_are_listed_newest_first(folder):
    _leftover(folder, "older", written_at="2026-03-01T10:00:00+00:00", text="old")
    _leftover(folder, "newer", written_at="2026-03-02T10:00:00+00:00", text="new")
    with RecoveryStore(folder) as store:
        assert [entry.doc_id for entry in store.list()] == ["newer", "older"]


def test_claimed_entry_becomes_live_for_other_instances(folder):
    _leftover(folder, "orphan")
    claimer = RecoveryStore(folder)
    assert claimer.claim("orphan").text == "lost words"
    assert claimer.claim("missing") is None
    with RecoveryStore(folder) as other:
        assert other.list() == []
        assert other.claim("orphan") is None
        claimer.close()
        assert [entry.doc_id for entry in other.list()] == ["orphan"]


@pytest.mark.parametrize(
    "damage",
    [
        b"{ not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        json.dumps({"format": 1, "doc_id": "bad", "text": 5}).encode(),
        None,  # written below: valid JSON with a written_at lacking a time zone
    ],
)
def test_damaged_entries_are_set_aside_without_losing_the_good_ones(folder, damage):
    _leftover(folder, "good")
    bad = folder / "bad.json"
    if damage is None:
        _leftover(folder, "bad", written_at="2026-03-01T10:00:00")
        damage = bad.read_bytes()
    else:
        bad.write_bytes(damage)
    with RecoveryStore(folder) as store:
        assert [entry.doc_id for entry in store.list()] == ["good"]
    kept = list((folder / "damaged").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == damage
    assert not bad.exists()


def test_entries_from_a_newer_version_are_left_alone(folder):
    file = _leftover(folder, "future", format=99)
    with RecoveryStore(folder) as store:
        assert store.list() == []
    assert file.exists()


def test_stale_owner_locks_are_cleaned_once_their_entries_are_gone(folder):
    crashed = RecoveryStore(folder)
    crashed.write("doc", "text", path=None, title="Untitled", last_saved=None)
    crashed._lock.release(delete=False)  # what a crash does: lock gone, file left behind
    lock_file = folder / "owners" / f"{crashed.owner}.lock"
    with RecoveryStore(folder) as store:
        assert [entry.doc_id for entry in store.list()] == ["doc"]
        assert lock_file.exists()  # still referenced by the entry
        store.discard("doc")
        store.list()
        assert not lock_file.exists()
        assert [p.stem for p in (folder / "owners").glob("*.lock")] == [store.owner]


def test_text_with_a_lone_surrogate_is_kept(folder):
    with RecoveryStore(folder) as store:
        store.write("odd", "half \ud83d emoji", path=None, title="Untitled", last_saved=None)
    with RecoveryStore(folder) as store:
        assert store.list()[0].text == "half \ud83d emoji"


def test_invalid_doc_id_is_refused(folder):
    with RecoveryStore(folder) as store, pytest.raises(ValueError, match="doc_id"):
        store.write("../escape", "x", path=None, title="t", last_saved=None)


def test_unusable_folder_and_failed_writes_raise_recovery_error(tmp_path, folder, monkeypatch):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(RecoveryError, match="Crash recovery is off"):
        RecoveryStore(not_a_folder)

    with RecoveryStore(folder) as store:
        store.write("doc", "first", path=None, title="t", last_saved=None)

        def failing_fsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(RecoveryError, match="disk is full; the recovery copy was NOT saved"):
            store.write("doc", "second", path=None, title="t", last_saved=None)
        monkeypatch.undo()
        assert json.loads((folder / "doc.json").read_text())["text"] == "first"
        # The failed write is not remembered as done, so the next tick retries it.
        assert store.write("doc", "second", path=None, title="t", last_saved=None)


CHILD = """
import sys
from writer_app.documents.recovery import RecoveryStore
store = RecoveryStore(sys.argv[1])
store.write("childdoc", "typed before the crash", path=None, title="Untitled 1", last_saved=None)
print("ready", flush=True)
sys.stdin.read()  # wait here until the parent kills us
"""


def test_entry_of_a_killed_process_is_offered_but_not_while_it_lives(folder):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with RecoveryStore(folder) as store:
            assert store.list() == []  # the child is alive: its document is not "crashed"
            child.kill()  # SIGKILL on POSIX: no cleanup code runs
            child.wait(timeout=30)
            entries = store.list()
        assert [(e.doc_id, e.text) for e in entries] == [("childdoc", "typed before the crash")]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()
        child.stdout.close()
