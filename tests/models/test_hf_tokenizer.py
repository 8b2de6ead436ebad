"""A checkpoint's tokenizer files become the GGML vocabulary: GPT-2's byte-level BPE in
either format, added tokens kept (and handled by the app's tokenizer), anything else
refused in one sentence."""

from __future__ import annotations

import json

import pytest

from tests.support.checkpoints import write_tokenizer
from tests.support.gpt2_vocab import encode, gpt2_vocab
from writer_app.engine.tokenizer import Tokenizer
from writer_app.models.hf_tokenizer import read_vocabulary
from writer_app.models.safetensors_file import InvalidCheckpoint

ADDED = ["<|pad|>", "<|title|>"]


@pytest.mark.parametrize("kind", ["files", "json"])
def test_gpt2s_tokenizer_in_either_format_is_gpt2s_vocabulary(tmp_path, kind):
    write_tokenizer(tmp_path, kind)
    assert read_vocabulary(tmp_path, 50257) == gpt2_vocab()


@pytest.mark.parametrize("kind", ["files", "json"])
def test_added_tokens_are_kept_and_the_embedding_padding_gets_placeholders(tmp_path, kind):
    write_tokenizer(tmp_path, kind, ADDED)
    vocab = read_vocabulary(tmp_path, 50264)  # vocab_size padded to a multiple of 8
    assert vocab[:50257] == gpt2_vocab()
    assert vocab[50257:50259] == [b"<|pad|>", b"<|title|>"]
    assert vocab[50259:] == [f"<|unused_{i}|>".encode() for i in range(50259, 50264)]


def test_the_apps_tokenizer_handles_added_tokens_like_end_of_text(tmp_path):
    write_tokenizer(tmp_path, "files", ADDED)
    tokenizer = Tokenizer.from_vocab(read_vocabulary(tmp_path, 50264))
    text = "Chapter One <|title|> The morning was grey."
    assert tokenizer.encode(text) == encode(text)  # typed text is plain text, exact BPE
    assert tokenizer.decode([50258]) == "<|title|>"
    assert tokenizer.decode(encode(" Once") + [50257]) == " Once<|pad|>"
    assert tokenizer.eos_id == 50256 and tokenizer.vocab_size == 50264


def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
    write_tokenizer(tmp_path, "files", ADDED)
    with pytest.raises(InvalidCheckpoint, match="has 50,259 tokens but the model's embedding "
                       r"only 50,257 \(config.json vocab_size\)"):
        read_vocabulary(tmp_path, 50257)


def edit_json(path, change):
    data = json.loads(path.read_text("utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), "utf-8")


def swap_merges(folder):
    lines = (folder / "merges.txt").read_text("utf-8").splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", "utf-8")


def sentencepiece_json(folder):
    def change(data):
        data["model"] = {"type": "Unigram", "vocab": [["▁the", -1.0]]}
        data["pre_tokenizer"] = {"type": "Metaspace"}
    edit_json(folder / "tokenizer.json", change)


def sentencepiece_pieces(folder):
    edit_json(folder / "vocab.json", lambda v: v.update({"▁the": v.pop("Ġthe")}))


def unmerged_token(folder):
    lines = (folder / "merges.txt").read_text("utf-8").splitlines()
    (folder / "merges.txt").write_text("\n".join(lines[:-1]) + "\n", "utf-8")


REFUSED = {
    "unigram": ("json", sentencepiece_json, "its model is Unigram with a Metaspace pre-tokenizer"),
    "sentencepiece-pieces": ("files", sentencepiece_pieces,
                             "uses '▁', outside its byte alphabet"),
    "merges-out-of-order": ("files", swap_merges, "out of id order"),
    "token-no-merge-makes": ("files", unmerged_token, "no merge makes its token"),
    "other-class": ("files", lambda f: edit_json(
        f / "tokenizer_config.json", lambda c: c.update(tokenizer_class="BertTokenizer")),
        "it is a BertTokenizer"),
    "no-byte-tokens": ("files", lambda f: edit_json(f / "vocab.json", lambda v: v.pop("!")),
                       "lacks 1 of the 256 byte tokens"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_different_bpe_is_refused_in_one_sentence(tmp_path, case):
    kind, damage, words = REFUSED[case]
    folder = tmp_path / "ck"
    folder.mkdir()
    write_tokenizer(folder, kind)
    damage(folder)
    with pytest.raises(InvalidCheckpoint) as caught:
        read_vocabulary(folder, 50257)
    message = str(caught.value)
    assert words in message
    assert message.startswith("ck's tokenizer") or "ck" in message
    assert "\n" not in message


def test_a_trainer_checkpoint_without_tokenizer_files_gets_gpt2s(tmp_path):
    assert read_vocabulary(tmp_path, 50257) == gpt2_vocab()


def test_without_tokenizer_files_added_rows_cannot_be_guessed(tmp_path):
    with pytest.raises(InvalidCheckpoint, match=r"tokenizer.save_pretrained\(DIR\)"):
        read_vocabulary(tmp_path, 50260)
    (tmp_path / "vocab.json").write_text("{}")  # half a tokenizer is not GPT-2's either
    with pytest.raises(InvalidCheckpoint, match="has no tokenizer"):
        read_vocabulary(tmp_path, 50257)
