"""The notice for an engine that stopped answering, with a button that restarts it.

While the inference service reports the engine isn't responding (no progress for a few
seconds while it has work), the notice bar says so and offers "Restart the engine"
(InferenceService.restart_engine: kill the engine process, start it again, reload the
model). Once the engine answers again, or has been restarted, the notice goes away.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from writer_app.services.inference import NOT_RESPONDING_NOTICE, InferenceService
from writer_app.ui.status_bar import NoticeBar


class EngineNotice(QObject):
    def __init__(self, notice_bar: NoticeBar, service: InferenceService) -> None:
        super().__init__(notice_bar)
        self._bar = notice_bar
        self._service = service
        self.restart_action = QAction("Restart the engine", notice_bar)
        self.restart_action.setToolTip(
            "Stop the suggestion engine and start it again with the model; your text is safe."
        )
        self.restart_action.setVisible(False)
        self.restart_action.triggered.connect(self._restart)
        notice_bar.addAction(self.restart_action)
        service.notResponding.connect(self._show)
        service.respondingAgain.connect(self._hide)

    def _show(self) -> None:
        self._bar.show_notice(NOT_RESPONDING_NOTICE)
        self.restart_action.setVisible(True)

    def _restart(self) -> None:
        self._hide()
        self._service.restart_engine()

    def _hide(self) -> None:
        self.restart_action.setVisible(False)
        lines = self._bar.label.text().split("\n")
        if NOT_RESPONDING_NOTICE not in lines:
            return
        others = [line for line in lines if line != NOT_RESPONDING_NOTICE]
        if others:
            self._bar.label.setText("\n".join(others))
        else:
            self._bar.dismiss()
