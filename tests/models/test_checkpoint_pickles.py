"""pytorch_model.bin never runs code: the importer refuses pickled weights without
opening them and says how to save safetensors instead. The pickles here are hostile
(unpickling creates a file) in both of torch's formats, zip and legacy raw."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import pytest

from tests.support.checkpoints import write_tokenizer
from writer_app.cli import main
from writer_app.models.hf_import import import_checkpoint
from writer_app.models.safetensors_file import InvalidCheckpoint
from writer_app.models.store import ModelStore


class CreatesAFile:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_pickle(marker) -> bytes:
    return pickle.dumps({"transformer.wte.weight": CreatesAFile(marker)}, protocol=2)


def legacy_raw(marker) -> bytes:
    """torch's pre-1.6 layout: a magic-number pickle, then more pickles one after another."""
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"little_endian": True}, protocol=2), hostile_pickle(marker)]
    return b"".join(parts)


def zip_format(marker) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", hostile_pickle(marker))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def test_the_payloads_are_really_hostile(tmp_path):
    """Control: unpickling them does create the file, so the tests below mean something."""
    for make in (legacy_raw, zip_format):
        marker = tmp_path / f"proof-{make.__name__}"
        data = make(marker)
        if data.startswith(b"PK"):
            data = zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")
        else:
            stream = io.BytesIO(data)
            for _ in range(3):
                pickle.load(stream)
            data = stream.read()
        pickle.loads(data)  # noqa: S301 - the point of this control
        assert marker.exists()


def pickled_checkpoint(tmp_path, make, filename="pytorch_model.bin"):
    folder = tmp_path / "old-finetune"
    folder.mkdir()
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 64,
              "n_layer": 2, "n_head": 4, "n_positions": 32, "vocab_size": 50257}
    (folder / "config.json").write_text(json.dumps(config))
    write_tokenizer(folder, "files")
    marker = tmp_path / "pwned"
    if filename.endswith(".index.json"):
        (folder / filename).write_text(json.dumps(
            {"weight_map": {"transformer.wte.weight": "pytorch_model-00001-of-00001.bin"}}))
        (folder / "pytorch_model-00001-of-00001.bin").write_bytes(make(marker))
    else:
        (folder / filename).write_bytes(make(marker))
    return folder, marker


@pytest.mark.parametrize("make", [legacy_raw, zip_format])
@pytest.mark.parametrize("filename", ["pytorch_model.bin", "pytorch_model.bin.index.json"])
def test_a_pickled_checkpoint_is_refused_without_running_it(tmp_path, make, filename):
    folder, marker = pickled_checkpoint(tmp_path, make, filename)
    store = ModelStore(tmp_path / "models")
    with pytest.raises(InvalidCheckpoint) as caught:
        import_checkpoint(folder, store)
    assert str(caught.value) == (
        f"{filename} is a pickle, which can run code when loaded, so writer-app does not "
        "read it; re-save the model as safetensors with model.save_pretrained(DIR, "
        "safe_serialization=True) and import that folder.")
    assert not marker.exists()
    assert not store.models_dir.exists() or not any(store.models_dir.iterdir())


@pytest.mark.parametrize("make", [legacy_raw, zip_format])
def test_the_cli_refuses_a_pickle_in_one_line_even_named_directly(tmp_path, capsys, make):
    folder, marker = pickled_checkpoint(tmp_path, make)
    assert main(["models", "import", str(folder / "pytorch_model.bin")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "safe_serialization=True" in err[0]
    assert not marker.exists()
