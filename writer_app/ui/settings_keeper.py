"""The one live Settings object of a window, and the one place that saves it.

Settings are frozen, so "changing a setting" means building a new Settings object.
Everything in the UI that changes one calls `keeper.update(change)`; the keeper saves the
result through the SettingsStore and emits `changed`, so there is exactly one current
value and no part of the UI keeps a stale copy.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from writer_app.settings import Settings, SettingsSaveError, SettingsStore
from writer_app.ui.dialogs import Messenger


class SettingsKeeper(QObject):
    changed = Signal(object)  # the new Settings

    def __init__(
        self, settings: Settings, store: SettingsStore | None, messenger: Messenger
    ) -> None:
        super().__init__()
        self._settings = settings
        self._store = store  # None: settings live in memory only (e.g. a throwaway window)
        self._messenger = messenger
        self._told: set[str] = set()

    @property
    def current(self) -> Settings:
        return self._settings

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
            # Once per distinct reason: a full disk must not pop up on every zoom step.
            if str(error) not in self._told:
                self._told.add(str(error))
                self._messenger.warning("Settings not saved", str(error))
            return False
