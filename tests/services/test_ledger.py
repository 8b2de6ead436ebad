"""RequestLedger: which ids are stale, and interrupting only the work that is running."""

from __future__ import annotations

import threading

from writer_app.services.ledger import RequestLedger


def test_a_newer_or_cancelled_id_makes_older_ones_stale():
    ledger = RequestLedger()
    ledger.note(1)
    assert not ledger.is_stale(1)
    ledger.note(3)
    assert ledger.is_stale(1) and ledger.is_stale(2) and not ledger.is_stale(3)
    ledger.cancel(3)
    assert ledger.is_stale(3)
    ledger.note(4)
    assert not ledger.is_stale(4)
    ledger.cancel_all()
    assert ledger.is_stale(4)


def test_cancel_interrupts_only_a_running_id_it_covers():
    ledger = RequestLedger()
    interrupted: list[str] = []
    ledger.note(5)
    ledger.cancel(5, lambda: interrupted.append("idle"))  # nothing running: no interrupt
    ledger.note(6)
    ledger.note(7)
    with ledger.running(7):
        assert ledger.active == 7
        ledger.cancel(6, lambda: interrupted.append("older"))  # 7 isn't covered by 6
        ledger.cancel(7, lambda: interrupted.append("running"))
    assert ledger.active is None
    assert interrupted == ["running"]


def test_issue_hands_out_newer_ids_and_interrupts_the_running_one():
    ledger = RequestLedger()
    interrupted: list[int] = []
    first = ledger.issue(lambda: interrupted.append(0))
    with ledger.running(first):
        second = ledger.issue(lambda: interrupted.append(first))
    third = ledger.issue(lambda: interrupted.append(second))
    assert first < second < third
    assert interrupted == [first]
    assert ledger.is_stale(second) and not ledger.is_stale(third)


def test_a_finished_older_run_does_not_clear_a_newer_one():
    ledger = RequestLedger()
    with ledger.running(1):
        with ledger.running(2):
            pass
        assert ledger.active is None  # the newest run ended; nothing else is marked
    started, release = threading.Event(), threading.Event()

    def worker() -> None:
        with ledger.running(9):
            started.set()
            release.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(5)
    assert ledger.active == 9  # seen from another thread
    release.set()
    thread.join(5)
    assert ledger.active is None
