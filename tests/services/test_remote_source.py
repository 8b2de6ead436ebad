"""The remote SuggestionSource with the real controller against llama.cpp's real server,
asyncio running on the Qt loop through qasync."""

from __future__ import annotations

import pytest

from tests.support import remote_fixtures
from tests.support.fault_proxy import FaultProxy
from tests.support.llama_server import LlamaServer, free_port
from writer_app.engine.remote_config import RemoteConfig
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.services.qt_asyncio import pending_tasks, qt_event_loop, release_running_loop
from writer_app.services.remote_source import RemoteSource
from writer_app.services.suggestion_controller import SuggestionController, SuggestionPreferences

cat_gguf = remote_fixtures.cat_gguf
random_gguf_model = remote_fixtures.random_gguf_model
cat_server = remote_fixtures.cat_server
random_server = remote_fixtures.random_server

pytestmark = pytest.mark.timeout(120)
FAST = SuggestionPreferences(debounce_ms=20)
GREEDY = SamplingSettings(temperature=0, repetition_penalty=1.0)


@pytest.fixture
def qt_loop(qapp, qtbot):
    loop = qt_event_loop()
    yield loop
    for task in pending_tasks():
        task.cancel()
    qtbot.waitUntil(lambda: not pending_tasks(), timeout=10_000)  # streams closed in order
    release_running_loop()  # one loop for the session; asyncio.run() works between tests


def make(qtbot, url: str, settings: SamplingSettings = GREEDY, **options):  # type: ignore[no-untyped-def]
    source = RemoteSource(RemoteConfig.create(url, **options.pop("config", {})), **options)
    controller = SuggestionController(source, settings, FAST)
    errors: list[str] = []
    controller.errorOccurred.connect(errors.append)
    return source, controller, errors


def type_text(controller: SuggestionController, text: str, revision: int) -> None:
    controller.update_context(text, "", len(text), revision)


def ghost(controller: SuggestionController) -> str:
    return controller.suggestion.text if controller.suggestion is not None else ""


def test_suggestions_stream_from_the_server(qtbot, qt_loop, cat_server):
    source, controller, errors = make(qtbot, cat_server.base_url)
    source.step_probabilities = True
    pieces: list[str] = []
    source.token.connect(lambda _rid, piece: pieces.append(piece))
    type_text(controller, "The cat sat", 1)
    qtbot.waitUntil(lambda: ghost(controller) == " on the mat." and not controller.busy, timeout=20_000)
    assert pieces == [" on", " the", " mat", "."]  # streamed token by token; "." held back
    steps = controller.suggestion.current.steps
    assert [s.text for s in steps] == [" on", " the", " mat", "."]
    assert all(s.probability == pytest.approx(1.0, abs=1e-3) and s.choices for s in steps)
    assert source.status == f"Remote: 127.0.0.1:{cat_server.port}" and not errors
    assert source.info.capabilities.kind == "llama.cpp"
    source.close()


def test_an_edit_cancels_the_request_and_closes_its_stream(qtbot, qt_loop, random_server):
    long = GREEDY.with_changes(max_tokens=256, stop_at=StopAt.LENGTH)
    with FaultProxy(random_server.port) as proxy:
        proxy.delay = 0.05  # slow enough to still be streaming when the writer types on
        source, controller, errors = make(qtbot, proxy.base_url, long)
        type_text(controller, "Once upon a time", 1)
        qtbot.waitUntil(lambda: len(ghost(controller)) > 3, timeout=20_000)
        first = source._tasks.copy()
        assert len(first) == 1 and proxy.in_flight == 1
        type_text(controller, "Once upon a time there", 2)  # an edit: the ghost goes
        assert controller.suggestion is None
        qtbot.waitUntil(lambda: all(task.done() for task in first.values()), timeout=5_000)
        assert all(task.cancelled() for task in first.values())
        # The proxy saw the client hang up mid-stream: the first request's stream is closed.
        qtbot.waitUntil(lambda: proxy.hangups == 1, timeout=5_000)
        qtbot.waitUntil(lambda: proxy.completions == 2, timeout=20_000)
        qtbot.waitUntil(lambda: len(ghost(controller)) > 3, timeout=20_000)
        assert not errors
        source.close()


def test_suggestions_resume_by_themselves_when_the_server_comes_back(qtbot, qt_loop, cat_gguf):
    port = free_port()
    server = LlamaServer(cat_gguf, port=port).start()
    try:
        source, controller, errors = make(qtbot, server.base_url, probe_delays=(0.2,))
        source.recovered.connect(controller.trigger)  # what install_remote_engine wires
        type_text(controller, "The cat sat", 1)
        qtbot.waitUntil(lambda: ghost(controller) == " on the mat.", timeout=20_000)

        server.kill()
        with qtbot.waitSignal(source.statusChanged, timeout=20_000) as status:
            type_text(controller, "Snow fell", 2)
        assert status.args == [f"Remote: 127.0.0.1:{port} (not answering; trying again)"]
        qtbot.waitUntil(lambda: bool(errors), timeout=20_000)
        assert errors == [f"Cannot reach the server at 127.0.0.1:{port}; is it running?"]
        assert controller.suggestion is None and source.offline

        server = LlamaServer(cat_gguf, port=port).start()  # back, nobody touches anything
        with qtbot.waitSignal(source.recovered, timeout=30_000):
            pass
        qtbot.waitUntil(lambda: ghost(controller) == " softly", timeout=20_000)
        assert source.status == f"Remote: 127.0.0.1:{port}" and not source.offline
        source.close()
    finally:
        server.kill()


def test_plain_http_to_another_machine_asks_first_and_sends_nothing_if_refused(qtbot, qt_loop):
    asked: list[str] = []

    def refuse(host: str) -> bool:
        asked.append(host)
        return False

    source, controller, errors = make(qtbot, "http://gpu-box.invalid:8000/v1", confirm_plain_http=refuse)
    type_text(controller, "Hello there", 1)
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    type_text(controller, "Hello there again", 2)
    qtbot.waitUntil(lambda: len(errors) == 2, timeout=5_000)
    assert asked == ["gpu-box.invalid:8000"]  # asked once, before the first request only
    assert errors[0] == "No suggestions: you chose not to send your text unencrypted to gpu-box.invalid:8000."
    assert not source._tasks  # nothing was sent


def test_the_next_token_probe_follows_the_source_to_the_server_and_back(qtbot, qt_loop, cat_server):
    # The Token probabilities panel must show the model that writes the suggestions.
    from writer_app.services.inference import InferenceService
    from writer_app.services.next_token_probe import NextTokenProbe

    local = InferenceService()  # no model loaded: it could not answer a probe
    try:
        source = RemoteSource(RemoteConfig.create(cat_server.base_url))
        controller = SuggestionController(local, GREEDY, SuggestionPreferences(auto_trigger=False))
        probe = NextTokenProbe(controller, local, GREEDY, delay_ms=10)
        answers: list[tuple] = []
        probe.updated.connect(answers.append)
        probe.set_active(True)
        controller.set_source(source)
        type_text(controller, "The cat sat", 1)
        qtbot.waitUntil(lambda: bool(answers), timeout=20_000)
        best = answers[-1][0]
        assert best.text == " on" and best.probability == pytest.approx(1.0, abs=1e-3)
        assert len(answers[-1]) > 1  # the runners-up too
        controller.set_source(local)  # back to the local engine, which has no model yet
        type_text(controller, "The cat sat on", 2)
        qtbot.waitUntil(lambda: not probe.pending, timeout=5_000)
        assert len(answers) == 1
        source.close()
    finally:
        local.shutdown()


def test_alternatives_are_seeded_requests_to_the_server(qtbot, qt_loop, random_server):
    # Alt+] on a server: the next alternative is another request with its own seed.
    sampled = SamplingSettings(temperature=1.5, top_k=0, top_p=1.0, alternatives=3, seed=5,
                               max_tokens=12, stop_at=StopAt.LENGTH)
    source, controller, errors = make(qtbot, random_server.base_url, sampled)
    type_text(controller, "Once upon a time", 1)
    qtbot.waitUntil(lambda: len(ghost(controller)) > 0 and not controller.busy, timeout=20_000)
    first = ghost(controller)
    assert controller.cycle(+1)
    qtbot.waitUntil(lambda: not controller.busy and len(controller.suggestion.alternatives) == 2,
                    timeout=20_000)
    second = ghost(controller)
    assert second and second != first and not errors
    assert controller.cycle(-1) and ghost(controller) == first  # back, without a request
    source.close()
