"""Model ▸ Engine: switch suggestions between the local model and a remote server.

For the composition root (app.py): create an "Engine" submenu of the Model menu and call
install_remote_engine(engine_menu, controller, local_source, paths, window). It adds
"Local model" and "Remote server…", remembers the server (remote_settings.py), swaps the
controller's SuggestionSource, and reports:

    statusChanged(str)    "Remote: host" (or what is wrong) for the status bar; "" = local
    sourceChanged(obj)    the SuggestionSource now in use

Pass the sampling panel's controls (SamplingPanel.controls) to have the sliders a server
ignores disabled, with a tooltip saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QMessageBox, QWidget

from writer_app.engine.remote import Capabilities, ServerInfo
from writer_app.engine.remote_config import RemoteConfig
from writer_app.paths import AppPaths
from writer_app.services.remote_settings import RemoteSettingsStore
from writer_app.services.remote_source import ConfirmPlainHttp, RemoteSource
from writer_app.services.suggestion_controller import SuggestionController, SuggestionSource
from writer_app.ui.remote_dialog import RemoteServerDialog

REMOTE_UI_NAME = "remoteEngineUi"


def ask_plain_http(parent: QWidget | None) -> ConfirmPlainHttp:
    def confirm(host: str) -> bool:
        answer = QMessageBox.warning(
            parent, "Unencrypted connection",
            f"Suggestions would send the text before your cursor to {host} over plain "
            "http://, unencrypted: anyone on the network between could read it.\n\n"
            "Send it anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    return confirm


def show_capabilities(controls: Mapping[str, object], capabilities: Capabilities | None) -> None:
    """Disable the sampling controls a server ignores (tooltip: why); None: all enabled."""
    unsupported = capabilities.unsupported() if capabilities is not None else {}
    for name, control in controls.items():
        reason = unsupported.get(name)
        for widget in (control.slider, control.spin):  # type: ignore[attr-defined]
            widget.setEnabled(reason is None)
            widget.setToolTip(reason or control.spec.tooltip)  # type: ignore[attr-defined]


class RemoteEngineUi(QObject):
    statusChanged = Signal(str)
    sourceChanged = Signal(object)

    def __init__(
        self, menu: QMenu, controller: SuggestionController, local_source: SuggestionSource,
        paths: AppPaths, parent: QWidget, *, confirm_plain_http: ConfirmPlainHttp | None = None,
        sampling_controls: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName(REMOTE_UI_NAME)
        self._controller, self._local, self._parent = controller, local_source, parent
        self._store = RemoteSettingsStore(paths)
        self._confirm = confirm_plain_http or ask_plain_http(parent)
        self._controls = sampling_controls or {}
        self.remote: RemoteSource | None = None
        group = QActionGroup(self)
        self.local_action = QAction("&Local model", self, checkable=True, checked=True)
        self.remote_action = QAction("&Remote server…", self, checkable=True)
        for action in (self.local_action, self.remote_action):
            group.addAction(action)
            menu.addAction(action)
        self.local_action.triggered.connect(self.use_local)
        self.remote_action.triggered.connect(self._open_from_menu)

    def _open_from_menu(self) -> None:
        self.remote_action.setChecked(self.remote is not None)  # until OK
        self.local_action.setChecked(self.remote is None)
        self.open_dialog().open()

    def open_dialog(self) -> RemoteServerDialog:
        dialog = RemoteServerDialog(self._store.load(), self._parent)
        dialog.accepted.connect(lambda: self.use_remote(dialog.config()))
        return dialog

    def use_remote(self, config: RemoteConfig) -> RemoteSource:
        self._store.save(config)
        self._close_remote()
        source = RemoteSource(config, confirm_plain_http=self._confirm, parent=self)
        source.statusChanged.connect(self.statusChanged)
        source.connected.connect(self._on_connected)
        source.recovered.connect(self._controller.trigger)  # the writer was waiting for one
        self.remote = source
        self._controller.set_source(source)
        self.remote_action.setChecked(True)
        self.statusChanged.emit(source.status)
        self.sourceChanged.emit(source)
        return source

    def use_local(self) -> None:
        self._close_remote()
        self._controller.set_source(self._local)
        self.local_action.setChecked(True)
        show_capabilities(self._controls, None)
        self.statusChanged.emit("")
        self.sourceChanged.emit(self._local)

    def _on_connected(self, info: ServerInfo) -> None:
        show_capabilities(self._controls, info.capabilities)

    def _close_remote(self) -> None:
        if self.remote is not None:
            self.remote.close()
            self.remote.deleteLater()
            self.remote = None


def install_remote_engine(
    engine_menu: QMenu, controller: SuggestionController, local_source: SuggestionSource,
    paths: AppPaths, parent: QWidget, **options: Callable[[str], bool] | Mapping[str, object],
) -> RemoteEngineUi:
    return RemoteEngineUi(engine_menu, controller, local_source, paths, parent, **options)  # type: ignore[arg-type]
