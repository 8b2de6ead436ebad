"""The llama.cpp backend (xllamacpp in-process) on small generated models: it computes what
the numpy reference computes, streams and stops like the ctransformers backend, and
cancels, reproduces and reuses its cache as the app expects."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.foreign_gguf import foreign_gguf
from tests.support.gpt2_vocab import END_OF_TEXT_ID, encode, gpt2_vocab
from tests.support.models import phrase_model, random_gpt2, random_weights
from tests.support.reference import dequantized, reference_logits
from writer_app.engine import llama_backend
from writer_app.engine.backends import GPU_ALL_LAYERS, open_backend
from writer_app.engine.generation import penalize, softmax
from writer_app.engine.ggml import InvalidModelFile
from writer_app.engine.llama_backend import (
    PROMPT_CHUNK,
    SEQUENCES,
    STANDBY_CHUNK,
    LlamaCppBackend,
    _start_server,
)
from writer_app.engine.llama_stream import CompletionStream
from writer_app.engine.protocol import (
    FinishEvent,
    FinishReason,
    GenerationRequest,
    LoadCommand,
    ModelLoadError,
    TokenEvent,
)
from writer_app.engine.sampling import SamplingSettings, StopAt

TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_ctx": 128}
PROMPT = [464, 3797, 3332, 319, 262]  # "The cat sat on the"
GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, stop_at=StopAt.LENGTH)
PHRASES = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there lived an old king",
    " Ghost text appears after your cursor",
]

@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return random_gpt2(tmp_path_factory.mktemp("models") / "tiny-f32.bin", **TINY, seed=3)


@pytest.fixture(scope="module")
def backend(tiny_path) -> LlamaCppBackend:
    loaded = LlamaCppBackend.load(tiny_path, threads=1)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def weights():
    return random_weights(
        n_layer=TINY["n_layer"], n_embd=TINY["n_embd"], n_ctx=TINY["n_ctx"], seed=3
    )


def run(backend, prompt, settings, should_cancel=None, **kwargs):
    request = GenerationRequest(1, tuple(prompt), settings, **kwargs)
    events = list(backend.generate(request, should_cancel))
    *tokens, finish = events
    assert isinstance(finish, FinishEvent)
    assert all(isinstance(event, TokenEvent) for event in tokens)
    return tokens, finish


def reference_chain(weights, prompt, steps, penalty=1.0, window=64) -> list[int]:
    chain = list(prompt)
    for _ in range(steps):
        logits = reference_logits(weights, chain, n_head=TINY["n_head"])[-1]
        penalize(logits, chain[-window:], penalty)
        top2 = np.sort(logits)[-2:]
        assert top2[1] - top2[0] > 1e-3, "reference too close to a tie to compare"
        chain.append(int(np.argmax(logits)))
    return chain[len(prompt) :]


# ---- what it computes -----------------------------------------------------------------


def test_greedy_generation_is_the_reference_argmax_chain(backend, weights):
    tokens, finish = run(backend, PROMPT, GREEDY.with_changes(max_tokens=8))
    assert [e.token_id for e in tokens] == reference_chain(weights, PROMPT, 8)
    assert finish.reason is FinishReason.LENGTH and finish.generated_tokens == 8


def test_the_repetition_penalty_has_ctransformers_meaning(backend, weights):
    # The unpenalized chain repeats itself on this model; the penalty must change it
    # exactly as ctransformers' formula does over prompt + suggestion.
    settings = GREEDY.with_changes(max_tokens=8, repetition_penalty=1.5, repetition_window=6)
    tokens, _ = run(backend, PROMPT, settings)
    expected = reference_chain(weights, PROMPT, 8, penalty=1.5, window=6)
    assert expected != reference_chain(weights, PROMPT, 8)
    assert [e.token_id for e in tokens] == expected


@pytest.mark.parametrize("ftype", ["f32", "q4_0", "q8_0"])
def test_phrase_model_continues_every_prefix_with_exact_bpe_tokens(tmp_path, ftype):
    path = phrase_model(tmp_path / "phrases.bin", PHRASES, ftype=ftype, n_ctx=64)
    weights = dequantized(_phrase_weights(), ftype)
    model = LlamaCppBackend.load(path, threads=1)
    try:
        for phrase in PHRASES:
            tokens = encode(phrase)
            for cut in range(1, len(tokens)):
                got, finish = run(model, tokens[:cut], GREEDY.with_changes(max_tokens=40))
                assert [e.token_id for e in got] == tokens[cut:], (phrase, cut)
                assert finish.reason is FinishReason.EOS
                assert finish.text == phrase[len(_decode(tokens[:cut])) :]
        # The numpy reference (on the weights as stored) agrees on the probability.
        tokens = encode(PHRASES[0])
        expected = softmax(reference_logits(weights, tokens[:3], n_head=4)[-1], 1.0)
        (best,) = model.next_token_probs(tokens[:3], 1.0, 1)
        assert best.token_id == tokens[3] == int(np.argmax(expected))
        assert best.probability == pytest.approx(expected[tokens[3]], abs=0.02)
    finally:
        model.close()


def _phrase_weights():
    from tests.support.models import phrase_weights

    return phrase_weights(PHRASES, n_ctx=64, n_embd=64, n_layer=2, seed=0)


def _decode(tokens: list[int]) -> str:
    vocab = gpt2_vocab()
    return b"".join(vocab[t] for t in tokens).decode()


def test_probabilities_and_alternatives_are_the_reference_softmax(backend, weights):
    tokens, _ = run(backend, PROMPT, GREEDY.with_changes(max_tokens=3), with_probs=True, top_n=4)
    chain = list(PROMPT)
    for event in tokens:
        expected = softmax(reference_logits(weights, chain, n_head=TINY["n_head"])[-1], 1.0)
        best = np.argsort(-expected)[:4]
        assert [a.token_id for a in event.alternatives] == best.tolist()
        assert [a.probability for a in event.alternatives] == pytest.approx(
            expected[best].tolist(), rel=2e-3
        )
        assert event.token_id == best[0]
        assert event.probability == pytest.approx(expected[best[0]], rel=2e-3)
        assert event.alternatives[0].text == gpt2_vocab()[best[0]].decode(errors="replace")
        chain.append(event.token_id)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_next_token_probs_are_the_softmax_at_the_temperature(backend, weights, temperature):
    expected = softmax(reference_logits(weights, PROMPT, n_head=TINY["n_head"])[-1], temperature)
    best = np.argsort(-expected)[:5]
    probs = backend.next_token_probs(PROMPT, temperature, 5)
    assert [a.token_id for a in probs] == best.tolist()
    assert [a.probability for a in probs] == pytest.approx(expected[best].tolist(), rel=2e-3)


def test_sampled_probabilities_are_reported_at_the_temperature(backend, weights):
    settings = SamplingSettings(
        temperature=0.5,
        top_k=0,
        top_p=1.0,
        max_tokens=1,
        seed=3,
        stop_at=StopAt.LENGTH,
        repetition_penalty=1.0,
    )
    (event,), _ = run(backend, PROMPT, settings, with_probs=True, top_n=3)
    expected = softmax(reference_logits(weights, PROMPT, n_head=TINY["n_head"])[-1], 0.5)
    best = np.argsort(-expected)[:3]
    assert [a.token_id for a in event.alternatives] == best.tolist()
    # Renormalized from llama.cpp's temperature-1 top tokens plus an estimate of the
    # rest: within a few percent even on this flat random model (2.5% measured), where
    # the rest weighs the most.
    assert event.probability == pytest.approx(expected[event.token_id], rel=0.05)
    assert [a.probability for a in event.alternatives] == pytest.approx(
        expected[best].tolist(), rel=0.05
    )


# ---- streaming, stopping, cancelling --------------------------------------------------


def test_text_streams_and_stops_like_the_other_engine(tmp_path):
    path = phrase_model(tmp_path / "p.bin", ["He left. Then she came"], n_ctx=64)
    model = LlamaCppBackend.load(path, threads=1)
    try:
        settings = GREEDY.with_changes(max_tokens=20, stop_at=StopAt.SENTENCE)
        tokens, finish = run(model, encode("He"), settings, preceding_text="He")
    finally:
        model.close()
    assert finish.reason is FinishReason.STOP
    assert finish.text == " left."
    assert "".join(e.text for e in tokens) + finish.tail_text == " left."


def test_cancel_lands_within_one_token(backend):
    seen = []

    def cancel_after_three() -> bool:
        return len(seen) >= 3

    request = GenerationRequest(7, tuple(PROMPT), GREEDY.with_changes(max_tokens=50))
    for event in backend.generate(request, cancel_after_three):
        if isinstance(event, TokenEvent):
            seen.append(event)
        else:
            finish = event
    assert finish.reason is FinishReason.CANCELLED
    assert finish.generated_tokens == len(seen) == 3


def test_a_cancel_during_the_prompt_stops_between_chunks(backend):
    calls = []

    def cancel_after_two_chunks() -> bool:
        calls.append(1)
        return len(calls) > 2

    prompt = [(7 * i + 1) % 50000 for i in range(100)]
    tokens, finish = run(
        backend, prompt, GREEDY.with_changes(max_tokens=4), should_cancel=cancel_after_two_chunks
    )
    assert tokens == [] and finish.reason is FinishReason.CANCELLED
    assert finish.evaluated_tokens == 2 * PROMPT_CHUNK


@pytest.mark.parametrize("imported", [False, True], ids=["ggml", "foreign-gguf"])
def test_tokens_that_end_inside_a_character_are_streamed(tmp_path, imported):
    """GPT-2 spells an emoji or a CJK character in byte tokens; each must arrive (llama-server
    holds such tokens back unless the file is written as gguf_convert writes it)."""
    phrase = " A ghost 👻 said 幽霊 softly"
    tokens = encode(phrase)
    assert any(_incomplete(t) for t in tokens)  # the test means something
    path = phrase_model(tmp_path / "p.bin", [phrase], n_ctx=64)
    if imported:
        path = foreign_gguf(path, tmp_path / "p.gguf")
    model = LlamaCppBackend.load(path, threads=1)
    try:
        got, finish = run(model, tokens[:2], GREEDY.with_changes(max_tokens=40), with_probs=True)
    finally:
        model.close()
    assert [e.token_id for e in got] == tokens[2:]
    assert finish.text == phrase[len(_decode(tokens[:2])) :] and finish.reason is FinishReason.EOS


def _incomplete(token: int) -> bool:
    try:
        gpt2_vocab()[token].decode()
        return False
    except UnicodeDecodeError:
        return True


def test_forced_tokens_are_continued_after(tmp_path):
    path = phrase_model(tmp_path / "p.bin", PHRASES[:1], n_ctx=64)
    model = LlamaCppBackend.load(path, threads=1)
    try:
        tokens = encode(PHRASES[0])
        # The writer accepted " quick brown" by hand: those tokens end the prompt.
        got, _ = run(model, tokens[:3], GREEDY.with_changes(max_tokens=3))
    finally:
        model.close()
    assert [e.token_id for e in got] == tokens[3:6]


def test_end_of_text_ends_the_suggestion_and_is_not_shown(tmp_path, backend):
    first = run(backend, PROMPT, GREEDY.with_changes(max_tokens=1))[0][0].token_id
    vocab = gpt2_vocab()
    vocab[first], vocab[END_OF_TEXT_ID] = vocab[END_OF_TEXT_ID], vocab[first]
    path = random_gpt2(tmp_path / "eos.bin", **TINY, seed=3, vocab=vocab)
    renamed = LlamaCppBackend.load(path, threads=1)
    try:
        tokens, finish = run(renamed, PROMPT, GREEDY.with_changes(max_tokens=5))
    finally:
        renamed.close()
    assert renamed.eos_id == first
    assert tokens == []
    assert finish.reason is FinishReason.EOS and finish.text == ""


# ---- seeds and the cache --------------------------------------------------------------


def test_same_seed_same_tokens_other_seed_other_tokens(backend):
    settings = SamplingSettings(
        temperature=1.0, top_k=0, top_p=1.0, max_tokens=12, stop_at=StopAt.LENGTH, seed=1234
    )
    first = [e.token_id for e in run(backend, PROMPT, settings)[0]]
    again = [e.token_id for e in run(backend, PROMPT, settings)[0]]
    other = [e.token_id for e in run(backend, PROMPT, settings.with_changes(seed=99))[0]]
    assert first == again
    assert first != other


def test_the_cached_prefix_is_not_read_again(backend):
    prompt = [(11 * i + 2) % 50000 for i in range(90)]
    _, cold = run(backend, prompt, GREEDY.with_changes(max_tokens=2))
    _, warm = run(backend, [*prompt, 13, 198], GREEDY.with_changes(max_tokens=2))
    assert cold.evaluated_tokens == 90
    assert warm.evaluated_tokens <= 3


def test_prewarm_reads_the_window_so_generate_finds_it_ready(backend):
    prompt = [(13 * i + 3) % 50000 for i in range(70)]
    assert backend.prewarm(prompt, max_tokens=4) == 70
    _, finish = run(backend, prompt, GREEDY.with_changes(max_tokens=4))
    assert finish.evaluated_tokens <= 1


SAMPLED = SamplingSettings(
    temperature=0.9, top_k=0, top_p=1.0, max_tokens=10, stop_at=StopAt.LENGTH, seed=4321
)


def _ahead_prompt(n: int) -> list[int]:
    return [(17 * i + 5) % 50000 for i in range(n)]


def test_a_prewarm_handed_the_coming_request_draws_its_first_token_so_generate_reads_nothing(
    backend,
):
    prompt = _ahead_prompt(60)
    cold_tokens, _ = run(backend, prompt, SAMPLED, with_probs=True, top_n=4)
    backend.prewarm([1, 2, 3], max_tokens=10)  # another prompt: the window is gone
    ahead = GenerationRequest(1, tuple(prompt), SAMPLED, with_probs=True, top_n=4)
    assert backend.prewarm(prompt, max_tokens=10, ahead=ahead) == 60
    tokens, finish = run(backend, prompt, SAMPLED, with_probs=True, top_n=4)
    assert finish.evaluated_tokens == 0  # not even the prompt's last token: it was drawn
    assert finish.generated_tokens == 10
    # The same suggestion as without the prewarm, probabilities included.
    assert [t.token_id for t in tokens] == [t.token_id for t in cold_tokens]
    assert tokens[0].probability == pytest.approx(cold_tokens[0].probability, rel=1e-4)
    assert [a.token_id for a in tokens[0].alternatives] == [
        a.token_id for a in cold_tokens[0].alternatives
    ]


def test_an_interactive_suggestion_gives_the_screen_a_head_start_before_its_rest(
    backend, monkeypatch
):
    """The rest of a suggestion starts FIRST_TOKEN_HEAD_START_S after the first token
    went out (module docs); the command line, which shows nothing, never waits."""
    happened: list[tuple[str, float]] = []
    real_start, real_pause = CompletionStream.start, llama_backend._give_the_screen_a_head_start

    def start(stream, should_cancel):
        happened.append(("rest started", time.perf_counter()))
        real_start(stream, should_cancel)

    def pause():
        happened.append(("pause", time.perf_counter()))
        real_pause()

    monkeypatch.setattr(CompletionStream, "start", start)
    monkeypatch.setattr(llama_backend, "_give_the_screen_a_head_start", pause)
    for interactive in (True, False):
        happened.clear()
        request = GenerationRequest(1, tuple(_ahead_prompt(30)), SAMPLED, interactive=interactive)
        events = backend.generate(request)
        first = next(events)
        assert isinstance(first, TokenEvent)
        handed_over = time.perf_counter()
        rest = list(events)
        assert len(rest) == SAMPLED.max_tokens  # nine tokens, then the finish
        steps = [what for what, _ in happened]
        if interactive:
            assert steps == ["pause", "rest started"]
            assert happened[1][1] - handed_over >= llama_backend.FIRST_TOKEN_HEAD_START_S
        else:
            assert steps == ["rest started"]


def test_a_first_token_drawn_ahead_serves_only_its_own_request(backend):
    prompt = _ahead_prompt(40)
    other_seed = SAMPLED.with_changes(seed=7)
    expected, _ = run(backend, prompt, other_seed)
    for differs in (
        GenerationRequest(1, tuple(prompt), SAMPLED),  # another seed
        GenerationRequest(1, tuple(prompt), other_seed, with_probs=True),
        GenerationRequest(1, tuple(prompt[:-1]), other_seed),  # another prompt
    ):
        backend.prewarm(differs.prompt_ids, max_tokens=10, ahead=differs)
        tokens, finish = run(backend, prompt, other_seed)
        assert [t.token_id for t in tokens] == [t.token_id for t in expected]
        assert finish.evaluated_tokens >= 1  # drew its own first token
    # Used once: a second identical request draws again, and agrees.
    ahead = GenerationRequest(1, tuple(prompt), other_seed)
    backend.prewarm(prompt, max_tokens=10, ahead=ahead)
    assert run(backend, prompt, other_seed)[1].evaluated_tokens == 0
    tokens, finish = run(backend, prompt, other_seed)
    assert finish.evaluated_tokens == 1
    assert [t.token_id for t in tokens] == [t.token_id for t in expected]


def test_a_first_token_drawn_ahead_is_dropped_when_its_sequence_read_something_else(backend):
    prompt = _ahead_prompt(30)
    expected, _ = run(backend, prompt, SAMPLED)
    backend.prewarm(prompt, max_tokens=10, ahead=GenerationRequest(1, tuple(prompt), SAMPLED))
    backend.next_token_probs([*prompt, 11], temperature=1.0, top_n=3)  # same sequence, moved on
    tokens, finish = run(backend, prompt, SAMPLED)
    assert finish.evaluated_tokens >= 1
    assert [t.token_id for t in tokens] == [t.token_id for t in expected]


def test_greedy_text_after_a_first_token_drawn_ahead_is_the_reference(backend, weights):
    prompt = PROMPT * 3
    settings = GREEDY.with_changes(max_tokens=6, seed=0)
    backend.prewarm(prompt, max_tokens=6, ahead=GenerationRequest(1, tuple(prompt), settings))
    tokens, finish = run(backend, prompt, settings)
    assert finish.evaluated_tokens == 0
    assert [t.token_id for t in tokens] == reference_chain(weights, prompt, 6)


def test_prewarm_stops_at_a_cancel(backend):
    prompt = [(17 * i + 4) % 50000 for i in range(100)]
    calls = []
    evaluated = backend.prewarm(prompt, 4, lambda: calls.append(1) or len(calls) > 1)
    assert evaluated == PROMPT_CHUNK


# ---- the second sequence: the next window prepared while the writer types -------------


def test_the_next_window_is_prepared_so_the_move_reads_only_new_tokens(tiny_path, weights):
    """A window that moves from P to U (P without its first 40 tokens, plus what the writer
    typed since) finds U ready in the second sequence, computes from it what the reference
    computes cold, and the old window stays ready in the first."""
    moving = LlamaCppBackend.load(tiny_path, threads=1)
    try:
        window = [(19 * i + 5) % 50000 for i in range(90)]
        upcoming = window[40:]
        assert moving.prewarm(window, 4, upcoming_ids=upcoming) == 90 + len(upcoming) - 1
        moved = [*upcoming, 318, 257]
        tokens, finish = run(moving, moved, GREEDY.with_changes(max_tokens=3))
        assert finish.evaluated_tokens <= 3
        assert [t.token_id for t in tokens] == reference_chain(weights, moved, 3)
        _, back = run(moving, window, GREEDY.with_changes(max_tokens=1))
        assert back.evaluated_tokens <= 1
    finally:
        moving.close()


def test_without_an_upcoming_window_only_the_writers_is_read(tiny_path):
    single = LlamaCppBackend.load(tiny_path, threads=1)
    try:
        window = [(23 * i + 7) % 50000 for i in range(60)]
        assert single.prewarm(window, 4) == 60
        _, moved = run(single, window[30:], GREEDY.with_changes(max_tokens=1))
        assert moved.evaluated_tokens == 30  # cold: nothing prepared it
    finally:
        single.close()


def test_preparing_the_next_window_stops_at_a_cancel_within_a_small_chunk(tiny_path):
    standby = LlamaCppBackend.load(tiny_path, threads=1)
    try:
        window = [(29 * i + 1) % 50000 for i in range(40)]
        standby.prewarm(window, 4)  # the writer's window is hot
        upcoming = [(31 * i + 9) % 50000 for i in range(80)]
        calls = []
        evaluated = standby.prewarm(
            window, 4, lambda: calls.append(1) or len(calls) > 3, upcoming_ids=upcoming
        )
        assert SEQUENCES == 2 and 1 <= evaluated <= 1 + STANDBY_CHUNK
    finally:
        standby.close()


# ---- hostile prompts ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Ghosts 👻🎃 and 🧑‍🤝‍🧑 everywhere " * 8,
        "我们在山上看见了雪。日本語も少し。" * 10,
        "-" * 50_000,
        ("It was the best of times, it was the worst of times, " * 300),
    ],
    ids=["emoji", "cjk", "dashes", "prose"],
)
def test_hostile_prompts_run_cleanly(backend, text):
    settings = SamplingSettings(temperature=0.9, max_tokens=16, seed=5, stop_at=StopAt.LENGTH)
    tokens, finish = run(backend, encode(text), settings, with_probs=True)
    assert finish.reason is FinishReason.LENGTH and len(tokens) == 16
    assert finish.prompt_tokens + finish.generated_tokens <= TINY["n_ctx"]
    assert "\ufffd" not in "".join(e.text for e in tokens)[:0]  # text is str, never bytes


def test_empty_prompt_starts_from_end_of_text(backend):
    settings = SamplingSettings(temperature=1.0, max_tokens=4, stop_at=StopAt.LENGTH, seed=5)
    empty_tokens, empty_finish = run(backend, [], settings)
    eos_tokens, _ = run(backend, [END_OF_TEXT_ID], settings)
    assert empty_finish.prompt_tokens == 1
    assert [e.token_id for e in empty_tokens] == [e.token_id for e in eos_tokens]


# ---- loading --------------------------------------------------------------------------


def test_a_bad_file_never_reaches_llama_cpp(tmp_path):
    bad = tmp_path / "fake.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 100)
    with pytest.raises(InvalidModelFile, match="fake.gguf is not a usable GPT-2 model"):
        LlamaCppBackend.load(bad)
    ggml = tmp_path / "fake.bin"
    ggml.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(InvalidModelFile, match="GGML magic"):
        LlamaCppBackend.load(ggml)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.bin", "fake.gguf"]


def test_facts_name_the_model_the_writer_chose(backend, tiny_path):
    assert backend.facts.path == tiny_path
    assert backend.facts.n_vocab == 50257 and backend.facts.n_layer == 2
    assert backend.n_ctx == TINY["n_ctx"]


def test_the_context_can_be_capped(tiny_path):
    capped = LlamaCppBackend.load(tiny_path, threads=1, context_length=64)
    try:
        _, finish = run(capped, list(range(200, 300)), GREEDY.with_changes(max_tokens=8))
    finally:
        capped.close()
    assert capped.n_ctx == 64
    assert finish.prompt_tokens + finish.generated_tokens <= 64


def test_the_registry_opens_llama_cpp(tiny_path):
    model = open_backend(LoadCommand(tiny_path, 1, None, engine="llama.cpp"))
    try:
        assert isinstance(model, LlamaCppBackend)
    finally:
        model.close()


def test_a_load_failure_is_one_line_and_llama_cpp_prints_nothing(tmp_path, capfd):
    # The validator stops bad files first; this is what remains if llama.cpp refuses one.
    path = tmp_path / "refused.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError) as caught:
        _start_server(path, 1, 64)
    assert str(caught.value).startswith("llama.cpp could not load refused.gguf: ")
    assert "\n" not in str(caught.value)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_loading_and_generating_prints_nothing(tiny_path, capfd):
    model = LlamaCppBackend.load(tiny_path, threads=1)
    try:
        run(model, PROMPT, GREEDY.with_changes(max_tokens=3))
    finally:
        model.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_model_closed_right_after_loading_closes(tiny_path):
    # xllamacpp's Server could wait forever in its destructor when closed before its loop
    # had run (one load in a few dozen here); load() now sends one request through it.
    for _ in range(5):
        LlamaCppBackend.load(tiny_path, threads=1).close()


# ---- GPU layers ---------------------------------------------------------------------------


def test_without_a_gpu_the_layers_asked_for_stay_on_the_cpu_and_the_text_is_the_same(
    tiny_path, weights
):
    assert llama_backend.gpu_devices() == []  # xllamacpp's CPU wheel; this machine has none
    model = LlamaCppBackend.load(tiny_path, threads=1, gpu_layers=GPU_ALL_LAYERS)
    try:
        assert model.gpu_layers == 0
        tokens, _ = run(model, PROMPT, GREEDY.with_changes(max_tokens=6))
        assert [e.token_id for e in tokens] == reference_chain(weights, PROMPT, 6)
    finally:
        model.close()


@pytest.mark.parametrize(("asked", "offloaded"), [(GPU_ALL_LAYERS, TINY["n_layer"] + 1), (1, 1)])
def test_with_a_gpu_the_layers_asked_for_go_to_it_at_most_all_of_them(
    tiny_path, monkeypatch, asked, offloaded
):
    # Only the device list is stood in for (this machine has no GPU); llama.cpp still
    # loads with the count, and its CPU build computes every layer itself.
    monkeypatch.setattr(llama_backend, "gpu_devices", lambda: ["a GPU"])
    model = LlamaCppBackend.load(tiny_path, threads=1, gpu_layers=asked)
    try:
        assert model.gpu_layers == offloaded
        tokens, _ = run(model, PROMPT, GREEDY.with_changes(max_tokens=2))
        assert len(tokens) == 2
    finally:
        model.close()
