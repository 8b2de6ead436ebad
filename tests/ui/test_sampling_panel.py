"""The Sampling panel in the real app: each control, set in the panel, reaches the engine
(the SamplingSettings the service is sent) and has the effect it promises, measured on
generated models against the numpy reference forward. Presets and persistence too.

One app (window, worker thread, engine process) serves the whole module; every test
sets all the values it relies on, and switches the model it needs with rig.use_model.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from tests.services.test_inference import (
    random_reference_logits,
    shared_model,
    softmax,
    table_reference_logits,
    token,
)
from tests.support.gpt2_vocab import encode
from tests.support.scripted import (
    ScriptedFileChooser,
    ScriptedFontChooser,
    ScriptedMessenger,
    ScriptedNameAsker,
    ScriptedRecoveryChooser,
)
from writer_app import presets
from writer_app.app import WriterApp
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.paths import AppPaths
from writer_app.screenshot import run_event_loop_until
from writer_app.services.settings_keeper import SettingsKeeper
from writer_app.settings import SettingsStore
from writer_app.ui.sampling_panel import (
    CONTROLS,
    SamplingDocks,
    SamplingPanel,
)

ONE_TOKEN = {"max_tokens": 1, "stop_at": StopAt.LENGTH}


def wait_until(condition, timeout_ms: int = 60_000) -> None:
    """For module fixtures, which cannot use the function-scoped qtbot."""
    assert run_event_loop_until(condition, timeout_ms), "timed out"


@dataclass
class Sent:
    prompt: str
    settings: SamplingSettings  # as the service passes it on, seed included
    forced_ids: tuple[int, ...]


@dataclass
class Rig:
    writer: WriterApp
    docks: SamplingDocks
    paths: AppPaths
    files: ScriptedFileChooser
    names: ScriptedNameAsker
    messenger: ScriptedMessenger
    sent: list[Sent] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    @property
    def panel(self) -> SamplingPanel:
        return self.docks.sampling

    @property
    def keeper(self):  # noqa: ANN201
        return self.writer.window.keeper

    def use_model(self, path: Path) -> None:
        service = self.writer.service
        if service.facts is None or Path(service.facts.path) != path:
            loaded = []
            service.modelLoaded.connect(loaded.append)
            service.load_model(path)
            wait_until(lambda: bool(loaded))
            service.modelLoaded.disconnect(loaded.append)

    def set_values(self, commit: bool = True, **values: object) -> None:
        """Set controls the way the writer does (each widget emits its change)."""
        panel = self.panel
        for name, value in values.items():
            if name == "seed":
                panel.fixed_seed.setChecked(value >= 0)
                if value >= 0:
                    panel.seed_spin.setValue(value)
            elif name == "stop_at":
                panel.stop_box.setCurrentIndex(panel.stop_box.findData(StopAt(value).value))
            else:
                panel.controls[name].spin.setValue(value)
        if commit:
            panel.commit()

    def suggest(self, qtbot, text: str) -> str:
        """Put `text` in the editor, ask for a suggestion (Ctrl+Space), wait for all of it."""
        editor, controller = self.writer.editor, self.writer.controller
        controller.dismiss()
        editor.setPlainText(text)
        cursor = editor.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        editor.setTextCursor(cursor)
        assert controller.trigger()
        qtbot.waitUntil(
            lambda: (
                controller.suggestion is None
                or (controller.suggestion.done and not controller.busy)
            ),
            timeout=30_000,
        )
        return editor.ghost_text()

    def step_ids(self) -> list[int]:
        suggestion = self.writer.controller.suggestion
        return [step.token_id for step in suggestion.current.steps] if suggestion else []


@pytest.fixture(scope="module")
def rig(qapp, tmp_path_factory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("sampling-app")
    paths = AppPaths(root / "config", root / "data", root / "cache", root / "state")
    messenger = ScriptedMessenger()
    files, names = ScriptedFileChooser(), ScriptedNameAsker()
    writer = WriterApp.build(
        paths=paths,
        messenger=messenger,
        file_chooser=ScriptedFileChooser(),
        font_chooser=ScriptedFontChooser(),
        recovery_chooser=ScriptedRecoveryChooser(),
        preset_file_chooser=files,
        name_asker=names,
    )
    docks = writer.sampling_docks
    table = shared_model(tmp_path_factory, "table")
    writer.window.keeper.update(
        lambda s: replace(s, models=replace(s.models, active_model=str(table)))
    )
    rig = Rig(writer, docks, paths, files, names, messenger)
    service = writer.service
    original_request, original_cancel = service.request, service.cancel

    def request(request_id, prompt_text, settings, seed, forced_ids=()):
        rig.sent.append(Sent(prompt_text, settings.with_changes(seed=seed), tuple(forced_ids)))
        original_request(request_id, prompt_text, settings, seed, forced_ids)

    def cancel(request_id):
        rig.cancelled.append(request_id)
        original_cancel(request_id)

    service.request, service.cancel = request, cancel
    writer.start()
    wait_until(lambda: service.facts is not None)
    yield rig
    writer.editor.document().setModified(False)
    writer.window.close()
    writer.shutdown()


@pytest.fixture
def table_model(tmp_path_factory) -> Path:
    return shared_model(tmp_path_factory, "table")


@pytest.fixture
def random_model(tmp_path_factory) -> Path:
    return shared_model(tmp_path_factory, "random")


@pytest.fixture(autouse=True)
def _fresh(rig) -> None:
    rig.keeper.update(
        lambda s: replace(s, sampling=SamplingSettings(), presets={}, per_model_preset={})
    )
    rig.sent.clear()
    rig.cancelled.clear()
    rig.messenger.log.clear()


# ---- every control reaches the engine, and persists ---------------------------------------------


def test_each_control_reaches_the_service_and_survives_a_restart(qtbot, rig, table_model):
    rig.use_model(table_model)
    wanted = SamplingSettings(
        temperature=1.35,
        top_k=17,
        top_p=0.42,
        repetition_penalty=1.27,
        repetition_window=9,
        max_tokens=3,
        seed=4242,
        alternatives=4,
        stop_at=StopAt.PARAGRAPH,
    )
    # The slider moves the spin box too (temperature by its slider, the rest by spin box).
    rig.panel.controls["temperature"].slider.setValue(135)
    assert rig.panel.controls["temperature"].spin.value() == pytest.approx(1.35)
    with qtbot.waitSignal(rig.keeper.changed, timeout=5_000):  # after the typing pause
        rig.set_values(
            commit=False, **{k: v for k, v in wanted.to_dict().items() if k != "temperature"}
        )
    assert rig.panel.values() == wanted
    assert rig.keeper.current.sampling == wanted
    assert rig.writer.controller.settings == wanted
    rig.suggest(qtbot, "The dog ran")
    assert [sent.settings for sent in rig.sent] == [wanted]
    # Persisted: the settings file has them, and a new panel on those settings shows them.
    stored = SettingsStore.for_paths(rig.paths).load().settings
    assert stored.sampling == wanted
    again = SamplingPanel(
        SettingsKeeper(stored, None),
        ScriptedMessenger(),
        active_model=lambda: None,
    )  # the panel a restarted app builds
    assert again.values() == wanted
    assert again.current_preset() is None and again.preset_box.currentText() == "Custom"
    again.deleteLater()


def test_every_control_explains_itself(rig):
    panel = rig.panel
    widgets = [
        panel.preset_box,
        panel.save_button,
        panel.more_button,
        panel.fixed_seed,
        panel.seed_spin,
        panel.stop_box,
    ]
    for control in panel.controls.values():
        widgets += [control.slider, control.spin]
    assert len(CONTROLS) == 7
    for widget in widgets:
        assert len(widget.toolTip()) > 20, widget


# ---- effects, measured ---------------------------------------------------------------------


def test_temperature_zero_and_top_k_one_follow_the_reference_argmax_chain(qtbot, rig, random_model):
    rig.use_model(random_model)
    prompt = "The cat sat on the"
    chain = encode(prompt)
    for _ in range(8):
        logits = random_reference_logits(chain)
        top2 = np.sort(logits)[-2:]
        assert top2[1] - top2[0] > 1e-3, "the reference is too close to a tie to compare"
        chain.append(int(np.argmax(logits)))
    expected = chain[len(encode(prompt)) :]
    rig.set_values(temperature=0.0, repetition_penalty=1.0, max_tokens=8, stop_at="length")
    rig.suggest(qtbot, prompt)
    assert rig.step_ids() == expected
    rig.set_values(temperature=0.8, top_k=1)
    rig.suggest(qtbot, prompt)
    assert rig.step_ids() == expected
    assert [s.settings.temperature for s in rig.sent] == [0.0, 0.8]
    assert [s.settings.top_k for s in rig.sent] == [40, 1]


def test_a_fixed_seed_reproduces_and_random_seeds_differ(qtbot, rig, random_model):
    rig.use_model(random_model)
    rig.set_values(temperature=1.0, top_k=0, top_p=1.0, max_tokens=8, stop_at="length", seed=77)
    first = (rig.suggest(qtbot, "Once upon a time"), rig.step_ids())
    second = (rig.suggest(qtbot, "Once upon a time"), rig.step_ids())
    assert first == second and len(first[1]) == 8
    rig.set_values(seed=78)
    rig.suggest(qtbot, "Once upon a time")
    assert rig.step_ids() != first[1]
    rig.set_values(seed=-1)
    rig.suggest(qtbot, "Once upon a time")
    rig.suggest(qtbot, "Once upon a time")
    seeds = [sent.settings.seed for sent in rig.sent]
    assert seeds[:3] == [77, 77, 78]
    assert seeds[3] != seeds[4] and min(seeds[3:]) >= 0  # fresh dice each time


@pytest.mark.parametrize("length", [1, 5])
def test_the_length_limit_holds(qtbot, rig, random_model, length):
    rig.use_model(random_model)
    rig.set_values(temperature=1.0, top_k=0, max_tokens=length, stop_at="length", seed=3)
    rig.suggest(qtbot, "Once upon a time")
    assert len(rig.step_ids()) == length
    assert rig.sent[-1].settings.max_tokens == length


def penalized(logits: np.ndarray, recent: list[int], penalty: float) -> np.ndarray:
    """ctransformers 0.2.27, models/common.h gpt_sample_top_k_top_p: for each distinct
    recent token, a logit <= 0 is multiplied by the penalty, a positive one divided."""
    out = logits.copy()
    for token_id in set(recent):
        out[token_id] = out[token_id] * penalty if out[token_id] <= 0 else out[token_id] / penalty
    return out


@pytest.mark.parametrize("temperature", [0.0, 0.05])  # the engine's argmax / ctransformers
@pytest.mark.parametrize(
    ("text", "penalty", "window", "expected"),
    [
        ("The mat sat", 1.0, 64, " mat"),  # no penalty: the likeliest
        ("The mat sat", 1.5, 64, " rug"),  # 3.0 / 1.5 < 2.5
        ("The mat sat", 1.5, 1, " mat"),  # the window only sees " sat"
        ("The cat slept", 1.0, 64, " cat"),
        ("The cat slept", 2.0, 64, " dog"),  # -1.0 * 2 < -1.5 (dividing would keep " cat")
    ],
)
def test_repetition_penalty_is_ctransformers_definition(
    qtbot, rig, table_model, temperature, text, penalty, window, expected
):
    rig.use_model(table_model)
    prompt = encode(text)
    logits = table_reference_logits(prompt)
    recent = prompt[-window:]
    definition = penalized(logits, recent, penalty)
    top2 = np.sort(definition)[-2:]
    assert top2[1] - top2[0] > 0.15  # a clear decision (built as 0.2), even at temperature 0.05
    assert int(np.argmax(definition)) == token(expected)
    if text == "The cat slept" and penalty > 1:
        divided = logits.copy()
        divided[token(" cat")] /= penalty
        assert int(np.argmax(divided)) == token(" cat")  # so the test tells them apart
    rig.set_values(
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        repetition_penalty=penalty,
        repetition_window=window,
        **ONE_TOKEN,
    )
    assert rig.suggest(qtbot, text) == expected
    assert rig.sent[-1].settings.repetition_penalty == penalty
    assert rig.sent[-1].settings.repetition_window == window


def outcomes(qtbot, rig, seeds: range) -> list[str]:
    found = []
    for seed in seeds:
        rig.set_values(seed=seed)
        found.append(rig.suggest(qtbot, "The dog ran"))
    return found


def test_top_k_top_p_and_temperature_shape_the_choice(qtbot, rig, table_model):
    rig.use_model(table_model)
    # After " ran" the table model's candidates are home 1.0, away 0.5, off 0, out -0.5.
    rig.set_values(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, **ONE_TOKEN)
    free = outcomes(qtbot, rig, range(24))
    # top-k 0 is "off", not greedy: beyond the two likeliest too, and nothing else.
    assert set(free) <= {" home", " away", " off", " out"} and len(set(free)) >= 3
    rig.set_values(top_k=2)
    assert set(outcomes(qtbot, rig, range(24))) == {" home", " away"}
    rig.set_values(top_k=0, top_p=0.4)  # " home" alone holds 45%
    assert set(outcomes(qtbot, rig, range(12))) == {" home"}
    rig.set_values(top_p=0.7)  # home + away hold 73%
    assert set(outcomes(qtbot, rig, range(24))) == {" home", " away"}
    rig.set_values(top_p=1.0, temperature=0.05)
    assert set(outcomes(qtbot, rig, range(12))) == {" home"}
    sent = {(s.settings.top_k, s.settings.top_p, s.settings.temperature) for s in rig.sent}
    assert sent == {(0, 1.0, 1.0), (2, 1.0, 1.0), (0, 0.4, 1.0), (0, 0.7, 1.0), (0, 1.0, 0.05)}
    # At temperature 1 the frequencies follow the reference softmax (loosely: 24 draws).
    expected = softmax(table_reference_logits(encode("The dog ran")), 1.0)[token(" home")]
    assert abs(free.count(" home") / len(free) - expected) < 0.3


def test_stop_at_sentence_paragraph_or_length(qtbot, rig, cat_model):
    rig.use_model(cat_model)
    rig.set_values(temperature=0.0, max_tokens=32, stop_at="sentence")
    assert rig.suggest(qtbot, "The cat sat") == " on the mat."
    assert rig.suggest(qtbot, "Snow fell") == " softly"
    rig.set_values(stop_at="paragraph")
    assert rig.suggest(qtbot, "The cat sat") == " on the mat. Then it slept all day!"
    assert rig.suggest(qtbot, "Snow fell") == " softly"
    rig.set_values(stop_at="length")
    assert rig.suggest(qtbot, "Snow fell") == " softly\nover quiet hills"
    assert [s.settings.stop_at for s in rig.sent] == [StopAt.SENTENCE] * 2 + [
        StopAt.PARAGRAPH
    ] * 2 + [StopAt.LENGTH]


def test_the_number_of_alternatives(qtbot, rig, cat_model):
    rig.use_model(cat_model)
    rig.set_values(temperature=0.5, alternatives=2, max_tokens=8)
    rig.suggest(qtbot, "The cat sat")
    controller = rig.writer.controller
    assert controller.suggestion.total == 2
    assert controller.cycle(+1)
    qtbot.waitUntil(lambda: not controller.busy, timeout=30_000)
    assert controller.suggestion.counter_text == "2/2"
    assert len(controller.suggestion.alternatives) == 2
    assert controller.cycle(+1) and controller.suggestion.counter_text == "1/2"
    assert len(rig.sent) == 2  # no third one


def test_a_change_restarts_the_suggestion_in_flight(qtbot, rig, slow_model):
    rig.use_model(slow_model)
    rig.set_values(temperature=1.0, top_k=0, max_tokens=256, stop_at="length", seed=5)
    controller, editor = rig.writer.controller, rig.writer.editor
    editor.setPlainText("Once upon a time")
    cursor = editor.textCursor()
    cursor.movePosition(cursor.MoveOperation.End)
    editor.setTextCursor(cursor)
    controller.trigger()
    qtbot.waitUntil(lambda: bool(editor.ghost_text()), timeout=30_000)
    assert controller.busy
    rig.set_values(temperature=0.3)
    assert len(rig.cancelled) >= 1
    assert [s.settings.temperature for s in rig.sent] == [1.0, 0.3]
    assert rig.sent[1].prompt == "Once upon a time"
    qtbot.waitUntil(lambda: bool(editor.ghost_text()), timeout=30_000)
    controller.dismiss()


# ---- presets ------------------------------------------------------------------------------------


def choose_in_box(panel: SamplingPanel, name: str) -> None:
    index = panel.preset_box.findText(name)
    assert index >= 0, name
    panel.preset_box.setCurrentIndex(index)
    panel.preset_box.activated.emit(index)  # what a click on the item sends


def test_a_preset_applies_and_is_remembered_per_model(qtbot, rig, table_model, random_model):
    rig.use_model(table_model)
    panel = rig.panel
    assert panel.preset_box.currentText() == "Balanced"  # the defaults are a preset
    choose_in_box(panel, "Creative")
    creative = presets.BUILT_IN_PRESETS["Creative"]
    assert panel.values() == creative == rig.writer.controller.settings
    assert rig.keeper.current.per_model_preset == {table_model.name: "Creative"}
    rig.use_model(random_model)  # no preset chosen for it: the values stay
    assert panel.values() == creative
    choose_in_box(panel, "Precise")
    rig.use_model(table_model)  # back: its own preset returns
    assert panel.values() == creative and panel.current_preset() == "Creative"
    rig.use_model(random_model)
    assert panel.values() == presets.BUILT_IN_PRESETS["Precise"]
    # Changing a value by hand: "Custom", and the model no longer follows a preset.
    rig.set_values(top_k=33)
    assert panel.preset_box.currentText() == "Custom"
    assert random_model.name not in rig.keeper.current.per_model_preset
    stored = SettingsStore.for_paths(rig.paths).load().settings
    assert stored.per_model_preset == {table_model.name: "Creative"}
    rig.use_model(table_model)


def test_save_delete_and_reset(qtbot, rig, table_model):
    rig.use_model(table_model)
    panel = rig.panel
    rig.set_values(temperature=1.7, top_k=90)
    rig.names.answers = deque(["  Stormy ", None])
    panel.save_button.click()
    stormy = SamplingSettings(temperature=1.7, top_k=90)
    assert rig.keeper.current.presets == {"Stormy": stormy}
    assert panel.current_preset() == "Stormy"
    assert SettingsStore.for_paths(rig.paths).load().settings.presets == {"Stormy": stormy}
    panel.save_button.click()  # cancelled: nothing changes
    assert rig.keeper.current.presets == {"Stormy": stormy}
    rig.names.answers = deque(["Balanced"])
    panel.save_as_preset()
    assert rig.messenger.texts("warning") == [
        "“Balanced” is a built-in preset; choose another name."
    ]
    assert panel.delete_action.isEnabled()
    panel.delete_action.trigger()
    assert rig.keeper.current.presets == {} and panel.current_preset() is None
    panel.reset_to_defaults()
    assert panel.values() == SamplingSettings() and panel.current_preset() == "Balanced"
    assert not panel.delete_action.isEnabled()  # built-ins cannot be deleted


def test_export_and_import_as_json(qtbot, rig, table_model, tmp_path):
    rig.use_model(table_model)
    panel = rig.panel
    choose_in_box(panel, "Precise")
    exported = tmp_path / "precise.json"
    rig.files.answers = deque([str(exported)])
    panel.export_preset()
    assert rig.files.asked[-1][0] == "save" and rig.files.asked[-1][1].endswith("Precise.json")
    assert presets.import_preset(exported) == ("Precise", presets.BUILT_IN_PRESETS["Precise"])
    # Someone else's preset, under a name already taken by a built-in.
    shared = tmp_path / "shared.json"
    warm = SamplingSettings(temperature=1.2, top_p=0.9, max_tokens=50)
    presets.export_preset(shared, "Creative", warm)
    rig.files.answers = deque([str(exported), str(shared)])
    panel.import_preset()  # the same values as the built-in: nothing new to store
    assert rig.keeper.current.presets == {}
    panel.import_preset()
    assert rig.keeper.current.presets == {"Creative (2)": warm}
    assert panel.values() == warm and panel.current_preset() == "Creative (2)"
    assert rig.keeper.current.per_model_preset[table_model.name] == "Creative (2)"
    # A bad file: a clear sentence, nothing changes.
    bad = tmp_path / "notes.json"
    bad.write_text(
        json.dumps(
            {"format": "writer-app-preset", "version": 1, "name": "x", "sampling": {"top_p": 3}}
        )
    )
    rig.files.answers = deque([str(bad), None])
    panel.import_preset()
    assert rig.messenger.texts("warning") == [
        "notes.json is not a usable preset file: top_p must be between 0.0 and 1.0, got 3.0."
    ]
    panel.import_preset()  # cancelled
    assert rig.keeper.current.presets == {"Creative (2)": warm}
    rig.keeper.update(lambda s: presets.delete_preset(s, "Creative (2)"))


# ---- docks ------------------------------------------------------------------------------------


def test_both_panels_toggle_from_view_and_remember_it(qtbot, rig):
    window = rig.writer.window
    toggles = {action.text(): action for action in window.view_menu.actions()}
    sampling = toggles["Sampling"]
    probabilities = toggles["Token probabilities"]
    assert sampling.isChecked() and rig.docks.sampling_dock.isVisible()
    assert not probabilities.isChecked()  # off until the writer wants it
    probabilities.trigger()
    assert rig.docks.probability_dock.isVisible()
    assert rig.keeper.current.window.show_probability_panel
    sampling.trigger()
    assert not rig.docks.sampling_dock.isVisible()
    stored = SettingsStore.for_paths(rig.paths).load().settings.window
    assert (stored.show_sampling_panel, stored.show_probability_panel) == (False, True)
    sampling.trigger()
    probabilities.trigger()
    assert rig.keeper.current.window.show_sampling_panel
    assert not rig.keeper.current.window.show_probability_panel
