"""The next-token probe: the likeliest tokens at the cursor, asked for after a pause.

A probe goes out after a short pause in typing or moving (PROBE_DELAY_MS) while the
probe is active (the Token probabilities panel is visible); every edit or cursor move
cancels the one in flight, so typing never waits. The engine computes the answer from
the model's logits at the current temperature (InferenceService.request_probabilities,
on the worker thread), over the same prompt window the suggestion will use, so a probe
also warms the cache for it. When suggestions come from a server (RemoteSource), the
probe asks the server instead: it follows the controller's source, so the panel always
shows the model that writes the suggestions.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from writer_app.engine.protocol import Alternative as TokenChoice
from writer_app.engine.sampling import SamplingSettings
from writer_app.services.inference import InferenceService
from writer_app.services.suggestion import prompt_for
from writer_app.services.suggestion_controller import EditorContext, SuggestionController

PROBE_DELAY_MS = 150  # shorter than the suggestion's typing pause: it also warms the cache
TOP_N = 10


class NextTokenProbe(QObject):
    """Asks the service for the next-token probabilities at the cursor, debounced."""

    updated = Signal(object)  # tuple of TokenChoice, best first
    failed = Signal(str)

    def __init__(
        self,
        controller: SuggestionController,
        service: InferenceService,
        sampling: SamplingSettings,
        *,
        top_n: int = TOP_N,
        delay_ms: int = PROBE_DELAY_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._service = service
        self._sampling = sampling
        self._top_n = top_n
        self._active = False
        self._probe_id = 0
        self._waiting = False  # a probe is out and not answered yet
        self.latest: tuple[TokenChoice, ...] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._ask)
        controller.contextChanged.connect(self._context_changed)
        controller.sourceChanged.connect(self._source_changed)
        self._local = service
        self._bind(service, connect=True)

    def _bind(self, service: object, *, connect: bool) -> None:
        ready = getattr(service, "modelLoaded", None) or service.connected  # type: ignore[attr-defined]
        for signal, slot in (
            (ready, self._ready),
            (service.probabilities, self._answered),  # type: ignore[attr-defined]
            (service.probabilitiesFailed, self._failed),  # type: ignore[attr-defined]
        ):
            signal.connect(slot) if connect else signal.disconnect(slot)

    def _source_changed(self, source: object) -> None:
        """Probe what writes the suggestions: the server's source, or the local service."""
        target = source if hasattr(source, "request_probabilities") else self._local
        if target is self._service:
            return
        self._cancel()
        self._bind(self._service, connect=False)
        self._service = target  # type: ignore[assignment]
        self._bind(target, connect=True)
        self.schedule()

    def _ready(self, *_: object) -> None:
        self.schedule()

    @property
    def temperature(self) -> float:
        return self._sampling.temperature

    @property
    def pending(self) -> bool:
        """A probe is waiting to go out or to be answered."""
        return self._timer.isActive() or self._waiting

    def set_sampling(self, sampling: SamplingSettings) -> None:
        """New sampling settings: a new temperature asks again."""
        changed = sampling.temperature != self._sampling.temperature
        self._sampling = sampling
        if changed:
            self.schedule()

    def set_active(self, active: bool) -> None:
        self._active = active
        if active:
            self.schedule()
        else:
            self._timer.stop()
            self._cancel()

    def schedule(self) -> None:
        if self._active:
            self._cancel()
            self._timer.start()

    def _context_changed(self, _context: EditorContext) -> None:
        self.schedule()

    def _cancel(self) -> None:
        if self._waiting:
            self._service.cancel_probabilities(self._probe_id)
            self._waiting = False

    def _ask(self) -> None:
        if not self._active or not self._service.can_probe:
            return
        self._probe_id += 1
        self._waiting = True
        before = self._controller.context.before
        self._service.request_probabilities(
            self._probe_id,
            prompt_for(before),
            self._sampling.temperature,
            self._top_n,
            max_tokens=self._sampling.max_tokens,  # the suggestion's window
        )

    def _answered(self, probe_id: int, choices: tuple[TokenChoice, ...]) -> None:
        if probe_id != self._probe_id or not self._waiting:
            return
        self._waiting = False
        self.latest = tuple(choices)
        self.updated.emit(self.latest)

    def _failed(self, probe_id: int, message: str) -> None:
        if probe_id == self._probe_id and self._waiting:
            self._waiting = False
            self.failed.emit(message)
