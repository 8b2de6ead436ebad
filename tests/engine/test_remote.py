"""The remote engine against llama.cpp's real HTTP server (xllamacpp) on 127.0.0.1, directly
and through a fault-injecting proxy. No mocks: every answer comes from a real model."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from tests.support import remote_fixtures
from tests.support.fault_proxy import FaultProxy
from tests.support.llama_server import free_port
from tests.support.remote_fixtures import API_KEY
from writer_app.engine.protocol import FinishEvent, FinishReason, GenerationRequest, TokenEvent
from writer_app.engine.remote import (
    Capabilities,
    RemoteClient,
    gpt2_tokenizer,
    prompt_ids_for,
)
from writer_app.engine.remote_config import RemoteConfig, RetryPolicy, normalize_base_url
from writer_app.engine.remote_errors import (
    AuthenticationFailed,
    RemoteConfigError,
    ServerBusy,
    ServerTimeout,
    ServerUnreachable,
    StreamCut,
    UnknownModel,
)
from writer_app.engine.remote_events import pieces_of
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.tokenizer import Tokenizer

# The shared real-server fixtures (module-scoped servers, session-scoped model files).
cat_gguf = remote_fixtures.cat_gguf
cat_server = remote_fixtures.cat_server
keyed_server = remote_fixtures.keyed_server
random_gguf_model = remote_fixtures.random_gguf_model
random_server = remote_fixtures.random_server

pytestmark = pytest.mark.timeout(120)
GREEDY = SamplingSettings(temperature=0, repetition_penalty=1.0, stop_at="length", max_tokens=24)
FAST_RETRY = RetryPolicy(retries=3, first_delay=0.05, max_delay=0.2)


def request(text: str, settings: SamplingSettings = GREEDY, request_id: int = 1, **kw) -> GenerationRequest:
    ids = prompt_ids_for(text, gpt2_tokenizer(), 1024)
    return GenerationRequest(request_id, tuple(ids), settings, preceding_text=text[-64:], **kw)


async def collect(config: RemoteConfig, req: GenerationRequest) -> list[TokenEvent | FinishEvent]:
    client = RemoteClient(config, gpt2_tokenizer())
    try:
        return [event async for event in client.generate(req)]
    finally:
        await client.aclose()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def raw_completion(server, prompt: str, **params) -> str:  # type: ignore[no-untyped-def]
    """What the server itself answers, asked plainly (no streaming, text prompt)."""
    body = {"model": "test-gpt2", "prompt": prompt, **params}
    reply = httpx2.post(server.base_url + "/completions", json=body, timeout=60).json()
    return reply["choices"][0]["text"]


# ---- streaming text, ids, probabilities ------------------------------------------------


def test_greedy_stream_equals_the_servers_own_completion(random_server):
    prompt = "It was a bright cold day in April, and"
    events = run(collect(RemoteConfig.create(random_server.base_url), request(prompt)))
    finish = events[-1]
    assert isinstance(finish, FinishEvent) and finish.reason is FinishReason.LENGTH
    assert finish.generated_tokens == 24
    expected = raw_completion(random_server, prompt, temperature=0, max_tokens=24, repeat_penalty=1.0)
    assert finish.text == expected
    assert "".join(e.text for e in events[:-1]) + finish.tail_text == expected


def test_prompt_goes_as_token_ids_and_logprobs_become_probabilities(cat_server):
    settings = SamplingSettings(temperature=0.7, top_k=30, top_p=0.9, repetition_penalty=1.2,
                                repetition_window=32, max_tokens=20, seed=5, stop_at="length")
    with FaultProxy(cat_server.port) as proxy:
        client_events = run(collect(
            RemoteConfig.create(proxy.base_url),
            request("The cat sat", settings, with_probs=True, top_n=3),
        ))
        (body,) = proxy.bodies()
    assert body["prompt"] == [464, 3797, 3332]  # "The cat sat" in GPT-2 ids
    assert body == {
        "model": "test-gpt2", "prompt": [464, 3797, 3332], "max_tokens": 20, "temperature": 0.7,
        "top_p": 0.9, "seed": 5, "stream": True, "logprobs": 3, "min_p": 0.0,
        "repeat_penalty": 1.2, "repeat_last_n": 32, "cache_prompt": True, "top_k": 30,
    }
    tokens = [e for e in client_events if isinstance(e, TokenEvent)]
    tokenizer = gpt2_tokenizer()
    assert [e.token_id for e in tokens] == tokenizer.encode(" on the mat. Then it slept all day!")
    for event in tokens:
        assert event.probability == pytest.approx(1.0, abs=1e-3)
        assert len(event.alternatives) == 3
        assert event.alternatives[0].token_id == event.token_id
        assert event.alternatives[0].probability >= event.alternatives[1].probability
    assert client_events[-1].reason is FinishReason.EOS  # the phrase ends in <|endoftext|>


def test_sentence_stop_rule_ends_the_suggestion_like_the_local_engines(cat_server):
    settings = GREEDY.with_changes(stop_at="sentence")
    with FaultProxy(cat_server.port) as proxy:
        proxy.delay = 0.05  # the rest of the text is still on its way when the rule stops
        events = run(collect(RemoteConfig.create(proxy.base_url), request("The cat sat", settings)))
        proxy.settle()
        assert proxy.hangups == 1  # the stream was closed, not read to its end
    finish = events[-1]
    assert finish.reason is FinishReason.STOP
    assert finish.text == " on the mat."
    assert finish.tail_text == "."  # held back until " Then" proved the sentence ended


def test_discovery_reports_llama_cpp_with_our_vocabulary(cat_server):
    async def connect():  # type: ignore[no-untyped-def]
        client = RemoteClient(RemoteConfig.create(cat_server.base_url), gpt2_tokenizer())
        try:
            return await client.connect()
        finally:
            await client.aclose()

    info = run(connect())
    assert info.model == "test-gpt2" and info.models == ("test-gpt2",)
    assert info.n_ctx == 256
    assert info.capabilities == Capabilities("llama.cpp", True, True, True, True)
    assert info.capabilities.unsupported() == {}


def test_a_plain_openai_server_disables_the_controls_it_does_not_take():
    caps = Capabilities("OpenAI-compatible", False, False, False, False)
    assert set(caps.unsupported()) == {"top_k", "repetition_penalty", "repetition_window"}
    vllm = Capabilities("vLLM", True, True, True, False)
    assert list(vllm.unsupported()) == ["repetition_window"]
    assert "whole text" in vllm.unsupported()["repetition_window"]


def test_seeds_reproduce_on_the_server(random_server):
    config = RemoteConfig.create(random_server.base_url)
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, stop_at="length", max_tokens=12)

    def text(seed: int) -> str:
        return run(collect(config, request("Once upon a time", settings.with_changes(seed=seed))))[-1].text

    assert text(7) == text(7)
    assert text(7) != text(8)


def test_closing_the_stream_early_frees_the_server(random_server):
    async def scenario():  # type: ignore[no-untyped-def]
        client = RemoteClient(RemoteConfig.create(random_server.base_url), gpt2_tokenizer())
        try:
            long = GREEDY.with_changes(max_tokens=256)
            stream = client.generate(request("A long story", long))
            first = await anext(stream)
            await stream.aclose()  # what an edit does: the connection closes
            again = [e async for e in client.generate(request("A long story", GREEDY))]
            return first, again[-1]
        finally:
            await client.aclose()

    first, finish = run(scenario())
    assert isinstance(first, TokenEvent)
    assert finish.reason is FinishReason.LENGTH and finish.generated_tokens == 24


def test_openai_legacy_logprobs_with_token_ids_decode_through_our_vocabulary():
    # A vLLM chunk as it streams with logprobs=2 and return_tokens_as_token_ids.
    chunk = {"text": " café", "logprobs": {
        "tokens": ["token_id:40304"], "token_logprobs": [-0.1],
        "top_logprobs": [{"token_id:40304": -0.1, "token_id:3797": -2.5}],
    }}
    tokenizer = gpt2_tokenizer()
    (piece,) = pieces_of(chunk, tokenizer.token_bytes)
    assert piece.token_id == 40304 and piece.data == tokenizer.token_bytes(40304)
    assert piece.probability == pytest.approx(0.905, abs=1e-3)
    assert [a.token_id for a in piece.alternatives] == [40304, 3797]
    assert pieces_of({"text": "plain", "logprobs": None}, tokenizer.token_bytes)[0].text == "plain"


# ---- faults, each one sentence ------------------------------------------------------------


def failure(config: RemoteConfig, req: GenerationRequest | None = None) -> Exception:
    with pytest.raises(Exception) as caught:
        run(collect(config, req or request("The cat sat")))
    return caught.value


def test_the_api_key_is_sent_and_a_missing_or_wrong_key_is_reported(keyed_server):
    events = run(collect(RemoteConfig.create(keyed_server.base_url, API_KEY), request("The cat sat")))
    assert events[-1].text == " on the mat. Then it slept all day!"
    missing = failure(RemoteConfig.create(keyed_server.base_url))
    assert isinstance(missing, AuthenticationFailed)
    assert str(missing) == f"The server at 127.0.0.1:{keyed_server.port} needs an API key (401)."
    wrong_key = "sk-wrong-key-that-is-long-9876"
    wrong = failure(RemoteConfig.create(keyed_server.base_url, wrong_key))
    assert isinstance(wrong, AuthenticationFailed) and "refused the API key …9876" in str(wrong)
    assert wrong_key not in str(wrong) and wrong_key not in repr(RemoteConfig.create("x", wrong_key))


def test_an_unknown_model_is_named(cat_server):
    error = failure(RemoteConfig.create(cat_server.base_url, model="gpt2-xl"))
    assert isinstance(error, UnknownModel)
    assert "no model named 'gpt2-xl' (it offers: test-gpt2)" in str(error)


def test_nothing_listening_is_unreachable():
    port = free_port()
    error = failure(RemoteConfig.create(f"http://127.0.0.1:{port}/v1"))
    assert isinstance(error, ServerUnreachable)
    assert str(error) == f"Cannot reach the server at 127.0.0.1:{port}; is it running?"


def test_a_stream_cut_midway_is_reported_with_what_arrived(random_server):
    with FaultProxy(random_server.port) as proxy:
        proxy.cut_after = 1500  # headers and a few tokens
        error = failure(RemoteConfig.create(proxy.base_url), request("Tell me", GREEDY.with_changes(max_tokens=200)))
        assert proxy.cuts == 1
    assert isinstance(error, StreamCut)
    assert str(error).startswith(f"The connection to 127.0.0.1:{proxy.port} was cut after ")
    assert str(error).endswith("tokens; the suggestion is incomplete.")


def test_429_is_retried_with_backoff_then_succeeds(cat_server):
    with FaultProxy(cat_server.port) as proxy:
        proxy.busy_replies = 2
        config = RemoteConfig.create(proxy.base_url, retry=FAST_RETRY)
        events = run(collect(config, request("The cat sat")))
        assert proxy.busy_sent == 2 and proxy.completions == 3
    assert events[-1].text == " on the mat. Then it slept all day!"


def test_a_server_that_stays_busy_ends_in_one_sentence(cat_server):
    with FaultProxy(cat_server.port) as proxy:
        proxy.busy_replies, proxy.busy_status = 10, 503
        error = failure(RemoteConfig.create(proxy.base_url, retry=FAST_RETRY))
        assert proxy.busy_sent == 4  # the first try and 3 retries, no more
    assert isinstance(error, ServerBusy)
    assert str(error) == (f"The server at 127.0.0.1:{proxy.port} is busy (503) and still was after "
                          "3 retries; try again shortly.")


def test_a_slow_server_times_out(cat_server):
    with FaultProxy(cat_server.port) as proxy:
        proxy.delay = 1.5
        error = failure(RemoteConfig.create(proxy.base_url, read_timeout=0.3))
    assert isinstance(error, ServerTimeout)
    assert str(error) == f"The server at 127.0.0.1:{proxy.port} sent nothing for 0.3 s; the suggestion was stopped."


def test_a_server_that_stalls_mid_stream_times_out_with_what_arrived(random_server):
    async def scenario():  # type: ignore[no-untyped-def]
        client = RemoteClient(RemoteConfig.create(proxy.base_url, read_timeout=0.5), gpt2_tokenizer())
        events = []
        try:
            async for event in client.generate(request("Tell me", GREEDY.with_changes(max_tokens=60))):
                events.append(event)
        except ServerTimeout as error:
            return events, error
        finally:
            await client.aclose()
        return events, None

    with FaultProxy(random_server.port) as proxy:
        proxy.delay, proxy.delay_after = 2.0, 4  # headers and a few tokens, then silence
        events, error = run(scenario())
    assert 1 <= len(events) <= 4 and all(isinstance(e, TokenEvent) for e in events)
    assert str(error) == f"The server at 127.0.0.1:{proxy.port} sent nothing for 0.5 s; the suggestion was stopped."


# ---- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "base"), [
    ("localhost:8080", "http://localhost:8080/v1"),
    ("http://gpu-box:8000/v1/", "http://gpu-box:8000/v1"),
    ("https://api.example.org/v1/completions", "https://api.example.org/v1"),
    ("http://127.0.0.1:11434/v1/models", "http://127.0.0.1:11434/v1"),
])
def test_addresses_are_normalised_to_the_api_base(typed, base):
    assert normalize_base_url(typed) == base


def test_bad_addresses_are_one_sentence():
    with pytest.raises(RemoteConfigError, match="must start with http:// or https://"):
        normalize_base_url("ftp://host/v1")
    with pytest.raises(RemoteConfigError, match="Enter the server's address"):
        normalize_base_url("  ")


def test_plain_http_warns_only_for_another_machine():
    assert RemoteConfig.create("http://gpu-box.lan:8000/v1").is_plain_http_to_another_machine
    assert RemoteConfig.create("http://192.168.1.20:8000").is_plain_http_to_another_machine
    assert not RemoteConfig.create("https://gpu-box.lan/v1").is_plain_http_to_another_machine
    assert not RemoteConfig.create("http://localhost:8080").is_plain_http_to_another_machine
    assert not RemoteConfig.create("http://127.0.0.1:8080").is_plain_http_to_another_machine
    assert not RemoteConfig.create("http://[::1]:8080").is_plain_http_to_another_machine


def test_a_model_with_another_vocabulary_gets_text_and_its_ids_are_not_taken_for_ours(cat_server):
    # Our side knows only a byte-level vocabulary: the server's GPT-2 tokenizes the probe
    # differently, so the prompt must go as text and the server's ids mean nothing here.
    bytes_only = Tokenizer.from_vocab([bytes([b]) for b in range(256)] + [b"<|endoftext|>"])

    proxy = FaultProxy(cat_server.port).start()

    async def scenario():  # type: ignore[no-untyped-def]
        client = RemoteClient(RemoteConfig.create(proxy.base_url), bytes_only)
        try:
            ids = prompt_ids_for("The cat sat", bytes_only, 256)
            req = GenerationRequest(1, tuple(ids), GREEDY, with_probs=True, top_n=2, preceding_text="The cat sat")
            return client.info, [e async for e in client.generate(req)], await client.connect()
        finally:
            await client.aclose()

    try:
        _, events, info = run(scenario())
        (body,) = proxy.bodies()
    finally:
        proxy.stop()
    assert info.capabilities.token_ids is False
    assert body["prompt"] == "The cat sat"
    assert events[-1].text == " on the mat. Then it slept all day!"
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) == 10 and all(e.token_id == -1 for e in tokens)
    assert all(a.token_id == -1 for e in tokens for a in e.alternatives)
    assert tokens[0].alternatives[0].text == " on"  # the server's own token text
