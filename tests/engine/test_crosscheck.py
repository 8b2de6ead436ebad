"""Files we write, loaded by the real ctransformers, compute what an independent numpy GPT-2
computes on the same weights; phrase models continue their phrases through ctransformers.

Tolerances are relative to the largest reference logit. f32/f16 differ only by float32
rounding and ggml's fp16 GELU table (measured <= 5e-4 of the logit scale). Quantized types
are compared with the forward on the dequantized weights; ggml additionally rounds the
activations to 8 bits inside each matrix product (measured <= 0.75% of the logit scale),
well below the effect of the weight quantization itself (11% for q4_0, 1% for q8_0).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.gpt2_vocab import END_OF_TEXT_ID, encode, gpt2_vocab
from tests.support.models import (
    PhraseConflict,
    phrase_model,
    phrase_weights,
    random_gpt2,
    random_weights,
)
from tests.support.raw_ctransformers import RawModel
from tests.support.reference import dequantized, reference_logits

ALL_TYPES = ["f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
SHAPE = dict(n_layer=2, n_embd=64, n_ctx=40)
N_HEAD = 4
TOLERANCE = {"f32": 2e-3, "f16": 2e-3} | dict.fromkeys(ALL_TYPES[2:], 0.02)
# The whole context, with low, high and repeated ids (end-of-text included).
TOKENS = [int(t) for t in np.random.default_rng(11).integers(0, 50257, 40)]
TOKENS[5] = TOKENS[20] = END_OF_TEXT_ID

PHRASES = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there lived an old king",
    " Ghost text appears after your cursor",
]


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """One small random model per weight type; f16 and q4_1 with an untied head."""
    folder = tmp_path_factory.mktemp("crosscheck")
    return {
        ftype: random_gpt2(
            folder / f"{ftype}.bin",
            n_head=N_HEAD,
            ftype=ftype,
            seed=1,
            untied_head=ftype in ("f16", "q4_1"),
            **SHAPE,
        )
        for ftype in ALL_TYPES
    }


def stored_weights(ftype: str) -> dict[str, np.ndarray]:
    weights = random_weights(seed=1, untied_head=ftype in ("f16", "q4_1"), **SHAPE)
    return dequantized(weights, ftype)


@pytest.mark.parametrize("ftype", ALL_TYPES)
def test_ctransformers_matches_the_reference_forward(model_files, ftype):
    raw = RawModel(model_files[ftype]).logits(TOKENS)
    expected = reference_logits(stored_weights(ftype), TOKENS, n_head=N_HEAD)
    assert raw.shape == expected.shape == (len(TOKENS), 50257)
    assert relative_error(raw, expected) < TOLERANCE[ftype]


def test_the_quantized_tolerance_still_sees_weight_rounding(model_files):
    """Control: q4_0 logits are clearly not those of the unquantized weights, so the
    tolerance above would catch a file whose quantized data were misread."""
    raw = RawModel(model_files["q4_0"]).logits(TOKENS)
    exact = reference_logits(stored_weights("f32"), TOKENS, n_head=N_HEAD)
    assert relative_error(raw, exact) > 3 * TOLERANCE["q4_0"]


def test_the_f32_tolerance_sees_a_single_wrong_bias(model_files):
    weights = stored_weights("f32")
    weights["transformer.h.1.mlp.c_proj.bias"] = weights["transformer.h.1.mlp.c_proj.bias"] * 0
    raw = RawModel(model_files["f32"]).logits(TOKENS)
    assert relative_error(raw, reference_logits(weights, TOKENS, n_head=N_HEAD)) > 5e-3


def test_batched_evaluation_keeps_the_cache_consistent(model_files):
    raw = RawModel(model_files["f32"]).logits(TOKENS, batch_size=7)
    expected = reference_logits(stored_weights("f32"), TOKENS, n_head=N_HEAD)
    chunk_ends = [min(i + 7, len(TOKENS)) - 1 for i in range(0, len(TOKENS), 7)]
    assert relative_error(raw, expected[chunk_ends]) < TOLERANCE["f32"]


# --- phrase models -------------------------------------------------------------------


def reference_greedy(weights, tokens: list[int], steps: int) -> list[int]:
    tokens = list(tokens)
    for _ in range(steps):
        tokens.append(int(np.argmax(reference_logits(weights, tokens, n_head=N_HEAD)[-1])))
    return tokens[-steps:]


def test_phrase_weights_continue_every_prefix_in_the_reference_forward():
    weights = phrase_weights(PHRASES, n_ctx=64, n_embd=64, n_layer=2, seed=3)
    for phrase in PHRASES:
        tokens = encode(phrase)
        # Causal: position i's logits are those of the prefix tokens[:i + 1], so one
        # forward pass shows the greedy choice after every prefix of the phrase.
        logits = reference_logits(weights, tokens, n_head=N_HEAD)
        assert logits.argmax(axis=1).tolist() == tokens[1:] + [END_OF_TEXT_ID]
    tokens = encode(PHRASES[1])
    assert reference_greedy(weights, tokens[:2], len(tokens) - 1) == tokens[2:] + [END_OF_TEXT_ID]


@pytest.mark.parametrize("ftype", ALL_TYPES)
def test_phrase_model_continues_every_prefix_through_ctransformers(tmp_path, ftype):
    path = phrase_model(tmp_path / "phrases.bin", PHRASES, ftype=ftype, n_ctx=64)
    model = RawModel(path)
    for phrase in PHRASES:
        tokens = encode(phrase)
        for cut in range(1, len(tokens) + 1):
            rest = tokens[cut:] + [END_OF_TEXT_ID]
            assert model.greedy(tokens[:cut], len(rest)) == rest, (phrase, cut)


def test_phrase_model_is_confident_enough_for_sampling(tmp_path):
    path = phrase_model(tmp_path / "phrases.bin", PHRASES[:1], ftype="q4_0", n_ctx=64)
    logits = RawModel(path).logits(encode(PHRASES[0]))
    top_two = np.sort(logits, axis=1)[:, -2:]
    assert np.all(top_two[:, 1] - top_two[:, 0] > 12)


def test_conflicting_phrases_are_rejected_by_name():
    with pytest.raises(
        PhraseConflict,
        match=r"token b' the' is followed by b' cat' in 'see the cat' "
        r"but by b' dog' in 'pet the dog'",
    ):
        phrase_weights(["see the cat", "pet the dog"], n_ctx=16, n_embd=64, n_layer=1, seed=0)


def test_a_phrase_repeating_a_token_differently_is_rejected():
    with pytest.raises(PhraseConflict, match="continue each token one way"):
        phrase_weights(["I saw a cat and a dog"], n_ctx=16, n_embd=64, n_layer=1, seed=0)


def test_shared_continuations_are_fine():
    weights = phrase_weights(["my old dog", "an old dog"], n_ctx=16, n_embd=64, n_layer=1, seed=0)
    assert reference_greedy(weights, encode("an old"), 2) == encode(" dog") + [END_OF_TEXT_ID]


def test_empty_phrase_is_rejected():
    with pytest.raises(PhraseConflict, match="must not be empty"):
        phrase_weights([""], n_ctx=16, n_embd=64, n_layer=1, seed=0)


def test_too_many_tokens_for_the_width_is_refused(tmp_path):
    vocab = gpt2_vocab()
    words = [t.decode() for t in vocab[1000:5000] if t[:1] == b" " and t[1:].isalpha()]
    text = "".join(words[:200])  # 200 distinct one-token words into 8 dimensions
    assert len(encode(text)) == 200
    with pytest.raises(PhraseConflict, match="use a larger n_embd"):
        phrase_model(tmp_path / "x.bin", [text], n_embd=8, n_head=2, n_ctx=256)
    assert not (tmp_path / "x.bin").exists()
