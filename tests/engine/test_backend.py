"""The ctransformers backend, in-process on tiny generated models (fast, single-threaded).

Things that may crash the native library (big shapes, killing) are tested through the
engine process in test_process.py instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.gpt2_vocab import END_OF_TEXT_ID, gpt2_vocab
from tests.support.models import GPT2_LARGE_SHAPE, GPT2_SHAPE, random_gpt2, random_weights
from tests.support.reference import reference_logits
from writer_app.engine.backend import (
    EVAL_BUFFER_BYTES,
    MAX_BATCH,
    PREWARM_CHUNK,
    CTransformersBackend,
    ModelShape,
    eval_buffer_bytes,
    library_path,
    safe_batch_size,
)
from writer_app.engine.backends import open_backend
from writer_app.engine.generation import derive_seed, softmax
from writer_app.engine.ggml import InvalidModelFile
from writer_app.engine.protocol import (
    Backend,
    ContextOverflowError,
    EngineError,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    InvalidTokenError,
    LoadCommand,
    TokenEvent,
)
from writer_app.engine.sampling import SamplingSettings, StopAt

TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_ctx": 128}
PROMPT = [464, 3797, 3332, 319, 262]  # "The cat sat on the"
LARGE = ModelShape(
    GPT2_LARGE_SHAPE.n_layer, GPT2_LARGE_SHAPE.n_embd, GPT2_LARGE_SHAPE.n_head, 50257
)
GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, stop_at=StopAt.LENGTH)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return random_gpt2(tmp_path_factory.mktemp("models") / "tiny-f32.bin", **TINY, seed=3)


@pytest.fixture(scope="module")
def backend(tiny_path) -> CTransformersBackend:
    loaded = CTransformersBackend.load(tiny_path)
    yield loaded
    loaded.close()


def ask(prompt: list[int], settings: SamplingSettings, **kwargs) -> GenerationRequest:
    return GenerationRequest(1, tuple(prompt), settings, **kwargs)


def run(
    backend: Backend, prompt: list[int], settings: SamplingSettings, should_cancel=None, **kwargs
):
    events = list(backend.generate(ask(prompt, settings, **kwargs), should_cancel))
    *tokens, finish = events
    assert isinstance(finish, FinishEvent)
    assert all(isinstance(event, TokenEvent) for event in tokens)
    return tokens, finish


# ---- the native library and the batch policy ----------------------------------------


def test_library_is_a_cpu_build_chosen_without_cpu_detection():
    path = Path(library_path())
    assert path.is_file()
    assert path.parent.name in ("avx2", "avx", "basic")


def test_buffer_estimate_reproduces_the_measured_gpt2_large_crashes():
    # Measured: batches of 8 crash near 950 tokens of context, 16 near 544, and 32 even
    # on a 512-token prompt; those evaluations must need more than the buffer...
    assert eval_buffer_bytes(8, 960, LARGE) > EVAL_BUFFER_BYTES
    assert eval_buffer_bytes(16, 560, LARGE) > EVAL_BUFFER_BYTES
    assert eval_buffer_bytes(32, 0, LARGE) > EVAL_BUFFER_BYTES
    # ...while the same batches a little earlier, and single tokens anywhere, fit.
    assert eval_buffer_bytes(8, 900, LARGE) < EVAL_BUFFER_BYTES
    assert eval_buffer_bytes(16, 500, LARGE) < EVAL_BUFFER_BYTES
    assert eval_buffer_bytes(1, 1023, LARGE) < EVAL_BUFFER_BYTES


def test_batch_policy_stays_inside_the_buffer_all_the_way_to_the_end():
    sizes = []
    n_past = 0
    while n_past < 1024:
        size = safe_batch_size(n_past, 1024 - n_past, LARGE, max_batch=32)
        assert 1 <= size <= 32
        assert eval_buffer_bytes(size, n_past, LARGE) < 0.95 * EVAL_BUFFER_BYTES
        sizes.append(size)
        n_past += size
    assert n_past == 1024
    assert sizes == sorted(sizes, reverse=True)  # shrinks as the context fills
    assert sizes[0] > 16 and sizes[-1] < 8


def test_small_models_get_full_batches():
    small = ModelShape(GPT2_SHAPE.n_layer, GPT2_SHAPE.n_embd, GPT2_SHAPE.n_head, 50257)
    assert safe_batch_size(1000, 500, small, max_batch=32) == 32
    assert safe_batch_size(0, 5, small, max_batch=32) == 5


def _native_chunks(backend: CTransformersBackend, monkeypatch) -> list[int]:
    """Records the size of every native evaluation call the backend makes."""
    sizes: list[int] = []
    real = backend._eval_chunk

    def counted(chunk: list[int]) -> None:
        sizes.append(len(chunk))
        real(chunk)

    monkeypatch.setattr(backend, "_eval_chunk", counted)
    return sizes


def test_a_generations_prompt_goes_one_token_per_native_call(backend, monkeypatch):
    """So an edit cancels it within one token's evaluation (ggml can't stop mid-call)."""
    backend.evaluate([7])  # a different first token: nothing below is cached
    sizes = _native_chunks(backend, monkeypatch)
    settings = GREEDY.with_changes(max_tokens=1)
    list(backend.generate(ask([11] * 40, settings), lambda: False))
    assert sizes == [1] * 40


def test_a_command_line_generation_reads_its_prompt_in_batches_to_the_same_text(backend, monkeypatch):
    """Not interactive (no edit will cancel it): the prewarm's batches, same tokens."""
    prompt = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]
    settings = GREEDY.with_changes(max_tokens=6)
    backend.evaluate([7])
    interactive = [e.token_id for e in backend.generate(ask(prompt, settings)) if isinstance(e, TokenEvent)]
    backend.evaluate([7])
    sizes = _native_chunks(backend, monkeypatch)
    batch = list(backend.generate(ask(prompt, settings, interactive=False), lambda: False))
    assert sizes[: len(prompt) // PREWARM_CHUNK] == [PREWARM_CHUNK] * (len(prompt) // PREWARM_CHUNK)
    assert sizes[len(prompt) // PREWARM_CHUNK :] == [1] * 5  # then one per generated token
    assert [e.token_id for e in batch if isinstance(e, TokenEvent)] == interactive


def test_a_prewarm_goes_in_batches(backend, monkeypatch):
    backend.evaluate([7])
    sizes = _native_chunks(backend, monkeypatch)
    assert backend.prewarm([11] * 40, max_tokens=8, should_cancel=lambda: False) == 40
    assert PREWARM_CHUNK > 1 and sizes == [PREWARM_CHUNK] * (40 // PREWARM_CHUNK)


def test_evaluation_batches_as_the_buffer_allows_by_default(backend, monkeypatch):
    backend.evaluate([7])
    sizes = _native_chunks(backend, monkeypatch)
    assert backend.evaluate([11] * 40) == 40
    assert sizes == [MAX_BATCH, 40 - MAX_BATCH]


def test_derived_seeds_are_reproducible_and_independent():
    assert derive_seed(42, 0) == derive_seed(42, 0)
    seeds = {derive_seed(42, step) for step in range(1000)}
    assert len(seeds) == 1000
    assert derive_seed(42, 0) != derive_seed(43, 0)
    assert all(0 <= seed < 2**31 for seed in seeds)


def test_softmax_applies_the_temperature():
    logits = np.array([2.0, 1.0, 0.0], dtype=np.float32)
    warm, cold = softmax(logits, 1.0), softmax(logits, 0.5)
    assert warm.sum() == pytest.approx(1.0) and cold.sum() == pytest.approx(1.0)
    assert cold[0] > warm[0]
    assert warm[0] / warm[1] == pytest.approx(np.e)
    np.testing.assert_allclose(softmax(logits, 0.0), warm)  # greedy shows T = 1


# ---- the seam: engines are opened by name ----------------------------------------------


def test_the_ctransformers_engine_is_opened_by_name(tiny_path):
    opened = open_backend(LoadCommand(tiny_path, threads=1, context_length=64))
    try:
        assert isinstance(opened, CTransformersBackend)
        assert opened.n_ctx == 64 and opened.facts.n_ctx == TINY["n_ctx"]
        tokens, finish = run(opened, PROMPT, GREEDY.with_changes(max_tokens=3))
        assert len(tokens) == finish.generated_tokens == 3
    finally:
        opened.close()


def test_an_unknown_engine_name_is_one_clear_error(tiny_path):
    with pytest.raises(EngineError, match="no engine called 'gpt-9000'.*ctransformers"):
        open_backend(LoadCommand(tiny_path, threads=1, context_length=None, engine="gpt-9000"))


def test_a_request_keeps_only_the_prompt_end_the_stop_rule_reads():
    request = GenerationRequest(3, [464, 3797], GREEDY, preceding_text="x" * 100 + "Dr.")
    assert request.prompt_ids == (464, 3797)
    assert len(request.preceding_text) == 64 and request.preceding_text.endswith("Dr.")


# ---- loading, evaluation and the cache ------------------------------------------------


def test_a_bad_file_never_reaches_ctransformers(tmp_path):
    bad = tmp_path / "fake.bin"
    bad.write_bytes(b"GGUF" + b"\x00" * 100)  # would segfault ctransformers
    with pytest.raises(InvalidModelFile, match="GGUF"):
        CTransformersBackend.load(bad)


def test_logits_match_the_numpy_reference(backend):
    weights = random_weights(
        n_layer=TINY["n_layer"], n_embd=TINY["n_embd"], n_ctx=TINY["n_ctx"], seed=3
    )
    expected = reference_logits(weights, PROMPT, n_head=TINY["n_head"])[-1]
    backend.evaluate(PROMPT)
    logits = backend.logits()
    assert logits.shape == (50257,) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, atol=2e-3)


def test_logits_are_a_read_only_view_of_native_memory(backend):
    backend.evaluate(PROMPT)
    first, second = backend.logits(), backend.logits()
    assert np.shares_memory(first, second)
    assert not first.flags.writeable


def test_common_prefix_is_not_evaluated_again(backend):
    other = [40, 588, 8887, 13]
    assert backend.evaluate(other) == 4  # a different prompt: all of it
    assert backend.evaluate(PROMPT) == 5
    assert backend.evaluate(PROMPT) == 0  # unchanged: the logits are already there
    assert backend.evaluate([*PROMPT, 3797, 13]) == 2  # typing on: only the new tokens
    assert backend.evaluate([*PROMPT, 1110]) == 1  # an edit at the end
    assert backend.evaluate(PROMPT[:3]) == 1  # a shorter prompt re-evaluates its last token


def test_reused_cache_gives_the_same_logits_as_a_fresh_evaluation(backend):
    backend.evaluate([40, 588])
    fresh = backend.logits().copy()
    backend.evaluate([*PROMPT, 11, 290, 257])
    backend.evaluate([*PROMPT, 11, 290, 8887, 13, 40, 588])
    reused = backend.logits().copy()
    backend.evaluate([40, 588, 8887])  # diverges at once: start over
    backend.evaluate([*PROMPT, 11, 290, 8887, 13, 40, 588])
    np.testing.assert_allclose(reused, backend.logits(), atol=1e-5)
    assert not np.allclose(fresh, reused, atol=1e-3)


@pytest.mark.parametrize("bad_id", [-1, 50257, 10**9, 3.0, True])
def test_token_ids_outside_the_vocabulary_are_refused(backend, bad_id):
    with pytest.raises(InvalidTokenError, match="not in this model's vocabulary|not an integer"):
        backend.evaluate([464, bad_id])
    with pytest.raises(InvalidTokenError):
        list(backend.generate(ask([bad_id], GREEDY)))


def test_nothing_is_evaluated_past_the_context(backend):
    with pytest.raises(ContextOverflowError, match="do not fit"):
        backend.evaluate([464] * (TINY["n_ctx"] + 1))


# ---- generation -------------------------------------------------------------------------


def test_greedy_generation_is_the_reference_argmax_chain(backend):
    weights = random_weights(
        n_layer=TINY["n_layer"], n_embd=TINY["n_embd"], n_ctx=TINY["n_ctx"], seed=3
    )
    tokens, finish = run(backend, PROMPT, GREEDY.with_changes(max_tokens=8))
    chain = list(PROMPT)
    for _ in range(8):
        logits = reference_logits(weights, chain, n_head=TINY["n_head"])[-1]
        top2 = np.sort(logits)[-2:]
        assert top2[1] - top2[0] > 1e-3, "reference too close to a tie to compare"
        chain.append(int(np.argmax(logits)))
    assert [event.token_id for event in tokens] == chain[len(PROMPT) :]
    assert finish.reason is FinishReason.LENGTH and finish.generated_tokens == 8


def test_same_seed_same_tokens_other_seed_other_tokens(backend):
    settings = SamplingSettings(
        temperature=1.0, top_k=0, top_p=1.0, max_tokens=12, stop_at=StopAt.LENGTH, seed=1234
    )
    first = [e.token_id for e in run(backend, PROMPT, settings)[0]]
    again = [e.token_id for e in run(backend, PROMPT, settings)[0]]
    other = [e.token_id for e in run(backend, PROMPT, settings.with_changes(seed=99))[0]]
    assert first == again
    assert first != other


def test_top_k_off_is_not_greedy(backend):
    greedy = [e.token_id for e in run(backend, PROMPT, GREEDY.with_changes(max_tokens=6))[0]]
    sampled = {
        tuple(
            e.token_id
            for e in run(
                backend,
                PROMPT,
                SamplingSettings(
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_tokens=6,
                    stop_at=StopAt.LENGTH,
                    seed=seed,
                ),
            )[0]
        )
        for seed in range(4)
    }
    assert len(sampled) == 4
    assert tuple(greedy) not in sampled


def test_one_seed_does_not_repeat_the_same_draw_every_token(backend):
    # With one seed per call, ctransformers would pick the same quantile every step; on a
    # flat random model that shows up as a run of identical tokens.
    settings = SamplingSettings(
        temperature=2.0,
        top_k=0,
        top_p=1.0,
        repetition_penalty=1.0,
        max_tokens=16,
        stop_at=StopAt.LENGTH,
        seed=7,
    )
    tokens = [e.token_id for e in run(backend, PROMPT, settings)[0]]
    assert len(set(tokens)) > 12


@pytest.mark.parametrize("max_tokens", [1, 5, 17])
def test_max_tokens_holds(backend, max_tokens):
    tokens, finish = run(backend, PROMPT, GREEDY.with_changes(max_tokens=max_tokens))
    assert len(tokens) == finish.generated_tokens == max_tokens
    assert finish.reason is FinishReason.LENGTH


def test_cancel_check_stops_between_tokens(backend):
    seen: list[TokenEvent] = []
    events = backend.generate(
        ask([11] * 20, GREEDY.with_changes(max_tokens=20)), lambda: len(seen) >= 3
    )
    for event in events:
        if isinstance(event, TokenEvent):
            seen.append(event)
        else:
            finish = event
    # Cancelled right after the third token: not one more is sampled.
    assert finish.reason is FinishReason.CANCELLED
    assert len(seen) == finish.generated_tokens == 3


def test_cancel_during_the_prompt_stops_between_chunks(backend):
    checks = 0

    def cancel_after_three_checks() -> bool:
        nonlocal checks
        checks += 1
        return checks > 3

    backend.evaluate([7])
    tokens, finish = run(backend, [11] * 100, GREEDY, should_cancel=cancel_after_three_checks)
    assert finish.reason is FinishReason.CANCELLED and tokens == []
    assert finish.evaluated_tokens == 3  # one token per check


def test_a_cancel_after_sampling_skips_that_tokens_evaluation(backend, monkeypatch):
    """The evaluation is the costly part of a step; once cancelled, it is not started."""
    cancelled = False
    events = backend.generate(ask(PROMPT, GREEDY.with_changes(max_tokens=10)), lambda: cancelled)
    first = next(events)
    assert isinstance(first, TokenEvent)
    sizes = _native_chunks(backend, monkeypatch)
    cancelled = True
    rest = list(events)
    assert sizes == []
    assert isinstance(rest[-1], FinishEvent) and rest[-1].reason is FinishReason.CANCELLED
    assert rest[-1].generated_tokens == 1


def test_long_prompt_is_windowed_to_fit_the_context(backend):
    prompt = [(i * 7919) % 50000 for i in range(700)]
    tokens, finish = run(backend, prompt, GREEDY.with_changes(max_tokens=24))
    assert finish.window_start > 0
    assert finish.prompt_tokens == 700 - finish.window_start
    assert finish.prompt_tokens + finish.generated_tokens <= TINY["n_ctx"]
    assert finish.generated_tokens == 24


def test_probabilities_come_with_each_token(backend):
    tokens, _ = run(backend, PROMPT, GREEDY.with_changes(max_tokens=3), with_probs=True, top_n=4)
    for event in tokens:
        assert len(event.alternatives) == 4
        probs = [alt.probability for alt in event.alternatives]
        assert probs == sorted(probs, reverse=True)
        # Greedy picks the most likely token, and reports its probability.
        assert event.alternatives[0].token_id == event.token_id
        assert event.probability == pytest.approx(probs[0])
        assert 0 < event.probability < 1


def test_next_token_probs_are_the_softmax_at_the_temperature(backend):
    hot = backend.next_token_probs(PROMPT, 1.0, 5)
    expected = softmax(backend.logits(), 1.0)
    best = np.argsort(-expected)[:5]
    assert [alt.token_id for alt in hot] == best.tolist()
    assert [alt.probability for alt in hot] == pytest.approx(expected[best].tolist())
    cold = backend.next_token_probs(PROMPT, 0.1, 5)
    assert cold[0].probability > hot[0].probability
    token_id, text, probability = hot[0]  # unpacks like a tuple
    assert text == gpt2_vocab()[token_id].decode("utf-8", errors="replace")


def test_end_of_text_ends_the_suggestion_and_is_not_shown(tmp_path, backend):
    # Same weights, but the token greedy picks first is renamed <|endoftext|>.
    first = run(backend, PROMPT, GREEDY.with_changes(max_tokens=1))[0][0].token_id
    vocab = gpt2_vocab()
    vocab[first], vocab[END_OF_TEXT_ID] = vocab[END_OF_TEXT_ID], vocab[first]
    path = random_gpt2(tmp_path / "eos.bin", **TINY, seed=3, vocab=vocab)
    renamed = CTransformersBackend.load(path)
    try:
        tokens, finish = run(renamed, PROMPT, GREEDY.with_changes(max_tokens=5))
    finally:
        renamed.close()
    assert tokens == []
    assert finish.reason is FinishReason.EOS and finish.text == ""


def test_empty_prompt_starts_from_end_of_text(backend):
    settings = SamplingSettings(temperature=1.0, max_tokens=4, stop_at=StopAt.LENGTH, seed=5)
    empty_tokens, empty_finish = run(backend, [], settings)
    eos_tokens, _ = run(backend, [END_OF_TEXT_ID], settings)
    assert empty_finish.prompt_tokens == 1
    assert [e.token_id for e in empty_tokens] == [e.token_id for e in eos_tokens]
    assert len(empty_tokens) == 4
