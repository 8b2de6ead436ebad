"""The Token probabilities panel in the real app: next-token bars against the reference
softmax, probes debounced and cancelled by edits, the suggestion's tokens with their
probabilities, and continuing a suggestion from a clicked alternative."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.conftest import CAT_PHRASE, SNOW_PHRASE
from tests.services.test_inference import (
    random_reference_logits,
    shared_model,
    softmax,
    table_reference_logits,
    token,
)
from tests.support.gpt2_vocab import END_OF_TEXT_ID, encode, gpt2_vocab
from tests.support.models import phrase_successors
from tests.ui.test_sampling_panel import Rig, rig  # noqa: F401 (the module's app fixture)
from writer_app.engine.sampling import SamplingSettings
from writer_app.ui.probability_panel import ProbabilityPanel, display_token


@pytest.fixture(autouse=True)
def _panel_shown(rig: Rig) -> None:  # noqa: F811
    rig.keeper.update(lambda s: replace(s, sampling=SamplingSettings()))
    rig.writer.controller.dismiss()
    rig.docks.probability_dock.show()
    rig.sent.clear()


@pytest.fixture
def random_model(tmp_path_factory) -> Path:
    return shared_model(tmp_path_factory, "random")


@pytest.fixture
def table_model(tmp_path_factory) -> Path:
    return shared_model(tmp_path_factory, "table")


def panel(rig: Rig) -> ProbabilityPanel:  # noqa: F811
    return rig.docks.probabilities


def put_text(rig: Rig, text: str) -> None:  # noqa: F811
    editor = rig.writer.editor
    editor.setPlainText(text)
    cursor = editor.textCursor()
    cursor.movePosition(cursor.MoveOperation.End)
    editor.setTextCursor(cursor)


def wait_for_bars(qtbot, rig: Rig) -> list[tuple[int, str, float]]:  # noqa: F811
    probe = panel(rig).probe
    qtbot.waitUntil(lambda: not probe.pending and probe.latest is not None, timeout=30_000)
    return panel(rig).next_list.rows()


def assert_reference_bars(rows, logits: np.ndarray, temperature: float) -> None:
    expected = softmax(logits, temperature)
    assert len(rows) == 10
    for token_id, _shown, probability in rows:
        assert probability == pytest.approx(expected[token_id], rel=1e-3)
    probabilities = [row[2] for row in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert min(probabilities) >= np.sort(expected)[-10] * (1 - 1e-3)


# ---- next token at the cursor -----------------------------------------------------------------


def test_bars_are_the_reference_softmax_at_the_current_temperature(qtbot, rig, random_model):  # noqa: F811
    rig.use_model(random_model)
    rig.set_values(temperature=0.7)
    text = "The cat sat on the"
    put_text(rig, text)
    logits = random_reference_logits(encode(text))
    assert_reference_bars(wait_for_bars(qtbot, rig), logits, 0.7)
    assert panel(rig).note.text() == "At temperature 0.70."
    # A new temperature in the Sampling panel redraws the bars with it.
    rig.set_values(temperature=1.6)
    assert panel(rig).probe.pending
    assert_reference_bars(wait_for_bars(qtbot, rig), logits, 1.6)
    assert panel(rig).note.text() == "At temperature 1.60."


def test_an_edit_cancels_the_probe_in_flight_and_the_last_text_wins(qtbot, rig, random_model):  # noqa: F811
    rig.use_model(random_model)
    rig.set_values(temperature=1.0)
    service, editor, probe = rig.writer.service, rig.writer.editor, panel(rig).probe
    asked, cancelled, shown = [], [], []
    original_request = service.request_probabilities
    original_cancel = service.cancel_probabilities

    def request(probe_id, prompt_text, temperature, top_n, **window):
        asked.append(prompt_text)
        assert window == {"max_tokens": rig.keeper.current.sampling.max_tokens}
        original_request(probe_id, prompt_text, temperature, top_n, **window)
        if len(asked) == 1:
            editor.insertPlainText(" dog")  # typed while the first probe is out

    def cancel(probe_id):
        cancelled.append(probe_id)
        original_cancel(probe_id)

    service.request_probabilities, service.cancel_probabilities = request, cancel
    probe.updated.connect(shown.append)
    try:
        put_text(rig, "The cat chased the")
        rows = wait_for_bars(qtbot, rig)
    finally:
        del service.request_probabilities, service.cancel_probabilities
        probe.updated.disconnect(shown.append)
    assert asked == ["The cat chased the", "The cat chased the dog"]
    assert cancelled  # the first probe was called off
    assert len(shown) == 1  # the answer about the old text never reached the screen
    logits = random_reference_logits(encode("The cat chased the dog"))
    assert_reference_bars(rows, logits, 1.0)


def test_typing_fast_sends_one_probe_after_the_pause(qtbot, rig, random_model):  # noqa: F811
    rig.use_model(random_model)
    put_text(rig, "Once")
    wait_for_bars(qtbot, rig)
    asked = []
    rig.writer.service.probabilitiesFailed.connect(lambda *_: asked.append("failed"))
    panel(rig).probe.updated.connect(lambda choices: asked.append(choices))
    qtbot.keyClicks(rig.writer.editor, " upon a")
    assert panel(rig).probe.pending
    wait_for_bars(qtbot, rig)
    assert len(asked) == 1


def test_no_probes_while_the_panel_is_hidden(qtbot, rig, random_model):  # noqa: F811
    rig.use_model(random_model)
    probe = panel(rig).probe
    rig.docks.probability_dock.hide()
    put_text(rig, "Hidden panels")
    qtbot.keyClicks(rig.writer.editor, " cost")
    assert not probe.pending
    rig.docks.probability_dock.show()
    assert probe.pending
    rows = wait_for_bars(qtbot, rig)
    logits = random_reference_logits(encode("Hidden panels cost"))
    assert_reference_bars(rows, logits, SamplingSettings().temperature)


# ---- the suggestion, token by token ------------------------------------------------------------


def test_suggestion_tokens_carry_the_reference_probabilities(qtbot, rig, table_model):  # noqa: F811
    rig.use_model(table_model)
    rig.set_values(
        temperature=0.9,
        top_k=0,
        top_p=1.0,
        repetition_penalty=1.0,
        max_tokens=3,
        stop_at="length",
        seed=11,
    )
    rig.suggest(qtbot, "The dog ran")
    view = panel(rig)
    steps = rig.writer.controller.suggestion.current.steps
    assert len(steps) == 3
    context = encode("The dog ran")
    for step in steps:
        expected = softmax(table_reference_logits(context), 0.9)
        assert step.probability == pytest.approx(expected[step.token_id], rel=1e-3)
        for choice in step.choices:
            assert choice.probability == pytest.approx(expected[choice.token_id], rel=1e-3)
        context.append(step.token_id)
    # The strip shows the tokens whose text is on screen (a lone byte of a character
    # that never finished is not), with their probability.
    assert view.steps == steps[: view.strip.count()] and view.strip.count() >= 2
    for index, step in enumerate(view.steps):
        item = view.strip.item(index)
        assert item.text() == display_token(step.text)
        assert f"{100 * step.probability:.2f}%" in item.toolTip()
    assert steps[0].token_id in {token(w) for w in (" home", " away", " off", " out")}
    # The tint ranks them as their probabilities do (greener is likelier).
    shown = range(view.strip.count())
    hues = [view.strip.item(i).background().color().hueF() for i in shown]
    assert len({steps[i].probability for i in shown}) == len(hues)  # something to rank
    assert sorted(shown, key=lambda i: steps[i].probability) == sorted(shown, key=hues.__getitem__)
    view.select_step(0)
    rows = view.choice_list.rows()
    assert [row[0] for row in rows] == [choice.token_id for choice in steps[0].choices]
    chosen_row = [row[0] for row in rows].index(steps[0].token_id)
    assert view.choice_list.item(chosen_row).font().bold()


def phrase_continuation(start: int) -> str:
    """What the phrase model writes after token `start` (its bigram chain to the end)."""
    successors = phrase_successors([CAT_PHRASE, SNOW_PHRASE])
    vocab, text, current = gpt2_vocab(), "", successors[start]
    while current != END_OF_TEXT_ID:
        text += vocab[current].decode()
        current = successors[current]
    return text


def test_clicking_an_alternative_continues_the_suggestion_from_it(qtbot, rig, cat_model):  # noqa: F811
    rig.use_model(cat_model)
    rig.set_values(temperature=0.0, max_tokens=32, stop_at="length")
    assert rig.suggest(qtbot, "The cat sat") == " on the mat. Then it slept all day!"
    view = panel(rig)
    view.select_step(1)  # " the"
    phrase_tokens = set(encode(CAT_PHRASE)) | set(encode(SNOW_PHRASE))
    rows = view.choice_list.rows()
    assert rows[0][0] == token(" the")
    # Another phrase's token among the alternatives: the model then follows that phrase.
    row, (other, shown, _p) = next(
        (i, r) for i, r in enumerate(rows) if r[0] in phrase_tokens and r[0] != token(" the")
    )
    item = view.choice_list.item(row)
    qtbot.mouseClick(
        view.choice_list.viewport(),
        Qt.MouseButton.LeftButton,
        pos=view.choice_list.visualItemRect(item).center(),
    )
    controller = rig.writer.controller
    qtbot.waitUntil(lambda: controller.suggestion.done and not controller.busy, timeout=30_000)
    other_text = shown.replace("␣", " ").replace("↵", "\n")
    expected = " on" + other_text + phrase_continuation(other)
    assert rig.writer.editor.ghost_text() == expected
    assert rig.sent[-1].forced_ids == (token(" on"), other)
    assert [step.token_id for step in view.steps][:2] == [token(" on"), other]
    assert view.strip.currentRow() == 1  # still on the step the writer changed
    # Accepting takes the new text.
    qtbot.keyClick(rig.writer.editor, Qt.Key.Key_Tab)
    assert rig.writer.editor.toPlainText() == "The cat sat" + expected
