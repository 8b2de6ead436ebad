"""The one live Settings object of the app, and the one place that saves it.

Settings are frozen, so "changing a setting" means building a new Settings object.
Everything that changes one calls `keeper.update(change)`; the keeper saves the result
through the SettingsStore and emits `changed`, so there is exactly one current value.

Everything that uses settings gets them the same way: `keeper.subscribe(slot)` calls
`slot` with the current value at once and again with every new one. Nobody is handed
a copy at start that could go stale, and nobody has to remember to ask again.

A failed save is reported with `saveFailed` (the UI shows it), once per distinct
reason, so a full disk does not pop up on every zoom step.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from writer_app.settings import Settings, SettingsSaveError, SettingsStore


class SettingsKeeper(QObject):
    changed = Signal(object)  # the new Settings
    saveFailed = Signal(str)  # one sentence for the writer

    def __init__(
        self, settings: Settings, store: SettingsStore | None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._settings = settings
        self._store = store  # None: settings live in memory only (e.g. a throwaway window)
        self._told: set[str] = set()

    @property
    def current(self) -> Settings:
        return self._settings

    def subscribe(self, slot: Callable[[Settings], object]) -> None:
        """Call `slot` with the current settings now and with every change from now on."""
        self.changed.connect(slot)
        slot(self._settings)

    def update(self, change: Callable[[Settings], Settings]) -> Settings:
        """Apply `change` to the current settings, save them, tell listeners."""
        new = change(self._settings)
        if new == self._settings:
            return new
        self._settings = new
        self.save()
        self.changed.emit(new)
        return new

    def save(self) -> bool:
        if self._store is None:
            return True
        try:
            self._store.save(self._settings)
            return True
        except SettingsSaveError as error:
            if str(error) not in self._told:
                self._told.add(str(error))
                self.saveFailed.emit(str(error))
            return False
