"""Guards against Qt binding bugs the whole app would trip over."""

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    piece = Signal(int, str)


def test_signal_emit_does_not_leak_references(qapp):
    # PySide6 6.12.0 dropped one reference to True per emit and aborted the interpreter
    # after ~1,000 emits; the app emits once per generated token.
    emitter = _Emitter()
    received = []
    emitter.piece.connect(lambda i, s: received.append(i))
    before = sys.getrefcount(True)
    for i in range(5000):
        emitter.piece.emit(i, "token")
    assert len(received) == 5000
    assert abs(sys.getrefcount(True) - before) < 50
