"""Reading a Hugging Face GPT-2 checkpoint folder: every layout the importer takes gives
the same weights, and every kind of bad input is refused with one sentence."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tests.support.checkpoints import to_bf16_bits, write_checkpoint, write_safetensors
from tests.support.models import random_weights
from writer_app.models.checkpoint import checkpoint_folder, open_checkpoint
from writer_app.models.safetensors_file import InvalidCheckpoint, SafetensorsFile

SHAPE = dict(n_layer=2, n_embd=64, n_ctx=32)
N_HEAD = 4


def weights(untied: bool = False, seed: int = 1):
    lazy = random_weights(seed=seed, untied_head=untied, **SHAPE)
    return {name: lazy[name] for name in lazy}


def as_stored(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F16":
        return array.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return (to_bf16_bits(array).astype(np.uint32) << 16).view(np.float32)
    return array


@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(prefixed=False),
        dict(untied=True),
        dict(tied_copy=True),
        dict(shards=3),
        dict(buffers=True),
        dict(dtype="F16"),
        dict(dtype="BF16", prefixed=False, untied=True, shards=2, buffers=True),
        dict(tokenizer="json"),
    ],
    ids=["plain", "bare-names", "untied", "tied-copy", "sharded", "buffers", "f16",
         "bf16-everything", "tokenizer-json"],
)
def test_every_layout_reads_back_as_the_same_weights(tmp_path, variant):
    untied = variant.pop("untied", False)
    source = weights(untied)
    folder = write_checkpoint(tmp_path / "ck", source, n_head=N_HEAD, **variant)
    checkpoint = open_checkpoint(folder)
    dtype = variant.get("dtype", "F32")
    assert set(checkpoint) == set(source)
    assert ("lm_head.weight" in checkpoint) is untied
    for name, array in source.items():
        read = checkpoint[name]
        assert read.dtype == np.float32 and read.shape == array.shape, name
        np.testing.assert_array_equal(read, as_stored(array, dtype), err_msg=name)
    config = checkpoint.config
    assert (config.n_layer, config.n_embd, config.n_head, config.n_positions,
            config.vocab_size) == (2, 64, 4, 32, 50257)


def test_bf16_keeps_the_top_half_of_each_float(tmp_path):
    values = np.array([1.0, -2.5, 3.14159, 1e-3, 65504.0, -0.0], dtype=np.float32)
    path = write_safetensors(tmp_path / "x.safetensors", {"x": values}, "BF16")
    read = SafetensorsFile(path).read("x")
    expected = (values.view(np.uint32) + 0x7FFF + ((values.view(np.uint32) >> 16) & 1)) >> 16
    np.testing.assert_array_equal(read.view(np.uint32) >> 16, expected)
    np.testing.assert_allclose(read, values, rtol=2**-8)


def test_a_file_in_the_folder_names_the_folder(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", weights(), n_head=N_HEAD)
    for name in ("config.json", "model.safetensors"):
        assert checkpoint_folder(folder / name) == folder
    assert checkpoint_folder(tmp_path / "model.q4_0.bin") is None


# ---- bad input ---------------------------------------------------------------------------


def damage_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def truncate(folder, keep: int = 1000):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-keep])


def corrupt_header(folder):
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:20] = b"not json!!!!"
    path.write_bytes(bytes(data))


def huge_header(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 10**12) + data[8:])


def set_dtype(folder, dtype):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["transformer.wpe.weight"]["dtype"] = dtype
    raw = json.dumps(header).encode().ljust(n)
    path.write_bytes(data[:8] + raw + data[8 + n:])


def rewrite(folder, change):
    """Re-write model.safetensors with `change(tensors)` applied."""
    source = weights()
    change(source)
    write_safetensors(folder / "model.safetensors", source)


BAD = {
    "wrong-model-type": (lambda f: damage_config(f, model_type="llama",
                                                 architectures=["LlamaForCausalLM"]),
                         "holds a llama model; only GPT-2 models"),
    "no-config": (lambda f: (f / "config.json").unlink(), "has no config.json"),
    "bad-json": (lambda f: (f / "config.json").write_text("{\"n_embd\": 64,"),
                 "config.json in ck is not valid JSON"),
    "config-not-object": (lambda f: (f / "config.json").write_text("[1, 2]"),
                          "is not a JSON object"),
    "no-weights": (lambda f: (f / "model.safetensors").unlink(), "has no model.safetensors"),
    "truncated": (truncate, "model.safetensors is truncated"),
    "cut-in-header": (lambda f: truncate(f, keep=(f / "model.safetensors").stat().st_size - 20),
                      "not a complete safetensors file"),
    "corrupt-header": (corrupt_header, "is not a safetensors file"),
    "huge-header": (huge_header, "not a complete safetensors file"),
    "int8-weights": (lambda f: set_dtype(f, "I8"), "stores transformer.wpe.weight as I8"),
    "more-layers-in-config": (lambda f: damage_config(f, n_layer=3),
                              "lacks the tensor transformer.h.2.ln_1.weight and 11 more"),
    "fewer-layers-in-config": (lambda f: damage_config(f, n_layer=1),
                               "holds transformer.h.1.ln_1.weight, which a GPT-2 language "
                               "model with 1 layers does not have"),
    "wider-config": (lambda f: damage_config(f, n_embd=128),
                     "but config.json (n_embd 128"),
    "longer-context-in-config": (lambda f: damage_config(f, n_positions=64),
                                 "transformer.wpe.weight has shape [32, 64]"),
    "bigger-vocab-in-config": (lambda f: damage_config(f, vocab_size=50260),
                               "transformer.wte.weight has shape [50257, 64]"),
    "untied-without-head": (lambda f: damage_config(f, tie_word_embeddings=False),
                            "lacks the tensor lm_head.weight"),
    "bad-head-count": (lambda f: damage_config(f, n_head=5), "not divisible by n_head 5"),
    "missing-field": (lambda f: damage_config(f, n_layer=None), "has no valid n_layer"),
    "other-epsilon": (lambda f: damage_config(f, layer_norm_epsilon=1e-6),
                      "layer_norm_epsilon 1e-06"),
    "relu": (lambda f: damage_config(f, activation_function="relu"), "the relu activation"),
    "odd-mlp": (lambda f: damage_config(f, n_inner=100), "sets n_inner to 100"),
    "a-classifier-head": (lambda f: rewrite(f, lambda w: w.update(
        {"score.weight": np.zeros((2, 64), np.float32)})), "holds score.weight, which a GPT-2"),
    "transposed-shape": (lambda f: rewrite(f, lambda w: w.update(
        {"transformer.h.0.mlp.c_fc.weight": w["transformer.h.0.mlp.c_fc.weight"].T})),
        "transformer.h.0.mlp.c_fc.weight has shape [256, 64]"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_checkpoints_are_refused_in_one_sentence(tmp_path, case):
    damage, words = BAD[case]
    folder = write_checkpoint(tmp_path / "ck", weights(), n_head=N_HEAD)
    damage(folder)
    with pytest.raises(InvalidCheckpoint) as caught:
        open_checkpoint(folder)
    message = str(caught.value)
    assert words in message
    assert "\n" not in message and message.endswith((".", ")"))


def test_a_missing_shard_is_named(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", weights(), n_head=N_HEAD, shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(InvalidCheckpoint, match="lacks the weight shard "
                       "model-00002-of-00002.safetensors"):
        open_checkpoint(folder)


def test_an_index_pointing_to_the_wrong_shard_is_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", weights(), n_head=N_HEAD, shards=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InvalidCheckpoint, match=f"places {name} in model-00002"):
        open_checkpoint(folder)


def test_not_a_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidCheckpoint, match="is not a Hugging Face model folder"):
        open_checkpoint(tmp_path / "notes.txt")


def test_a_lora_adapter_is_explained(tmp_path):
    folder = tmp_path / "my-lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    write_safetensors(folder / "adapter_model.safetensors", {"x": np.zeros(4, np.float32)})
    with pytest.raises(InvalidCheckpoint, match=r"my-lora holds a LoRA adapter, not a whole "
                       r"model; merge it .*merge_and_unload\(\)"):
        open_checkpoint(folder / "adapter_model.safetensors")
