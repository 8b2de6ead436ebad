"""The Model menu on a real WriterApp: engine processes, generated phrase models, fake hub."""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.conftest import OWL_PHRASE
from tests.services.test_downloads import WAIT_MS, quick_downloader
from tests.support.fake_hub import FakeHub, fake_hub, free_port, localhost_only, random_bytes
from tests.support.scripted import (
    ScriptedFileChooser,
    ScriptedFontChooser,
    ScriptedMessenger,
    ScriptedModelChooser,
    ScriptedRecoveryChooser,
)
from writer_app.app import WriterApp
from writer_app.engine.sampling import SamplingSettings
from writer_app.model_choice import DEMO_MODEL_NAME, chosen_model
from writer_app.models.catalog import REPO_ID, Catalog
from writer_app.services.downloads import JobState
from writer_app.settings import Settings, SettingsStore
from writer_app.ui.dialogs import Choice
from writer_app.ui.model_menu import ModelsUi

__all__ = ["fake_hub", "localhost_only"]
pytestmark = pytest.mark.usefixtures("localhost_only")

GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_tokens=32)
LARGE = Catalog().get("gpt2-large-q4_0")
LOAD_MS = 60_000


@dataclass
class FixingMessenger(ScriptedMessenger):
    """A scripted writer; `before_answer` runs just before a question is answered (e.g. the
    hub's glitch goes away while the retry question is on screen)."""

    before_answer: list[Callable[[str], None]] = field(default_factory=list)

    def ask(self, title: str, text: str, choices: list[Choice], default: Choice) -> Choice:
        for hook in self.before_answer:
            hook(text)
        return super().ask(title, text, choices, default)


@dataclass
class Harness:
    writer: WriterApp
    ui: ModelsUi
    messenger: FixingMessenger
    chooser: ScriptedModelChooser

    @property
    def settings(self) -> Settings:
        return self.writer.settings

    def labels(self) -> list[str]:
        menu = self.writer.window.model_menu
        return [a.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
                for a in menu.actions() if not a.isSeparator()]

    def checked(self) -> str | None:
        choice = self.ui.checked_choice()
        return choice.label if choice else None

    def load_via_menu(self, qtbot, label: str):
        with qtbot.waitSignal(self.writer.service.modelLoaded, timeout=LOAD_MS) as loaded:
            self.ui.action(label).trigger()
        return loaded.args[0]


class Answers:
    """What the service says, per request id."""

    def __init__(self, writer: WriterApp) -> None:
        self.text: dict[int, str] = {}
        self.finished: dict[int, str] = {}
        self.loaded_when_finished: dict[int, bool] = {}
        self._loaded = False
        service = writer.service
        service.token.connect(lambda i, piece: self.text.update({i: self.text.get(i, "") + piece}))
        service.finished.connect(self._finished)
        service.modelLoaded.connect(lambda _facts: setattr(self, "_loaded", True))

    def _finished(self, request_id: int, reason: str) -> None:
        self.finished[request_id] = reason
        self.loaded_when_finished[request_id] = self._loaded


@pytest.fixture
def make_app(qtbot, app_home, fake_hub: FakeHub, cat_model):
    made: list[Harness] = []

    def make() -> Harness:
        messenger = FixingMessenger()
        chooser = ScriptedModelChooser()
        writer = WriterApp.build(
            paths=app_home, messenger=messenger, file_chooser=ScriptedFileChooser(),
            font_chooser=ScriptedFontChooser(), recovery_chooser=ScriptedRecoveryChooser(),
            model_chooser=chooser, demo_path=cat_model, total_ram=8 * 10**9,
            make_downloader=quick_downloader)
        writer.keeper.update(lambda s: replace(
            s, models=replace(s.models, hub_endpoint=fake_hub.endpoint)))
        writer.window.start()
        made.append(Harness(writer, writer.models_ui, messenger, chooser))
        return made[-1]

    yield make
    for harness in made:
        harness.writer.editor.document().setModified(False)
        harness.writer.window.close()
        harness.writer.shutdown()


@pytest.fixture
def installed(app_home, cat_model, owl_model) -> dict[str, Path]:
    """A catalog file name holding the cat model, and an imported owl model."""
    folder = app_home.models_dir
    folder.mkdir(parents=True)
    return {
        "catalog": Path(shutil.copy(cat_model, folder / "gpt2-124M.q8_0.bin")),
        "imported": Path(shutil.copy(owl_model, folder / "owl-story.bin")),
    }


def test_the_menu_lists_demo_catalog_and_imported_models(make_app, installed, cat_model,
                                                         fake_hub):
    app = make_app()
    assert app.labels() == [
        DEMO_MODEL_NAME,
        "GPT-2 Small (124M), q4_0 — not downloaded (73.6 MB)",
        "GPT-2 Small (124M), q8_0",
        "GPT-2 Large (774M), q4_0 — not downloaded (442.5 MB)",
        "owl-story (imported)",
        "Manage Models…",
        "Import Model…",
        "Engine",  # its submenu: tests/ui/test_engine_menu.py
    ]
    models = [action for action, _choice in app.ui.actions()]
    assert all(a.isCheckable() for a in models)
    assert {a.actionGroup() for a in models} == {app.ui._group}
    assert app.ui._group.isExclusive()
    assert app.checked() == DEMO_MODEL_NAME  # nothing chosen yet: the app starts with the demo
    assert fake_hub.requests == []


def test_switching_keeps_the_old_model_suggesting_until_the_new_one_is_ready(
        qtbot, make_app, installed, app_home):
    app = make_app()
    service = app.writer.service
    facts = app.load_via_menu(qtbot, "GPT-2 Small (124M), q8_0")
    assert facts.n_embd != 96 and app.settings.models.active_model == str(installed["catalog"])
    answers = Answers(app.writer)

    service.request(1, "The cat sat", GREEDY, seed=1)  # in flight while we switch
    app.ui.action("owl-story").trigger()
    assert service.loading and app.checked() == "owl-story (imported)"
    qtbot.waitUntil(lambda: 1 in answers.finished, timeout=LOAD_MS)
    assert answers.text[1] == " on the mat."  # the old model answered
    assert answers.loaded_when_finished == {1: False}
    assert app.settings.models.active_model == str(installed["catalog"])  # not yet

    qtbot.waitUntil(lambda: not service.loading, timeout=LOAD_MS)
    assert service.facts.n_embd == 96
    service.request(2, "An owl", GREEDY, seed=1)
    qtbot.waitUntil(lambda: 2 in answers.finished, timeout=LOAD_MS)
    assert answers.text[2] == OWL_PHRASE.removeprefix("An owl")
    assert app.checked() == "owl-story (imported)"
    # Remembered: in the settings file, and it is what the app starts with next time.
    assert app.settings.models.active_model == str(installed["imported"])
    assert SettingsStore.for_paths(app_home).load().settings.models.active_model == \
        str(installed["imported"])
    assert chosen_model(app.settings) == installed["imported"]


def test_a_failed_load_keeps_the_previous_model_checked(qtbot, make_app, installed,
                                                        cat_model):
    app = make_app()
    app.load_via_menu(qtbot, DEMO_MODEL_NAME)
    owl = app.ui.action("owl-story")
    installed["imported"].write_bytes(b"GGUF" + random_bytes(64))  # broken since listed
    with qtbot.waitSignal(app.writer.service.modelFailed, timeout=LOAD_MS) as failed:
        owl.trigger()
    assert "GGUF" in failed.args[1]
    assert app.checked() == DEMO_MODEL_NAME
    assert app.settings.models.active_model == str(cat_model)  # still the demo
    assert any("GGUF" in text for text in app.messenger.texts())  # the reason, told


def host_owl_as_large(fake_hub: FakeHub, owl_model: Path, **faults) -> bytes:
    data = owl_model.read_bytes()
    fake_hub.add_file(REPO_ID, LARGE.filename, data)
    if faults:
        fake_hub.set_faults(REPO_ID, LARGE.filename, **faults)
    return data


def test_choosing_a_model_not_downloaded_offers_it_and_loads_it_when_done(
        qtbot, make_app, fake_hub, owl_model, app_home):
    host_owl_as_large(fake_hub, owl_model, bytes_per_second=3_000_000)
    app = make_app()
    app.load_via_menu(qtbot, DEMO_MODEL_NAME)
    assert fake_hub.requests == []
    app.messenger.answers = deque([Choice.YES])

    app.ui.action("GPT-2 Large (774M), q4_0 — not downloaded").trigger()
    [question] = app.messenger.texts("ask")
    assert f"Download it from {fake_hub.endpoint.removeprefix('http://')} now" in question
    assert app.checked() == DEMO_MODEL_NAME  # still the model in use
    qtbot.waitUntil(lambda: (job := app.ui.manager.job(LARGE.id)) is not None
                    and job.state is JobState.RUNNING and job.percent > 0, timeout=WAIT_MS)
    app.ui.refresh_menu()
    assert any(label.startswith("GPT-2 Large (774M), q4_0 — downloading (")
               for label in app.labels())

    service = app.writer.service
    qtbot.waitUntil(lambda: service.facts.n_embd == 96 and not service.loading, timeout=LOAD_MS)
    target = app_home.models_dir / LARGE.filename
    assert target.read_bytes() == owl_model.read_bytes()
    assert app.checked() == "GPT-2 Large (774M), q4_0"
    assert app.settings.models.active_model == str(target)


def test_declining_the_download_changes_nothing(make_app, fake_hub, owl_model):
    host_owl_as_large(fake_hub, owl_model)
    app = make_app()
    app.messenger.answers = deque([Choice.NO])
    app.ui.action("GPT-2 Large (774M), q4_0").trigger()
    assert app.ui.manager.jobs() == [] and fake_hub.requests == []
    assert app.checked() == DEMO_MODEL_NAME


@pytest.mark.parametrize(
    ("problem", "kind", "words"),
    [
        ("missing", "warning", "not found"),
        ("server error", "ask", "server error (HTTP 500)"),
        ("server down", "ask", "Could not connect to 127.0.0.1"),
    ],
)
def test_download_failures_reach_the_writer(qtbot, make_app, fake_hub, owl_model, problem,
                                            kind, words):
    if problem == "server error":
        host_owl_as_large(fake_hub, owl_model, status=500)
    elif problem == "missing":
        fake_hub.add_file(REPO_ID, "something-else.bin", b"x")
    app = make_app()
    if problem == "server down":
        app.writer.window.keeper.update(lambda s: replace(
            s, models=replace(s.models, hub_endpoint=f"http://127.0.0.1:{free_port()}")))
    app.messenger.answers = deque([Choice.YES, Choice.CANCEL])  # download; then do not retry
    with qtbot.waitSignal(app.ui.manager.failed, timeout=WAIT_MS):
        app.ui.action("GPT-2 Large (774M), q4_0").trigger()
    kinds = [entry[0] for entry in app.messenger.log]
    assert kinds == ["ask", kind]
    told = app.messenger.log[-1]
    assert told[1] == "Download failed" and words in told[2]
    assert ("Try again?" in told[2]) is (kind == "ask")  # a retry only where it may help


def test_a_damaged_download_is_told_and_a_retry_succeeds(qtbot, make_app, fake_hub, owl_model):
    host_owl_as_large(fake_hub, owl_model, corrupt=True)
    app = make_app()
    app.messenger.answers = deque([Choice.YES, Choice.RETRY])
    app.messenger.before_answer.append(
        lambda text: "Try again" in text and fake_hub.clear_faults(REPO_ID, LARGE.filename))
    with qtbot.waitSignal(app.writer.service.modelLoaded, timeout=LOAD_MS) as loaded:
        app.ui.action("GPT-2 Large (774M), q4_0").trigger()
    assert loaded.args[0].n_embd == 96
    retry = app.messenger.texts("ask")[1]
    assert "arrived damaged" in retry and retry.endswith("Try again?")
    assert len([r for r in fake_hub.content_gets() if r.status == 200]) == 2


def test_offline_mode_never_offers_a_download(make_app, fake_hub, owl_model):
    host_owl_as_large(fake_hub, owl_model)
    app = make_app()
    app.writer.window.keeper.update(
        lambda s: replace(s, privacy=replace(s.privacy, offline=True)))
    app.ui.action("GPT-2 Large (774M), q4_0").trigger()
    [(kind, _title, text)] = app.messenger.log
    assert kind == "info" and "offline mode is on" in text
    assert fake_hub.requests == [] and app.ui.manager.jobs() == []


def test_manage_models_opens_one_non_modal_manager(qtbot, make_app):
    app = make_app()
    app.ui.manage_action.trigger()
    window = app.ui.window
    assert window is not None and window.isVisible() and not window.isModal()
    app.ui.manage_action.trigger()
    assert app.ui.window is window


def test_import_model_file_adds_and_loads_it(qtbot, make_app, owl_model, tmp_path, app_home):
    outside = Path(shutil.copy(owl_model, tmp_path / "my-owls.bin"))
    bad = tmp_path / "notes.bin"
    bad.write_bytes(random_bytes(2048))
    app = make_app()
    app.chooser.answers = deque([str(bad), str(outside)])

    app.ui.import_action.trigger()
    [(kind, title, _text)] = app.messenger.log
    assert (kind, title) == ("warning", "Model not imported")
    with qtbot.waitSignal(app.writer.service.modelLoaded, timeout=LOAD_MS) as loaded:
        app.ui.import_action.trigger()
    assert loaded.args[0].n_embd == 96
    assert app.checked() == "my-owls (imported)"
    assert app.settings.models.active_model == str(app_home.models_dir / "my-owls.bin")
