"""Model ▸ Import Model… with a Hugging Face checkpoint folder (or a file in one), through
the real menu, progress dialog and worker thread, with scripted choosers."""

from __future__ import annotations

import json
import threading
from collections import deque

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QProgressDialog, QPushButton

from tests.support.checkpoints import write_checkpoint
from tests.support.fake_hub import fake_hub, localhost_only
from tests.support.models import phrase_weights
from tests.ui.test_model_menu import LOAD_MS, make_app
from writer_app.models import hf_import
from writer_app.models.hf_import import import_checkpoint
from writer_app.ui import model_manager

__all__ = ["fake_hub", "localhost_only", "make_app"]
pytestmark = pytest.mark.usefixtures("localhost_only")

PHRASE = "The cat sat on the mat."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    weights = phrase_weights([PHRASE], n_ctx=64, n_embd=64, n_layer=2, seed=3)
    return write_checkpoint(tmp_path_factory.mktemp("hf") / "my-novel", weights, n_head=4)


def models_in(app_home) -> list[str]:
    return sorted(p.name for p in app_home.models_dir.iterdir())


@pytest.mark.parametrize("pick", ["folder", "config.json", "model.safetensors"])
def test_importing_a_checkpoint_converts_it_off_the_gui_thread_and_loads_it(
        qtbot, make_app, checkpoint, app_home, monkeypatch, pick):
    converted_on: set[int] = set()

    def recording_import(*args, **options):
        converted_on.add(threading.get_ident())
        return import_checkpoint(*args, **options)

    monkeypatch.setattr(model_manager, "import_checkpoint", recording_import)
    app = make_app()
    app.chooser.answers = deque([str(checkpoint if pick == "folder" else checkpoint / pick)])
    with qtbot.waitSignal(app.writer.service.modelLoaded, timeout=LOAD_MS) as loaded:
        app.ui.import_action.trigger()
    assert loaded.args[0].quantization == "q4_0"  # the catalog's recommendation
    assert app.checked() == "my-novel.q4_0 (imported)"
    assert app.settings.models.active_model == str(app_home.models_dir / "my-novel.q4_0.bin")
    assert models_in(app_home) == ["my-novel.q4_0.bin"]
    assert converted_on and threading.get_ident() not in converted_on
    assert app.messenger.log == []
    assert "my-novel.q4_0 (imported)" in app.labels()


def test_a_refused_checkpoint_is_explained_and_nothing_is_added(qtbot, make_app, tmp_path,
                                                                app_home):
    folder = tmp_path / "old-finetune"
    folder.mkdir()
    config = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
              "n_positions": 64, "vocab_size": 50257}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    app = make_app()
    app.chooser.answers = deque([str(folder / "pytorch_model.bin")])
    app.ui.import_action.trigger()
    [(kind, title, text)] = app.messenger.log
    assert (kind, title) == ("warning", "Model not imported")
    assert text.startswith("pytorch_model.bin is a pickle") and "safe_serialization=True" in text
    assert not app_home.models_dir.exists() or models_in(app_home) == []


def test_cancel_in_the_progress_dialog_stops_the_conversion_and_keeps_nothing(
        qtbot, make_app, checkpoint, app_home, monkeypatch):
    pressed = threading.Event()
    real_plan = hf_import.plan_import

    def plan_after_cancel(*args, **options):
        assert pressed.wait(10)  # the conversion starts once the writer has pressed Cancel
        return real_plan(*args, **options)

    monkeypatch.setattr(hf_import, "plan_import", plan_after_cancel)
    app = make_app()
    app.chooser.answers = deque([str(checkpoint)])

    def press_cancel() -> None:
        dialog = app.writer.window.findChild(QProgressDialog)
        assert dialog is not None and dialog.labelText() == "Converting my-novel…"
        dialog.findChild(QPushButton).click()
        pressed.set()

    QTimer.singleShot(0, press_cancel)
    app.ui.import_action.trigger()
    assert pressed.is_set()
    assert app.messenger.log == []  # the writer's own choice: nothing to explain
    assert models_in(app_home) == []  # no model, no staging folder
    assert app.checked() != "my-novel.q4_0 (imported)"
