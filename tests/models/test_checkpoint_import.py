"""Importing a checkpoint folder end to end: the converted file computes what the
checkpoint computes (checked here against the tests' own float64 forward, and by the
importer against its numpy forward), a conversion mistake is caught, and a refused,
failed or cancelled import leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.checkpoints import write_checkpoint
from tests.support.gpt2_vocab import END_OF_TEXT_ID, encode
from tests.support.models import phrase_weights, random_weights
from tests.support.reference import dequantized, reference_logits
from writer_app.engine import ggml_writer
from writer_app.engine.ggml import read_vocab, validate_model_file
from writer_app.engine.llama_backend import LlamaCppBackend
from writer_app.engine.protocol import FinishEvent, GenerationRequest, TokenEvent
from writer_app.engine.sampling import SamplingSettings, StopAt
from writer_app.engine.session import TextSession
from writer_app.models.checkpoint import open_checkpoint
from writer_app.models.errors import DiskFull, ImportCancelled, ModelAlreadyInstalled
from writer_app.models.hf_import import (
    ConversionMismatch,
    engine_logits,
    import_checkpoint,
)
from writer_app.models.store import ModelStore

SHAPE = dict(n_layer=2, n_embd=64, n_ctx=48)
N_HEAD = 4
# As tests/engine/test_crosscheck.py: tighter than the importer's own limits, which leave
# room for gpt2-large's depth; these small models stay well inside them.
TOLERANCE = {"f32": 2e-3, "f16": 2e-3} | dict.fromkeys(("q8_0", "q5_1", "q5_0", "q4_1", "q4_0"),
                                                      0.02)
TOKENS = encode("It was a bright cold day in April, and the clocks")


def lazy_weights(untied=False, n_vocab=50257, seed=5):
    lazy = random_weights(seed=seed, untied_head=untied, n_vocab=n_vocab, **SHAPE)
    return {name: lazy[name] for name in lazy}


def store_files(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.models_dir.iterdir()) if store.models_dir.exists() else []


def relative_error(actual, expected) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


VARIANTS = {
    "tied-f32-default": (dict(), None),
    "bare-untied-f16-to-q8_0": (dict(untied=True, prefixed=False, dtype="F16"), "q8_0"),
    "sharded-bf16-buffers-to-f16": (dict(shards=3, dtype="BF16", buffers=True), "f16"),
    "tied-copy-tokenizer-json-to-q4_1": (dict(tied_copy=True, tokenizer="json"), "q4_1"),
    "added-tokens-to-q5_1": (dict(added=True, untied=True), "q5_1"),
    "bare-to-q5_0": (dict(prefixed=False), "q5_0"),
}


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_each_layout_imports_and_computes_what_the_checkpoint_computes(tmp_path, variant):
    options, quant = VARIANTS[variant]
    options = dict(options)
    added = ["<|pad|>", "<|title|>"] if options.pop("added", False) else []
    n_vocab = 50264 if added else 50257
    weights = lazy_weights(untied=options.pop("untied", False), n_vocab=n_vocab)
    folder = write_checkpoint(tmp_path / "my-novel", weights, n_head=N_HEAD,
                              added_tokens=added, **options)
    store = ModelStore(tmp_path / "models")
    phases = []
    model = import_checkpoint(folder, store, quantization=quant,
                              progress=lambda phase, done, total: phases.append(phase))

    quant = quant or "q4_0"  # the catalog's recommendation
    assert model.name == f"my-novel.{quant}.bin" and model.imported
    assert store_files(store) == [model.name]  # nothing else left in the folder
    assert [m.name for m in store.installed()] == [model.name]
    assert model.facts.quantization == quant and model.facts.n_vocab == n_vocab
    assert model.facts.has_lm_head == ("lm_head.weight" in weights)
    assert phases[0] == "converting" and "checking" in phases and phases[-1] == "adding"
    vocab = read_vocab(model.path)
    if added:
        assert vocab[50257:50259] == [b"<|pad|>", b"<|title|>"]
    # The checkpoint's weights as stored (F16/BF16 rounding included), rounded as `quant`.
    stored = dequantized(dict(open_checkpoint(folder)), quant)
    tokens = TOKENS + ([50258, n_vocab - 1] if added else [])
    expected = reference_logits(stored, tokens, n_head=N_HEAD)
    actual = engine_logits(model.path, tokens)
    assert relative_error(actual, expected) < TOLERANCE[quant]


PHRASES = ["The cat sat on the mat.", " Snow fell softly over quiet hills"]


@pytest.mark.parametrize(("dtype", "quant", "added"),
                         [("F32", "q8_0", False), ("BF16", "q4_0", False), ("F16", "f16", True)])
def test_the_imported_models_greedy_text_is_the_reference_forwards(tmp_path, dtype, quant,
                                                                    added):
    weights = phrase_weights(PHRASES, n_ctx=64, n_embd=64, n_layer=2, seed=3)
    added_tokens = ["<|pad|>", "<|title|>"] if added else []
    if added:  # 2 added tokens and the embedding padded to 50264 rows; their logits stay 0
        for name in ("transformer.wte.weight", "lm_head.weight"):
            weights[name] = np.concatenate([weights[name], np.zeros((7, 64), np.float32)])
    folder = write_checkpoint(tmp_path / "phrases", weights, n_head=N_HEAD, dtype=dtype,
                              prefixed=False, added_tokens=added_tokens)
    model = import_checkpoint(folder, ModelStore(tmp_path / "models"), quantization=quant)

    stored = dequantized(dict(open_checkpoint(folder)), quant)
    prompt = "The cat"
    ids = encode(prompt)
    expected: list[int] = []
    while not expected or expected[-1] != END_OF_TEXT_ID:
        logits = reference_logits(stored, ids + expected, n_head=N_HEAD)
        expected.append(int(np.argmax(logits[-1])))
    assert expected[:-1] == encode(" sat on the mat.")  # exact BPE tokens

    session = TextSession.open(model.path)
    try:
        assert session.tokenizer.vocab_size == len(weights["lm_head.weight"])
        settings = SamplingSettings(temperature=0.0, max_tokens=20, stop_at=StopAt.LENGTH)
        events = list(session.generate(1, prompt, settings))
    finally:
        session.close()
    tokens = [e.token_id for e in events if isinstance(e, TokenEvent)]
    assert isinstance(events[-1], FinishEvent)
    assert tokens == expected[:-1]
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == " sat on the mat."

    # The llama.cpp engine runs the same import (converted to GGUF on first use) alike.
    llama = LlamaCppBackend.load(model.path)
    try:
        request = GenerationRequest(2, tuple(ids), settings, preceding_text=prompt)
        events = list(llama.generate(request))
    finally:
        llama.close()
    assert [e.token_id for e in events if isinstance(e, TokenEvent)] == expected[:-1]


def test_a_transposed_weight_is_caught_and_nothing_is_added(tmp_path, monkeypatch):
    folder = write_checkpoint(tmp_path / "ck", lazy_weights(), n_head=N_HEAD)
    real_layout = ggml_writer.to_ggml_layout

    def forgets_one_transpose(name, array):
        if name == "transformer.h.1.attn.c_proj.weight":  # square: the shapes still fit
            return np.ascontiguousarray(array, dtype=np.float32)
        return real_layout(name, array)

    monkeypatch.setattr(ggml_writer, "to_ggml_layout", forgets_one_transpose)
    store = ModelStore(tmp_path / "models")
    for quant in ("f16", "q4_0"):
        with pytest.raises(ConversionMismatch, match=f"where {quant} allows"):
            import_checkpoint(folder, store, quantization=quant)
    assert store_files(store) == []


def test_cancelling_leaves_nothing_behind(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", lazy_weights(), n_head=N_HEAD)
    store = ModelStore(tmp_path / "models")
    asked = []

    def cancel_midway() -> bool:
        asked.append(1)
        return len(asked) > 10

    with pytest.raises(ImportCancelled, match="Importing ck was cancelled"):
        import_checkpoint(folder, store, should_cancel=cancel_midway)
    assert store_files(store) == []


def test_cancelling_during_the_proof_keeps_nothing(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", lazy_weights(), n_head=N_HEAD)
    store = ModelStore(tmp_path / "models")
    phases: list[str] = []
    with pytest.raises(ImportCancelled):
        import_checkpoint(folder, store, progress=lambda phase, *_: phases.append(phase),
                          should_cancel=lambda: "checking" in phases)
    assert phases[-1] == "checking" and store_files(store) == []


def test_a_full_disk_is_refused_before_any_work(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", lazy_weights(), n_head=N_HEAD)
    store = ModelStore(tmp_path / "models", free_space=lambda path: 3_000_000)
    with pytest.raises(DiskFull, match=r"Importing ck as f16 needs 7 MB but only 3 MB is free"):
        import_checkpoint(folder, store, quantization="f16")
    assert store_files(store) == []


def test_an_import_of_the_same_name_is_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", lazy_weights(), n_head=N_HEAD)
    store = ModelStore(tmp_path / "models")
    first = import_checkpoint(folder, store, quantization="q8_0")
    before = first.path.stat().st_mtime_ns
    with pytest.raises(ModelAlreadyInstalled, match="ck.q8_0.bin is already installed"):
        import_checkpoint(folder, store, quantization="q8_0")
    assert first.path.stat().st_mtime_ns == before
    assert store_files(store) == ["ck.q8_0.bin"]


def test_a_width_the_block_types_cannot_split_defaults_to_f16(tmp_path):
    lazy = random_weights(seed=2, n_layer=1, n_embd=48, n_ctx=16)
    folder = write_checkpoint(tmp_path / "narrow", dict(lazy.items()), n_head=4)
    model = import_checkpoint(folder, ModelStore(tmp_path / "models"))
    assert model.name == "narrow.f16.bin"
    assert validate_model_file(model.path).quantization == "f16"
