"""Model ▸ Engine ▸ Remote server…: where the server is, its key, which model.

"Test connection" asks the server for its models (GET /v1/models) and fills the model
list; nothing else is sent until the writer presses OK. A stored key is never put back
into the key field: the field shows it masked as a placeholder, and stays empty unless
the writer types a new one (empty keeps the stored key).
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from writer_app.engine.remote import RemoteClient, ServerInfo, gpt2_tokenizer
from writer_app.engine.remote_config import RemoteConfig
from writer_app.engine.remote_errors import RemoteConfigError, RemoteError
from writer_app.services.qt_asyncio import qt_event_loop

PLAIN_HTTP_WARNING = (
    "This address uses plain http:// to another machine: your text would cross the "
    "network unencrypted. Prefer https://, or a server on this machine."
)


def describe(info: ServerInfo, host: str) -> str:
    caps = info.capabilities
    prompt = "prompts go as token ids" if caps.token_ids else "prompts go as text"
    return (f"Connected to {caps.kind} at {host}: model {info.model}, "
            f"{info.n_ctx}-token context; {prompt}.")


class RemoteServerDialog(QDialog):
    tested = Signal(bool, str)  # success, the sentence shown

    def __init__(self, config: RemoteConfig | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Remote Server")
        self.setObjectName("remoteServerDialog")
        self._stored_key = config.api_key if config else ""
        self._task: asyncio.Task[None] | None = None

        self.url_edit = QLineEdit(config.base_url if config else "")
        self.url_edit.setPlaceholderText("http://localhost:8080/v1")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText(
            f"stored: {config.masked_key} (type to replace)" if self._stored_key else "none"
        )
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setPlaceholderText("the server's first model")
        if config and config.model:
            self.model_combo.addItem(config.model)
        self.test_button = QPushButton("Test connection")
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.warning_label = QLabel(PLAIN_HTTP_WARNING)
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #a35a00;")

        form = QFormLayout()
        form.addRow("Server address", self.url_edit)
        form.addRow("API key", self.key_edit)
        form.addRow("Model", self.model_combo)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.warning_label)
        layout.addLayout(test_row)
        layout.addWidget(self.result_label)
        layout.addWidget(QLabel("Your text goes only to this address, and only while the "
                                "remote engine is chosen."))
        layout.addWidget(self.buttons)

        self.url_edit.textChanged.connect(self._update_warning)
        self.test_button.clicked.connect(self.test_connection)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self._update_warning()

    def config(self) -> RemoteConfig:
        """What the fields say. Raises RemoteConfigError with a sentence."""
        key = self.key_edit.text().strip() or self._stored_key
        return RemoteConfig.create(self.url_edit.text(), key, self.model_combo.currentText())

    def _update_warning(self) -> None:
        try:
            plain = self.config().is_plain_http_to_another_machine
        except RemoteConfigError:
            plain = False
        self.warning_label.setVisible(plain)

    def test_connection(self) -> None:
        try:
            config = self.config()
        except RemoteConfigError as error:
            self._show(False, str(error))
            return
        if self._task is not None:
            self._task.cancel()
        self.test_button.setEnabled(False)
        self.result_label.setText(f"Asking {config.host}…")
        self._task = qt_event_loop().create_task(self._test(config))

    async def _test(self, config: RemoteConfig) -> None:
        client = RemoteClient(config, gpt2_tokenizer())
        try:
            info = await client.connect()
        except RemoteError as error:
            self._show(False, str(error))
            return
        finally:
            await client.aclose()
            self.test_button.setEnabled(True)
        chosen = self.model_combo.currentText()
        self.model_combo.clear()
        self.model_combo.addItems(list(info.models))
        self.model_combo.setCurrentText(chosen or info.model)
        self._show(True, describe(info, config.host))

    def _show(self, ok: bool, sentence: str) -> None:
        self.result_label.setText(sentence)
        self.tested.emit(ok, sentence)

    def accept(self) -> None:
        try:
            self.config()
        except RemoteConfigError as error:
            self._show(False, str(error))
            return
        super().accept()

    def done(self, result: int) -> None:
        if self._task is not None:
            self._task.cancel()
        super().done(result)
