"""Every app setting in one typed object, with its default written once, right here.

Settings are frozen dataclasses: change one with `dataclasses.replace` or the helpers
(`with_recent_file`, `with_preset`, ...) and hand the new object to `SettingsStore.save`.
Constructing a section with a wrong type or an out-of-range value raises TypeError or
ValueError, so a bad value never travels further than the code that made it.

On disk: settings.json, `{"schema_version": 1, "editor": {...}, "sampling": {...}, ...}`.
Loading never fails: a missing file means defaults; a damaged file means defaults plus a
notice, with the damaged file kept aside; a single bad value falls back to its default
alone; unknown keys are ignored. Saving is atomic (safe_files.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import Enum
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from writer_app.engine.backends import ENGINES, GPU_ALL_LAYERS
from writer_app.engine.cores import AUTO
from writer_app.engine.memory import DEFAULT_BUDGET_BYTES
from writer_app.engine.sampling import SamplingSettings
from writer_app.paths import AppPaths
from writer_app.safe_files import WriteChunk, explain_write_failure, write_bytes_atomic

SCHEMA_VERSION = 1
MAX_RECENT_FILES = 10
# MIGRATIONS[n] turns a version-n dict into a version-(n+1) dict.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class Theme(str, Enum):
    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


class _Section:
    """Shared checks: each field must match its annotation and stay within LIMITS."""

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {}

    def __post_init__(self) -> None:
        for name, hint in _hints(type(self)).items():
            object.__setattr__(self, name, _coerce(getattr(self, name), hint, name))
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class EditorSettings(_Section):
    font_family: str = ""  # empty: the UI picks the platform's default serif font
    font_size: int = 13  # points
    zoom: int = 100  # percent, on top of font_size
    line_wrap: bool = True
    theme: Theme = Theme.SYSTEM
    autosuggest: bool = True
    debounce_ms: int = 300  # pause in typing before a suggestion is requested
    suggest_mid_word: bool = False  # False: wait until the cursor is after a space/punctuation
    # True: also suggest with text after the cursor, using only the text before it as
    # context; False: suggest only when nothing but whitespace follows on that line.
    ignore_text_after_cursor: bool = False

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "font_size": (6, 72),
        "zoom": (25, 400),
        "debounce_ms": (0, 5000),
    }


@dataclass(frozen=True)
class ModelSettings(_Section):
    active_model: str | None = None  # the path of the model last chosen (None: the demo)
    models_dir: str | None = None  # None: AppPaths.models_dir
    hub_endpoint: str | None = None  # None: huggingface_hub's default (or HF_ENDPOINT)
    # The engine's threads: "auto" (every free physical core, engine/cores.py) or a
    # number, which is capped to the free cores all the same. Older files stored 1.
    threads: int | str = AUTO
    engine: str = "ctransformers"  # or "llama.cpp" (engine/backends.py ENGINES)
    # The whole app's resident memory, in MB (10^6 bytes), that the model's context is
    # capped to fit (engine/memory.py); 0: no cap. 1000 keeps gpt2-large at 416 tokens.
    memory_budget_mb: int = DEFAULT_BUDGET_BYTES // 1_000_000
    # llama.cpp's layers on a GPU, when its build finds one: 0 none (the default: the
    # memory budget counts everything in RAM), GPU_ALL_LAYERS all of them.
    gpu_layers: int = 0

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "memory_budget_mb": (0, 10_000_000),
        "gpu_layers": (0, GPU_ALL_LAYERS),
    }
    MAX_THREADS: ClassVar[int] = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.threads, str) and self.threads != AUTO:
            raise ValueError(f"threads must be {AUTO!r} or a number, got {self.threads!r}")
        if isinstance(self.threads, int) and not 1 <= self.threads <= self.MAX_THREADS:
            raise ValueError(f"threads must be between 1 and {self.MAX_THREADS}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.hub_endpoint and not self.hub_endpoint.startswith(("http://", "https://")):
            raise ValueError(f"hub_endpoint must be an http(s) address, got {self.hub_endpoint}")


@dataclass(frozen=True)
class WindowSettings(_Section):
    geometry: str = ""  # base64 of QWidget.saveGeometry()
    state: str = ""  # base64 of QMainWindow.saveState()
    last_document: str | None = None
    recent_files: tuple[str, ...] = ()  # newest first, at most MAX_RECENT_FILES
    show_sampling_panel: bool = True
    show_probability_panel: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "recent_files", self.recent_files[:MAX_RECENT_FILES])


@dataclass(frozen=True)
class PrivacySettings(_Section):
    remember_recent_files: bool = True
    crash_recovery: bool = True  # keep unsaved text in AppPaths.recovery_dir
    recovery_interval_s: int = 5
    offline: bool = False  # never contact the model hub (no downloads, no catalog refresh)

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {"recovery_interval_s": (1, 300)}


@dataclass(frozen=True)
class Settings:
    editor: EditorSettings = field(default_factory=EditorSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    presets: Mapping[str, SamplingSettings] = field(default_factory=dict)  # user presets
    per_model_preset: Mapping[str, str] = field(default_factory=dict)  # model id -> preset
    models: ModelSettings = field(default_factory=ModelSettings)
    window: WindowSettings = field(default_factory=WindowSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)

    def with_recent_file(self, path: str) -> Settings:
        """Put `path` first in the recent list (unless the writer turned that off)."""
        window = replace(self.window, last_document=path)
        if self.privacy.remember_recent_files:
            recent = (path, *(p for p in self.window.recent_files if p != path))
            window = replace(window, recent_files=recent)
        return replace(self, window=window)

    def with_models(self, **changes: Any) -> Settings:
        """These model settings changed (e.g. engine="llama.cpp", threads="auto")."""
        return replace(self, models=replace(self.models, **changes))

    def with_preset(self, name: str, sampling: SamplingSettings) -> Settings:
        if not name.strip():
            raise ValueError("a preset needs a name")
        return replace(self, presets={**self.presets, name: sampling})

    def without_preset(self, name: str) -> Settings:
        presets = {k: v for k, v in self.presets.items() if k != name}
        per_model = {k: v for k, v in self.per_model_preset.items() if v != name}
        return replace(self, presets=presets, per_model_preset=per_model)

    def with_model_preset(self, model_id: str, preset: str | None) -> Settings:
        """Remember which preset a model uses; None forgets it."""
        if preset is not None and preset not in self.presets:
            raise ValueError(f"there is no preset called {preset!r}")
        per_model = {k: v for k, v in self.per_model_preset.items() if k != model_id}
        if preset is not None:
            per_model[model_id] = preset
        return replace(self, per_model_preset=per_model)

    def sampling_for_model(self, model_id: str | None) -> SamplingSettings:
        preset = self.per_model_preset.get(model_id or "")
        return self.presets.get(preset or "", self.sampling)


@dataclass(frozen=True)
class LoadResult:
    settings: Settings
    notice: str | None  # a sentence for the writer, or None when all went well


class SettingsSaveError(Exception):
    """Settings were not saved; str() says why in plain words."""


class SettingsStore:
    def __init__(self, path: str | os.PathLike[str], *, write_chunk: WriteChunk = os.write):
        self.path = Path(path)
        self._write_chunk = write_chunk

    @classmethod
    def for_paths(cls, paths: AppPaths) -> SettingsStore:
        return cls(paths.settings_file)

    def load(self) -> LoadResult:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return LoadResult(Settings(), None)
        except OSError as error:
            return self._start_fresh(f"could not be read ({error.strerror or error})")
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:  # also UnicodeDecodeError
            return self._start_fresh("was damaged")
        if not isinstance(data, dict):
            return self._start_fresh("did not contain settings")
        notes = []
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            version = SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            notes.append(
                "Your settings were saved by a newer version of writer-app; "
                "options this version does not know were ignored."
            )
        while version < SCHEMA_VERSION and version in MIGRATIONS:
            data, version = MIGRATIONS[version](data), version + 1
        settings, bad = settings_from_json(data)
        if bad:
            notes.append(
                "Some settings had invalid values and were reset to their defaults: "
                + ", ".join(bad)
                + "."
            )
        return LoadResult(settings, " ".join(notes) or None)

    def save(self, settings: Settings) -> None:
        text = json.dumps(settings_to_json(settings), indent=2, ensure_ascii=False) + "\n"
        existed = self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.path, text.encode("utf-8"), write_chunk=self._write_chunk)
        except OSError as error:
            message = explain_write_failure(error, what="the settings file", existed=existed)
            raise SettingsSaveError(message) from error

    def _start_fresh(self, problem: str) -> LoadResult:
        kept = self._set_aside()
        where = f" The old file was kept as {kept.name}." if kept else ""
        notice = (
            f"Your settings file {problem}, so writer-app started with default settings.{where}"
        )
        return LoadResult(Settings(), notice)

    def _set_aside(self) -> Path | None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for attempt in range(100):
            suffix = f"-{attempt}" if attempt else ""
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}{suffix}")
            if aside.exists():
                continue
            try:
                os.replace(self.path, aside)
                return aside
            except OSError:
                return None
        return None


def settings_to_json(settings: Settings) -> dict[str, Any]:
    def section(obj: _Section) -> dict[str, Any]:
        out = {}
        for f in fields(obj):  # type: ignore[arg-type]
            value = getattr(obj, f.name)
            out[f.name] = value.value if isinstance(value, Enum) else value
            if isinstance(value, tuple):
                out[f.name] = list(value)
        return out

    return {
        "schema_version": SCHEMA_VERSION,
        "editor": section(settings.editor),
        "sampling": settings.sampling.to_dict(),
        "presets": {name: preset.to_dict() for name, preset in settings.presets.items()},
        "per_model_preset": dict(settings.per_model_preset),
        "models": section(settings.models),
        "window": section(settings.window),
        "privacy": section(settings.privacy),
    }


def settings_from_json(data: Mapping[str, Any]) -> tuple[Settings, list[str]]:
    """Build Settings from stored data; also returns the dotted names of values reset."""
    bad: list[str] = []
    sections = {
        name: _section_from_json(cls, data.get(name), name, bad)
        for name, cls in (
            ("editor", EditorSettings),
            ("models", ModelSettings),
            ("window", WindowSettings),
            ("privacy", PrivacySettings),
        )
    }
    sampling = _sampling_from_json(data.get("sampling"), "sampling", bad)
    presets: dict[str, SamplingSettings] = {}
    stored_presets = data.get("presets", {})
    if isinstance(stored_presets, dict):
        for name, value in stored_presets.items():
            if name.strip():
                presets[name] = _sampling_from_json(value, f"presets.{name}", bad)
    else:
        bad.append("presets")
    per_model = data.get("per_model_preset", {})
    if not isinstance(per_model, dict) or not all(isinstance(v, str) for v in per_model.values()):
        bad.append("per_model_preset")
        per_model = {}
    return Settings(sampling=sampling, presets=presets, per_model_preset=per_model, **sections), bad


def _section_from_json(cls: type[_Section], stored: Any, name: str, bad: list[str]) -> Any:
    result = cls()
    if stored is None:
        return result
    if not isinstance(stored, dict):
        bad.append(name)
        return result
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in stored:
            try:
                result = replace(result, **{f.name: stored[f.name]})  # type: ignore[type-var]
            except (TypeError, ValueError):
                bad.append(f"{name}.{f.name}")
    return result


def _sampling_from_json(stored: Any, name: str, bad: list[str]) -> SamplingSettings:
    if stored is None:
        return SamplingSettings()
    if not isinstance(stored, dict):
        bad.append(name)
        return SamplingSettings()
    try:
        result = SamplingSettings.from_dict(stored)
    except ArithmeticError:  # int(inf): JSON allows 1e999, from_dict only catches ValueError
        bad.append(name)
        return SamplingSettings()
    # from_dict falls back silently; a stored value that did not survive was rejected.
    kept = result.to_dict()
    bad.extend(f"{name}.{key}" for key in kept if key in stored and stored[key] != kept[key])
    return result


@cache
def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {name: hint for name, hint in get_type_hints(cls).items() if name in names}


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Return `value` as type `hint` (Enum from its value, tuple from a list) or raise."""
    origin = get_origin(hint)
    if origin in (Union, UnionType):  # `X | None`, or `int | str`: the first that fits
        if value is None and type(None) in get_args(hint):
            return None
        inner = [arg for arg in get_args(hint) if arg is not type(None)]
        for arg in inner[:-1]:
            try:
                return _coerce(value, arg, name)
            except (TypeError, ValueError):
                pass
        return _coerce(value, inner[-1], name)
    if origin is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise TypeError(f"{name} must be a list of strings")
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    # bool is a subclass of int: a stored `true` must not pass as a font size.
    if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
        return value
    raise TypeError(f"{name} must be {hint.__name__}, got {value!r}")
