"""GGML -> GGUF conversion: byte-copied tensors under llama.cpp's names, a GPT-2 tokenizer
from the file's vocabulary, cached beside the model, atomic and cancellable."""

from __future__ import annotations

import os

import gguf
import pytest

from tests.support.foreign_gguf import foreign_gguf
from tests.support.gpt2_vocab import END_OF_TEXT_ID, GPT2_BPE_DIR, gpt2_vocab
from tests.support.models import random_gpt2
from writer_app.engine import gguf_convert
from writer_app.engine.ggml import InvalidModelFile, read_layout
from writer_app.engine.gguf_check import gguf_name, read_gguf_layout, token_bytes
from writer_app.engine.gguf_convert import (
    ConversionCancelled,
    NotEnoughSpace,
    converted_path,
    derive_merges,
    gguf_for,
)

TINY = dict(n_layer=2, n_embd=64, n_head=4, n_ctx=32)


def folder_names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("ftype", "untied"),
    [("f32", False), ("f16", True), ("q4_0", False), ("q5_1", True), ("q8_0", False)],
)
def test_converted_tensors_are_byte_equal_to_the_ggml_source(tmp_path, ftype, untied):
    source = random_gpt2(tmp_path / "m.bin", ftype=ftype, seed=2, untied_head=untied, **TINY)
    ggml = read_layout(source)
    converted = read_gguf_layout(gguf_for(source))
    assert len(converted.tensors) == len(ggml.tensors)
    raw_source, raw_converted = source.read_bytes(), converted.facts.path.read_bytes()
    for name, entry in ggml.tensors.items():
        tensor = converted.tensors[gguf_name(name)]
        assert tensor.ne == entry.ne and tensor.weight_type is entry.weight_type
        assert (
            raw_converted[tensor.offset : tensor.offset + tensor.nbytes]
            == raw_source[entry.offset : entry.offset + entry.nbytes]
        ), name
    assert converted.vocab == ggml.vocab
    facts, source_facts = converted.facts, ggml.facts
    for field in (
        "n_vocab",
        "n_ctx",
        "n_embd",
        "n_head",
        "n_layer",
        "quantization",
        "has_lm_head",
        "parameter_count",
        "eos_token_id",
    ):
        assert getattr(facts, field) == getattr(source_facts, field), field


def test_the_file_reads_back_through_llama_cpps_own_reader(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", ftype="q4_0", seed=2, **TINY)
    reader = gguf.GGUFReader(gguf_for(source))
    fields = reader.fields

    def scalar(key):
        return fields[key].contents()

    assert scalar("general.architecture") == "gpt2"
    assert scalar("gpt2.block_count") == 2 and scalar("gpt2.embedding_length") == 64
    assert scalar("gpt2.context_length") == 32 and scalar("gpt2.attention.head_count") == 4
    assert scalar("gpt2.feed_forward_length") == 256
    assert scalar("tokenizer.ggml.model") == "gpt2"
    assert scalar("tokenizer.ggml.eos_token_id") == END_OF_TEXT_ID
    tokens = scalar("tokenizer.ggml.tokens")
    assert tokens[END_OF_TEXT_ID] == "<|endoftext|>"
    assert [token_bytes(t) for t in tokens[:END_OF_TEXT_ID]] == gpt2_vocab()[:END_OF_TEXT_ID]
    types = scalar("tokenizer.ggml.token_type")
    assert types[END_OF_TEXT_ID] == 3 and set(types[:END_OF_TEXT_ID]) == {4}
    assert scalar("writer_app.raw_pieces") is True
    wte = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert wte.tensor_type == gguf.GGMLQuantizationType.Q4_0
    assert list(wte.shape) == [64, 50257]


def test_merges_derived_from_the_vocabulary_are_gpt2s_own():
    lines = (GPT2_BPE_DIR / "vocab.bpe").read_text("utf-8").splitlines()
    expected = [line for line in lines[1:] if line]
    assert derive_merges(gpt2_vocab()) == expected


def test_a_vocabulary_not_built_by_bpe_gets_only_the_merges_it_has():
    vocab = [bytes([b]) for b in range(256)] + [b"ab", b"xyz", b"abab", b"<|endoftext|>"]
    # "xyz" has no two-part history ("xy" and "yz" are not tokens): no merge for it.
    assert derive_merges(vocab) == ["a b", "ab ab"]


# ---- the cache ---------------------------------------------------------------------------


def test_a_second_call_reuses_the_cached_file(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    first = gguf_for(source)
    stamp = first.stat()
    second = gguf_for(source)
    assert second == first == converted_path(source)
    assert (second.stat().st_ino, second.stat().st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    assert folder_names(tmp_path) == ["m.bin", first.name]


def test_a_changed_source_is_converted_again_and_the_old_copy_removed(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    old = gguf_for(source)
    random_gpt2(source, seed=5, **TINY)  # same size, new weights
    new = gguf_for(source)
    assert new != old and not old.exists()
    assert folder_names(tmp_path) == ["m.bin", new.name]
    data = new.read_bytes()
    entry = read_gguf_layout(new).tensors["blk.0.ffn_up.weight"]
    source_entry = read_layout(source).tensors["model/h0/mlp/c_fc/w"]
    assert (
        data[entry.offset : entry.offset + entry.nbytes]
        == source.read_bytes()[source_entry.offset : source_entry.offset + source_entry.nbytes]
    )


def test_a_damaged_cached_file_is_rebuilt(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    target = gguf_for(source)
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])
    assert gguf_for(source).read_bytes() == good


def test_the_key_follows_the_modification_time(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    before = converted_path(source)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert converted_path(source) != before


# ---- failures leave nothing behind ---------------------------------------------------------


def _file_backed_resident_bytes() -> int:
    """This process's resident pages that belong to mapped files (RssFile)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_converting_leaves_the_source_out_of_the_apps_memory(tmp_path, monkeypatch):
    """The app converts in its own process (the loader's thread) on first use, beside the
    engine that still holds the model in use: the source is read a tensor at a time, not
    mapped, so its pages never count as the app's (gpt2-large: 450 MB of them)."""
    source = random_gpt2(tmp_path / "m.bin", ftype="f32", seed=3, n_layer=2, n_embd=128,
                         n_head=4, n_ctx=32)
    size = source.stat().st_size
    baseline = _file_backed_resident_bytes()
    growth: list[int] = []
    real_write = gguf.GGUFWriter.write_tensor_data

    def write_and_measure(writer, tensor, *args, **kwargs):
        real_write(writer, tensor, *args, **kwargs)
        growth.append(_file_backed_resident_bytes() - baseline)

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", write_and_measure)
    gguf_for(source)
    assert len(growth) == len(read_layout(source).tensors)
    assert max(growth) < size / 4, f"{max(growth)} bytes of a {size}-byte source"


def test_a_source_cut_short_while_converting_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    source = random_gpt2(tmp_path / "m.bin", ftype="q8_0", seed=4, **TINY)
    real_check_space = gguf_convert._check_space

    def check_space_then_cut_the_source(folder, needed):  # after it was read and planned
        real_check_space(folder, needed)
        os.truncate(source, source.stat().st_size - 100)

    monkeypatch.setattr(gguf_convert, "_check_space", check_space_then_cut_the_source)
    with pytest.raises(InvalidModelFile, match="ends inside a tensor's data"):
        gguf_for(source)
    assert folder_names(tmp_path) == ["m.bin"]


def test_a_cancel_leaves_no_file(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    calls = []

    def cancel_midway() -> bool:
        calls.append(1)
        return len(calls) > 5  # after five tensors have been written

    with pytest.raises(ConversionCancelled):
        gguf_for(source, cancel_midway)
    assert len(calls) == 6
    assert folder_names(tmp_path) == ["m.bin"]


def test_too_little_space_is_refused_before_writing(tmp_path, monkeypatch):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    usage = gguf_convert.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        gguf_convert.shutil, "disk_usage", lambda _: usage._replace(free=10 * 1024 * 1024)
    )
    with pytest.raises(NotEnoughSpace, match=r"needs \d+ MiB free in .*, but only 10 MiB"):
        gguf_for(source)
    assert folder_names(tmp_path) == ["m.bin"]


def test_a_bad_source_is_refused_before_writing(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    source.write_bytes(source.read_bytes()[:-100])
    with pytest.raises(InvalidModelFile, match="truncated"):
        gguf_for(source)
    assert folder_names(tmp_path) == ["m.bin"]


def test_a_failing_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)

    def broken(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", broken)
    with pytest.raises(OSError, match="disk full"):
        gguf_for(source)
    assert folder_names(tmp_path) == ["m.bin"]


# ---- GGUF files from elsewhere ---------------------------------------------------------------


def test_a_foreign_gguf_is_rewritten_with_its_tensors_byte_copied(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", ftype="q4_1", seed=2, **TINY)
    imported = foreign_gguf(source, tmp_path / "imported.gguf")
    original = read_gguf_layout(imported)
    assert "writer_app.raw_pieces" not in original.metadata
    rewritten = gguf_for(imported)
    assert rewritten == converted_path(imported) != imported
    copy = read_gguf_layout(rewritten)
    assert copy.metadata["writer_app.raw_pieces"] is True
    assert copy.vocab == original.vocab == gpt2_vocab()
    old, new = imported.read_bytes(), rewritten.read_bytes()
    for name, tensor in original.tensors.items():
        moved = copy.tensors[name]
        assert moved.ne == tensor.ne and moved.weight_type is tensor.weight_type
        assert (
            new[moved.offset : moved.offset + moved.nbytes]
            == old[tensor.offset : tensor.offset + tensor.nbytes]
        ), name


def test_a_gguf_this_app_wrote_is_used_as_it_is(tmp_path):
    source = random_gpt2(tmp_path / "m.bin", seed=2, **TINY)
    ours = gguf_for(source)
    assert gguf_for(ours) == ours
    assert folder_names(tmp_path) == ["m.bin", ours.name]


def test_a_bad_gguf_is_refused_before_writing(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 20)
    with pytest.raises(InvalidModelFile):
        gguf_for(bad)
    assert folder_names(tmp_path) == ["bad.gguf"]
