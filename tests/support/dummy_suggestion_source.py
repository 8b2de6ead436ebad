"""A scripted SuggestionSource: streams given text pieces on QTimer steps, no model.

Scripts are chosen per request: `scripts` maps a seed to its pieces, and `default`
is used for any other seed, so a test can give every alternative its own text. With
auto_stream=False nothing is sent by itself; the test pushes pieces with emit_piece()
and ends requests with emit_finished(), which makes races (a late piece for a cancelled
request) exact instead of timing-dependent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QTimer

from writer_app.engine.sampling import SamplingSettings
from writer_app.services.suggestion_controller import SuggestionSource


@dataclass
class RecordedRequest:
    request_id: int
    prompt: str
    settings: SamplingSettings
    seed: int
    pieces: list[str] = field(default_factory=list)


class DummySuggestionSource(SuggestionSource):
    def __init__(
        self,
        default: Sequence[str] = (" and", " then", " it", " rained."),
        scripts: dict[int, Sequence[str]] | None = None,
        step_ms: int = 1,
        auto_stream: bool = True,
        script_for: Callable[[RecordedRequest], Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        self.default = list(default)
        self.scripts = dict(scripts or {})
        self.script_for = script_for
        self.step_ms = step_ms
        self.auto_stream = auto_stream
        self.requests: list[RecordedRequest] = []
        self.cancelled: list[int] = []
        self.fail_next: str | None = None  # the next request fails with this message
        self._timers: dict[int, QTimer] = {}

    def request(
        self, request_id: int, prompt_text: str, settings: SamplingSettings, seed: int
    ) -> None:
        recorded = RecordedRequest(request_id, prompt_text, settings, seed)
        if self.script_for is not None:
            recorded.pieces = list(self.script_for(recorded))
        else:
            recorded.pieces = list(self.scripts.get(seed, self.default))
        self.requests.append(recorded)
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            QTimer.singleShot(self.step_ms, lambda: self.failed.emit(request_id, message))
            return
        if self.auto_stream:
            self._stream(recorded)

    def cancel(self, request_id: int) -> None:
        self.cancelled.append(request_id)
        timer = self._timers.pop(request_id, None)
        if timer is not None:
            timer.stop()
            timer.deleteLater()

    # --- manual driving ----------------------------------------------------------------

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def emit_piece(self, request_id: int, piece: str) -> None:
        self.token.emit(request_id, piece)

    def emit_finished(self, request_id: int, reason: str = "length") -> None:
        self.finished.emit(request_id, reason)

    def stream_all(self, request_id: int | None = None) -> None:
        """Send every scripted piece of a request at once, then finish it."""
        recorded = self._find(request_id)
        for piece in recorded.pieces:
            self.token.emit(recorded.request_id, piece)
        self.finished.emit(recorded.request_id, "length")

    def _find(self, request_id: int | None) -> RecordedRequest:
        if request_id is None:
            return self.last
        return next(r for r in self.requests if r.request_id == request_id)

    def _stream(self, recorded: RecordedRequest) -> None:
        pieces = list(recorded.pieces)
        timer = QTimer(self)
        timer.setInterval(self.step_ms)

        def step() -> None:
            if pieces:
                self.token.emit(recorded.request_id, pieces.pop(0))
                return
            timer.stop()
            self._timers.pop(recorded.request_id, None)
            timer.deleteLater()
            self.finished.emit(recorded.request_id, "length")

        timer.timeout.connect(step)
        self._timers[recorded.request_id] = timer
        timer.start()
