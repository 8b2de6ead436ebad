"""The memory model the context cap rests on: arithmetic, and one real measurement."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from tests.support.models import random_gpt2
from writer_app.engine.ggml import ModelFacts, validate_model_file
from writer_app.engine.memory import (
    CONTEXT_STEP,
    MIB,
    MIN_CONTEXT,
    app_resident_bytes,
    context_bytes_per_token,
    context_for_budget,
    engine_resident_bytes,
    loads_beside,
)
from writer_app.engine.process import EngineClient
from writer_app.engine.protocol import GenerationRequest
from writer_app.engine.sampling import SamplingSettings, StopAt

BYTE_VOCAB = [bytes([b]) for b in range(256)] + [b"<|endoftext|>"]


def facts_like(
    n_layer: int, n_embd: int, weight_mib: float, n_ctx: int = 1024, file_mib: float = 0.0
) -> ModelFacts:
    return ModelFacts(
        path=Path("model.bin"), n_vocab=50257, n_ctx=n_ctx, n_embd=n_embd, n_head=20,
        n_layer=n_layer, ftype=2, quantization="q4_0", has_lm_head=False,
        parameter_count=0, file_size=int(file_mib * MIB), eos_token_id=50256,
        weight_bytes=int(weight_mib * MIB),
    )


# Weights as gpt2.cc holds them, and the file's size (llama.cpp holds that), for the
# q4_0 files the benchmark measures.
GPT2 = facts_like(12, 768, 90.4, file_mib=70.2)
GPT2_LARGE = facts_like(36, 1280, 456.0, file_mib=422.0)


def test_without_a_budget_or_with_room_the_full_context_is_used():
    assert context_for_budget(GPT2_LARGE, None) == 1024
    assert context_for_budget(GPT2, 10**9) == 1024
    assert context_for_budget(GPT2_LARGE, 4 * 10**9) == 1024


def test_gpt2_large_is_capped_to_fit_one_gigabyte():
    cap = context_for_budget(GPT2_LARGE, 10**9)
    assert MIN_CONTEXT <= cap < 1024 and cap % CONTEXT_STEP == 0
    assert app_resident_bytes(GPT2_LARGE, cap) <= 10**9
    # ...and it is the longest such context, to the step.
    assert app_resident_bytes(GPT2_LARGE, cap + CONTEXT_STEP) > 10**9


def test_the_cap_grows_with_the_budget_and_never_drops_below_the_minimum():
    caps = [context_for_budget(GPT2_LARGE, mb * 10**6) for mb in range(100, 1400, 50)]
    assert caps == sorted(caps)
    assert caps[0] == MIN_CONTEXT and caps[-1] == 1024


@pytest.mark.parametrize("engine", ["ctransformers", "llama.cpp"])
def test_gpt2_and_gpt2_large_never_load_beside_each_other_within_one_gigabyte(engine):
    def in_use(facts: ModelFacts) -> int:
        return engine_resident_bytes(facts, context_for_budget(facts, 10**9, engine), engine)

    assert not loads_beside(in_use(GPT2), GPT2_LARGE, 10**9, engine)
    assert not loads_beside(in_use(GPT2_LARGE), GPT2, 10**9, engine)
    # Two gpt2 fit (an engine or threads change reloads it beside the one in use)...
    assert loads_beside(in_use(GPT2), GPT2, 10**9, engine)
    # ...and anything does with no budget, or with no model loaded yet.
    assert loads_beside(in_use(GPT2_LARGE), GPT2_LARGE, None, engine)
    assert loads_beside(None, GPT2_LARGE, 10**9, engine)


def test_loading_beside_is_judged_on_the_sum_of_both():
    in_use = engine_resident_bytes(GPT2, 1024)
    whole = in_use + app_resident_bytes(GPT2, 1024)
    assert loads_beside(in_use, GPT2, whole)
    assert not loads_beside(in_use, GPT2, whole - 1)


def test_a_context_token_costs_what_the_cache_and_gpt2s_v_copy_take():
    # f32 key and value per layer and width (8 bytes), plus the f32 transposed V (4).
    assert context_bytes_per_token(GPT2) == 12 * 12 * 768
    assert context_bytes_per_token(dataclasses.replace(GPT2, n_layer=24)) == 2 * 12 * 12 * 768


@pytest.mark.skipif(sys.platform != "linux", reason="reads the engine's memory from /proc")
def test_the_engine_grows_by_the_modelled_bytes_per_context_token(tmp_path):
    """Measured on the real engine process: a gpt2-deep, narrow model, 32 then 480
    tokens of context. Resident memory is the one figure this model exists to predict."""
    path = random_gpt2(
        tmp_path / "deep.bin", n_layer=12, n_embd=512, n_head=8, n_ctx=512, ftype="q4_0",
        vocab=BYTE_VOCAB, seed=5,
    )
    facts = validate_model_file(path)
    settings = SamplingSettings(temperature=0.0, max_tokens=1, stop_at=StopAt.LENGTH)
    prompt = [(i * 37) % 256 for i in range(500)]
    with EngineClient() as client:
        client.load(path)
        list(client.generate(GenerationRequest(1, tuple(prompt[:32]), settings)))
        before = _resident_bytes(client.pid)
        list(client.generate(GenerationRequest(2, tuple(prompt[:480]), settings)))
        grown = _resident_bytes(client.pid) - before
    expected = 448 * context_bytes_per_token(facts)
    # Deterministic here (31.67 MiB grown against 31.50 modelled, every run), so the
    # claim in benchmarks/README.md ("within 2%") is what this asserts.
    assert abs(grown - expected) <= 0.02 * expected, (grown / MIB, expected / MIB)


def _resident_bytes(pid: int | None) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# ---- llama.cpp: the file's tensors once, f16 cache for two sequences, rounded to 256 ----


def test_llama_cpp_holds_two_sequences_of_f16_cache_rounded_to_256():
    from writer_app.engine.memory import FOOTPRINTS, engine_resident_bytes

    llama = FOOTPRINTS["llama.cpp"]
    assert (llama.sequences, llama.context_granule) == (2, 256)
    assert context_bytes_per_token(GPT2, "llama.cpp") == 4 * 12 * 768
    large = dataclasses.replace(GPT2_LARGE, file_size=422 * MIB)
    # Each sequence is rounded up: 2 x 416 tokens are held as 2 x 512, 2 x 640 as 2 x 768.
    assert engine_resident_bytes(large, 416, "llama.cpp") == engine_resident_bytes(
        large, 512, "llama.cpp"
    )
    assert engine_resident_bytes(large, 640, "llama.cpp") == engine_resident_bytes(
        large, 768, "llama.cpp"
    ) > engine_resident_bytes(large, 512, "llama.cpp")
    assert engine_resident_bytes(large, 512, "llama.cpp") - engine_resident_bytes(
        large, 256, "llama.cpp"
    ) == 512 * 4 * 36 * 1280


def test_the_budget_gives_llama_cpp_the_context_its_own_cache_allows():
    large = dataclasses.replace(GPT2_LARGE, file_size=422 * MIB)
    on_llama = context_for_budget(large, 10**9, "llama.cpp")
    # 640 would be held as 768 a sequence, which does not fit.
    assert on_llama == 512 > context_for_budget(large, 10**9) == 416
    assert app_resident_bytes(large, on_llama, "llama.cpp") <= 10**9
    assert app_resident_bytes(large, on_llama + CONTEXT_STEP, "llama.cpp") > 10**9


@pytest.mark.skipif(sys.platform != "linux", reason="reads the engine's memory from /proc")
def test_the_llama_cpp_engine_holds_what_the_model_says(tmp_path):
    """Measured on the real engine process, both sequences used: resident memory after
    load and prewarms, at two contexts, against engine_resident_bytes."""
    from writer_app.engine.memory import engine_resident_bytes

    path = random_gpt2(
        tmp_path / "deep.bin", n_layer=12, n_embd=512, n_head=8, n_ctx=1024, ftype="q4_0",
        seed=5,
    )
    facts = validate_model_file(path)
    prompt = [(i * 37) % 50000 for i in range(1000)]
    measured = {}
    for context in (512, 1024):
        with EngineClient() as client:
            client.load(path, context_length=context, engine="llama.cpp")
            client.prewarm(prompt[: context - 16], max_tokens=8, upcoming_ids=prompt[8 : context - 16])
            measured[context] = _resident_bytes(client.pid)
    modelled = {c: engine_resident_bytes(facts, c, "llama.cpp") for c in measured}
    grown, expected = measured[1024] - measured[512], modelled[1024] - modelled[512]
    # The engine process's own allocations move by up to ~10 MiB between runs (seen: 14.5
    # and 24.1 MiB grown against 24 modelled), so the growth is checked to that.
    assert abs(grown - expected) <= 12 * MIB, (grown / MIB, expected / MIB)
    # The model errs on the safe side, a little (seen: 0-13 MiB above; once, with base
    # 96 MiB, 0.3 MiB below, so it is 100 now).
    for context, resident in measured.items():
        assert 0 <= modelled[context] - resident <= 20 * MIB, (context, resident / MIB)
