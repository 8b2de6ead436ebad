"""Sampling presets: the built-in ones, the writer's own, per-model choices, JSON files.

No Qt. A preset is a name for a SamplingSettings. Built-in presets are defined here and
never stored; the writer's own live in Settings.presets. Settings.per_model_preset maps a
model key (the model file's name, see model_key) to the name of a preset of either kind,
so choosing a model brings back the preset last chosen with it.

A preset file is small JSON:

    {"format": "writer-app-preset", "version": 1, "name": "Moody",
     "sampling": {"temperature": 1.1, "top_k": 60, ...}}

Reading one is strict (unlike settings.json, where a bad value quietly falls back): a
file the writer chose to import either becomes exactly the preset it describes, or is
refused with PresetFileError saying what is wrong with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.safe_files import write_text_atomic
from writer_app.settings import Settings

FILE_FORMAT = "writer-app-preset"
FILE_VERSION = 1
MAX_FILE_BYTES = 64 * 1024  # a preset is a few hundred bytes; anything big is not one

BUILT_IN_PRESETS: dict[str, SamplingSettings] = {
    # Few surprises: the likeliest words, short suggestions that keep to the point.
    "Precise": SamplingSettings(
        temperature=0.3, top_k=20, top_p=0.9, repetition_penalty=1.15, max_tokens=16
    ),
    # The app's defaults.
    "Balanced": SamplingSettings(),
    # Livelier wording: more candidates and a flatter distribution, longer suggestions.
    "Creative": SamplingSettings(
        temperature=1.1, top_k=100, top_p=0.98, repetition_penalty=1.05, max_tokens=40
    ),
}
DEFAULT_PRESET = "Balanced"


class PresetError(ValueError):
    """A preset could not be saved, chosen or removed; str() says why in plain words."""


class PresetFileError(Exception):
    """A preset file could not be read or written; str() says why in plain words."""


def is_built_in(name: str) -> bool:
    return name in BUILT_IN_PRESETS


def preset_names(settings: Settings) -> list[str]:
    """Built-in presets first (in their fixed order), then the writer's own, sorted."""
    own = sorted((name for name in settings.presets if not is_built_in(name)), key=str.casefold)
    return [*BUILT_IN_PRESETS, *own]


def find_preset(settings: Settings, name: str) -> SamplingSettings | None:
    if is_built_in(name):
        return BUILT_IN_PRESETS[name]
    return settings.presets.get(name)


def matching_preset(settings: Settings, sampling: SamplingSettings | None = None) -> str | None:
    """The name of a preset with exactly these values (the current ones by default)."""
    sampling = settings.sampling if sampling is None else sampling
    for name in preset_names(settings):
        if find_preset(settings, name) == sampling:
            return name
    return None


def model_key(model_path: str | os.PathLike[str]) -> str:
    """How per_model_preset names a model: its file name, so the choice survives moving
    the models folder."""
    return Path(model_path).name


def save_preset(settings: Settings, name: str, sampling: SamplingSettings) -> Settings:
    """Store (or overwrite) one of the writer's own presets."""
    name = name.strip()
    if not name:
        raise PresetError("A preset needs a name.")
    if is_built_in(name):
        raise PresetError(f"“{name}” is a built-in preset; choose another name.")
    return settings.with_preset(name, sampling)


def delete_preset(settings: Settings, name: str) -> Settings:
    if is_built_in(name):
        raise PresetError(f"“{name}” is a built-in preset and cannot be deleted.")
    if name not in settings.presets:
        raise PresetError(f"There is no preset called “{name}”.")
    return settings.without_preset(name)


def apply_preset(settings: Settings, name: str, model: str | None = None) -> Settings:
    """Make a preset's values the current ones; remember the choice for `model` (a
    model_key) when given."""
    sampling = find_preset(settings, name)
    if sampling is None:
        raise PresetError(f"There is no preset called “{name}”.")
    settings = replace(settings, sampling=sampling)
    if model is not None:
        # Settings.with_model_preset only knows the writer's own presets; built-in names
        # are just as valid here.
        per_model = {**settings.per_model_preset, model: name}
        settings = replace(settings, per_model_preset=per_model)
    return settings


def preset_for_model(settings: Settings, model: str) -> str | None:
    """The preset remembered for a model (a model_key), if it still exists."""
    name = settings.per_model_preset.get(model)
    return name if name is not None and find_preset(settings, name) is not None else None


def reset_to_defaults(settings: Settings, model: str | None = None) -> Settings:
    """The default values, and the model forgets its preset (it then uses the defaults)."""
    per_model = {k: v for k, v in settings.per_model_preset.items() if k != model}
    return replace(settings, sampling=SamplingSettings(), per_model_preset=per_model)


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or "name (2)", "name (3)"... whichever is not taken yet."""
    if name not in taken:
        return name
    number = 2
    while f"{name} ({number})" in taken:
        number += 1
    return f"{name} ({number})"


# ---- files --------------------------------------------------------------------------


def preset_to_json(name: str, sampling: SamplingSettings) -> dict[str, Any]:
    return {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "name": name,
        "sampling": sampling.to_dict(),
    }


def export_preset(path: str | os.PathLike[str], name: str, sampling: SamplingSettings) -> None:
    text = json.dumps(preset_to_json(name, sampling), indent=2, ensure_ascii=False) + "\n"
    try:
        write_text_atomic(path, text)  # an interrupted export never leaves half a file
    except OSError as error:
        raise PresetFileError(
            f"The preset could not be saved as {Path(path).name}: {error.strerror or error}."
        ) from error


def import_preset(path: str | os.PathLike[str]) -> tuple[str, SamplingSettings]:
    """Read a preset file: (name, values), or PresetFileError."""
    file_name = Path(path).name
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise PresetFileError(
            f"{file_name} could not be read: {error.strerror or error}."
        ) from error
    if len(raw) > MAX_FILE_BYTES:
        raise PresetFileError(f"{file_name} is too big to be a preset file.")
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:  # also UnicodeDecodeError
        raise PresetFileError(f"{file_name} is not a preset file (it is not valid JSON).") from None
    try:
        return preset_from_json(data)
    except PresetFileError as error:
        raise PresetFileError(f"{file_name} is not a usable preset file: {error}") from None


def preset_from_json(data: object) -> tuple[str, SamplingSettings]:
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise PresetFileError("it was not made by writer-app's preset export.")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FILE_VERSION:
        raise PresetFileError("it was made by a newer version of writer-app.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PresetFileError("it has no preset name.")
    return name.strip(), sampling_from_json(data.get("sampling"))


def sampling_from_json(stored: object) -> SamplingSettings:
    """Strict: every known value must have the right type and range; unknown keys (from a
    newer version) are ignored and missing ones take their defaults."""
    if not isinstance(stored, Mapping):
        raise PresetFileError("it has no sampling values.")
    defaults = SamplingSettings()
    values: dict[str, Any] = {}
    for f in fields(SamplingSettings):
        if f.name not in stored:
            continue
        value = stored[f.name]
        expected = type(getattr(defaults, f.name))
        if expected is StopAt:
            try:
                values[f.name] = StopAt(value)
            except ValueError:
                allowed = ", ".join(stop.value for stop in StopAt)
                raise PresetFileError(f"stop_at must be one of {allowed}.") from None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PresetFileError(f"{f.name} must be a number.")
        if expected is int and not float(value).is_integer():
            raise PresetFileError(f"{f.name} must be a whole number.")
        values[f.name] = expected(value)
    try:
        return SamplingSettings(**values)
    except (ValueError, OverflowError) as error:
        raise PresetFileError(f"{error}.") from None
