"""Guards against Qt binding bugs the whole app would trip over."""

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    piece = Signal(int, str)
    payload = Signal(object)


class _Token:
    """A plain object: never immortal, so its reference count really moves."""


def test_signal_emit_does_not_leak_references(qapp):
    # PySide6 6.12.0 dropped one reference to True per emit and aborted the interpreter
    # after ~1,000 emits; the app emits once per generated token. True is immortal on
    # Python 3.12+ (its count is a constant there), so the count is measured on an object
    # that is not: the payload of every emit, through a slot that returns a bool.
    emitter = _Emitter()
    token = _Token()
    received = []
    emitter.piece.connect(lambda i, s: received.append(i))
    emitter.payload.connect(lambda obj: obj is token)
    before, true_before = sys.getrefcount(token), sys.getrefcount(True)
    for i in range(5000):
        emitter.piece.emit(i, "token")
        emitter.payload.emit(token)
    assert len(received) == 5000
    assert sys.getrefcount(token) == before
    if true_before < 2**30:  # not immortal (Python 3.11 and older): 6.12.0's own symptom
        assert abs(sys.getrefcount(True) - true_before) < 50
