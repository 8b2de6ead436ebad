"""Where the app keeps its files: one object, built from platformdirs, passed around.

Setting WRITER_APP_HOME puts every folder under one directory; tests use it to keep
each test in its own tmp_path, and it also gives users a portable mode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "writer-app"
APP_AUTHOR = "writer-app"
HOME_ENV = "WRITER_APP_HOME"


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path  # settings.json
    data_dir: Path  # models/ live here unless the user moves them
    cache_dir: Path  # hub metadata cache, partial downloads
    state_dir: Path  # recovery files, logs

    @classmethod
    def default(cls) -> AppPaths:
        home = os.environ.get(HOME_ENV)
        if home:
            root = Path(home)
            return cls(root / "config", root / "data", root / "cache", root / "state")
        return cls(
            Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR)),
            Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR)),
            Path(platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR)),
            Path(platformdirs.user_state_dir(APP_NAME, APP_AUTHOR)),
        )

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def recovery_dir(self) -> Path:
        return self.state_dir / "recovery"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"
