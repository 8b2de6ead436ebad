"""Presets without Qt: built-ins, the writer's own, per-model choices, JSON files."""

from __future__ import annotations

import json

import pytest

from writer_app import presets
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.settings import Settings, SettingsStore

MOODY = SamplingSettings(
    temperature=1.3,
    top_k=0,
    top_p=0.8,
    repetition_penalty=1.4,
    repetition_window=32,
    max_tokens=60,
    seed=42,
    alternatives=5,
    stop_at=StopAt.PARAGRAPH,
)


def test_built_ins_come_first_and_differ_from_each_other():
    settings = presets.save_preset(Settings(), "aardvark", MOODY)
    assert presets.preset_names(settings) == ["Precise", "Balanced", "Creative", "aardvark"]
    values = list(presets.BUILT_IN_PRESETS.values())
    assert len(set(values)) == 3
    assert presets.BUILT_IN_PRESETS["Balanced"] == SamplingSettings()
    precise, creative = presets.BUILT_IN_PRESETS["Precise"], presets.BUILT_IN_PRESETS["Creative"]
    assert precise.temperature < SamplingSettings().temperature < creative.temperature


def test_a_built_in_name_cannot_be_taken_or_deleted():
    with pytest.raises(presets.PresetError, match="built-in"):
        presets.save_preset(Settings(), "Creative", MOODY)
    with pytest.raises(presets.PresetError, match="built-in"):
        presets.delete_preset(Settings(), "Precise")
    with pytest.raises(presets.PresetError, match="needs a name"):
        presets.save_preset(Settings(), "   ", MOODY)


def test_applying_a_preset_sets_the_values_and_remembers_it_for_the_model():
    settings = presets.apply_preset(Settings(), "Creative", model="cat.bin")
    assert settings.sampling == presets.BUILT_IN_PRESETS["Creative"]
    assert presets.preset_for_model(settings, "cat.bin") == "Creative"
    assert presets.preset_for_model(settings, "owl.bin") is None
    assert presets.matching_preset(settings) == "Creative"
    own = presets.apply_preset(presets.save_preset(settings, "Moody", MOODY), "Moody", "owl.bin")
    assert presets.preset_for_model(own, "owl.bin") == "Moody"
    assert presets.preset_for_model(own, "cat.bin") == "Creative"
    # Deleting the writer's preset forgets the models that used it.
    gone = presets.delete_preset(own, "Moody")
    assert presets.preset_for_model(gone, "owl.bin") is None
    assert presets.find_preset(gone, "Moody") is None


def test_reset_to_defaults_forgets_the_models_preset():
    settings = presets.apply_preset(Settings(), "Precise", model="cat.bin")
    reset = presets.reset_to_defaults(settings, "cat.bin")
    assert reset.sampling == SamplingSettings()
    assert presets.preset_for_model(reset, "cat.bin") is None
    assert presets.matching_preset(reset) == "Balanced"


def test_model_key_is_the_file_name():
    assert presets.model_key("/models/a/gpt2-q4_0.bin") == "gpt2-q4_0.bin"


def test_presets_and_per_model_choices_survive_the_settings_file(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    settings = presets.save_preset(Settings(), "Moody", MOODY)
    settings = presets.apply_preset(settings, "Moody", "owl.bin")
    settings = presets.apply_preset(settings, "Precise", "cat.bin")
    store.save(settings)
    loaded = store.load()
    assert loaded.notice is None
    assert loaded.settings.presets == {"Moody": MOODY}
    assert presets.preset_for_model(loaded.settings, "owl.bin") == "Moody"
    assert presets.preset_for_model(loaded.settings, "cat.bin") == "Precise"
    assert loaded.settings.sampling == presets.BUILT_IN_PRESETS["Precise"]


def test_a_preset_file_round_trips(tmp_path):
    path = tmp_path / "moody.json"
    presets.export_preset(path, "Moody", MOODY)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "writer-app-preset" and data["name"] == "Moody"
    assert data["sampling"]["stop_at"] == "paragraph"
    assert presets.import_preset(path) == ("Moody", MOODY)


def test_missing_values_take_defaults_and_unknown_ones_are_ignored(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(
        json.dumps(
            {
                "format": "writer-app-preset",
                "version": 1,
                "name": " Warm ",
                "sampling": {"temperature": 1, "from_the_future": True},
            }
        )
    )
    assert presets.import_preset(path) == ("Warm", SamplingSettings(temperature=1.0))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe not utf-8", "not valid JSON"),
        (b"{ nope", "not valid JSON"),
        (b"[1, 2]", "not made by writer-app"),
        (json.dumps({"format": "something-else"}).encode(), "not made by writer-app"),
        (
            json.dumps(
                {"format": "writer-app-preset", "version": 99, "name": "x", "sampling": {}}
            ).encode(),
            "newer version",
        ),
        (
            json.dumps(
                {"format": "writer-app-preset", "version": 1, "name": "", "sampling": {}}
            ).encode(),
            "no preset name",
        ),
        (
            json.dumps({"format": "writer-app-preset", "version": 1, "name": "x"}).encode(),
            "no sampling values",
        ),
        (
            json.dumps(
                {
                    "format": "writer-app-preset",
                    "version": 1,
                    "name": "x",
                    "sampling": {"temperature": 5},
                }
            ).encode(),
            "temperature must be between 0.0 and 2.0",
        ),
        (
            json.dumps(
                {
                    "format": "writer-app-preset",
                    "version": 1,
                    "name": "x",
                    "sampling": {"top_k": 2.5},
                }
            ).encode(),
            "top_k must be a whole number",
        ),
        (
            json.dumps(
                {
                    "format": "writer-app-preset",
                    "version": 1,
                    "name": "x",
                    "sampling": {"top_p": "high"},
                }
            ).encode(),
            "top_p must be a number",
        ),
        (
            json.dumps(
                {
                    "format": "writer-app-preset",
                    "version": 1,
                    "name": "x",
                    "sampling": {"seed": True},
                }
            ).encode(),
            "seed must be a number",
        ),
        (
            json.dumps(
                {
                    "format": "writer-app-preset",
                    "version": 1,
                    "name": "x",
                    "sampling": {"stop_at": "chapter"},
                }
            ).encode(),
            "stop_at must be one of",
        ),
        (
            b'{"format": "writer-app-preset", "version": 1, "name": "x", '
            b'"sampling": {"max_tokens": 1e999}}',
            "max_tokens must be a whole number",
        ),
    ],
)
def test_a_bad_preset_file_is_refused_with_a_sentence_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(presets.PresetFileError) as caught:
        presets.import_preset(path)
    assert str(caught.value).startswith("bad.json ")
    assert reason in str(caught.value)


def test_a_huge_or_missing_file_is_refused(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (presets.MAX_FILE_BYTES + 1))
    with pytest.raises(presets.PresetFileError, match="too big"):
        presets.import_preset(big)
    with pytest.raises(presets.PresetFileError, match="could not be read"):
        presets.import_preset(tmp_path / "absent.json")


def test_export_to_an_unwritable_place_says_so(tmp_path):
    with pytest.raises(presets.PresetFileError, match="could not be saved as x.json"):
        presets.export_preset(tmp_path / "no-such-folder" / "x.json", "x", MOODY)


def test_unique_name_counts_up():
    assert presets.unique_name("Moody", set()) == "Moody"
    assert presets.unique_name("Moody", {"Moody", "Moody (2)"}) == "Moody (3)"
