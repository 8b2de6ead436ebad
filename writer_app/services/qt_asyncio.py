"""asyncio on the Qt event loop, through qasync: the remote engine's streaming requests run
as asyncio tasks on the GUI thread, so an edit cancels one by cancelling its task (which
closes the HTTP stream) with no thread hand-off, and a token arrives as a plain signal.

The loop is created marked as already running (qasync's already_running=True): the app
keeps starting Qt with app.exec(), and Qt's loop drives asyncio's callbacks. One loop per
QApplication; close_qt_event_loop() undoes it (tests, shutdown).
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import QCoreApplication

_loop: asyncio.AbstractEventLoop | None = None


def qt_event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        import qasync  # deferred: only the remote engine needs it

        app = QCoreApplication.instance()
        if app is None:
            raise RuntimeError("asyncio on Qt needs a running QApplication")
        _loop = qasync.QEventLoop(app, already_running=True)
    elif asyncio.events._get_running_loop() is None:
        asyncio.events._set_running_loop(_loop)  # taken up again after release_running_loop()
    return _loop


def release_running_loop() -> None:
    """Leave the GUI thread without a running asyncio loop, so that other code may
    asyncio.run() there (the tests do); the loop itself stays, and qt_event_loop() takes
    it up again. Cheaper and safer than closing: Qt may still hold queued calls for it."""
    if _loop is not None and asyncio.events._get_running_loop() is _loop:
        asyncio.events._set_running_loop(None)


def pending_tasks() -> set[asyncio.Task[object]]:
    loop = _loop
    if loop is None or loop.is_closed():
        return set()
    return {task for task in asyncio.all_tasks(loop) if not task.done()}


def close_qt_event_loop() -> None:
    """Close the loop and leave the thread without a running loop. Cancel its tasks and
    let Qt run their cancellation first (pending_tasks() empty), or they are dropped."""
    global _loop
    loop, _loop = _loop, None
    if loop is None or loop.is_closed():
        return
    for task in asyncio.all_tasks(loop):
        task.cancel()
    # qasync's stop() would also quit the QApplication (app.exit()); the loop only has to
    # stop counting as running so that close() accepts it.
    loop._QEventLoop__is_running = False  # type: ignore[attr-defined]
    loop.close()
    asyncio.events._set_running_loop(None)
