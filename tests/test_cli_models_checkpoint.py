"""`writer-app models import DIR [--quant Q]`: a Hugging Face checkpoint folder becomes an
installed model that `models list --json` shows and `--model` accepts; bad input is one
line on stderr, exit code 2, and nothing added."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.checkpoints import write_checkpoint
from tests.support.models import phrase_weights, random_weights
from writer_app.cli import main

PHRASE = "The cat sat on the mat."
N_HEAD = 4


@pytest.fixture(scope="module")
def phrase_tensors():
    return phrase_weights([PHRASE], n_ctx=64, n_embd=64, n_layer=2, seed=3)


def models_in(app_home) -> list[str]:
    folder = app_home.models_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_import_a_folder_list_it_and_write_with_it(tmp_path, capsys, app_home, phrase_tensors):
    folder = write_checkpoint(tmp_path / "austen-ft", phrase_tensors, n_head=N_HEAD)
    assert main(["models", "import", str(folder), "--quant", "q8_0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Imported austen-ft.q8_0.bin (q8_0, ")
    assert "use it with --model austen-ft.q8_0.bin" in captured.out
    bar = captured.err.splitlines()
    assert bar[0].startswith("austen-ft [") and "converting" in bar[0]
    assert "100% converting" in captured.err and bar[-1].endswith("100% adding")

    assert main(["models", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    row = rows["austen-ft.q8_0.bin"]
    assert row["imported"] is True and row["status"] == "installed"
    assert row["path"] == str(app_home.models_dir / "austen-ft.q8_0.bin")
    assert row["quantization"] == "q8_0"

    assert main(["complete", "--model", "austen-ft.q8_0.bin", "--temperature", "0",
                 "--max-tokens", "12", "The cat"]) == 0
    assert capsys.readouterr().out.startswith(" sat on the mat.")


def test_without_quant_the_catalogs_recommendation_is_used(tmp_path, capsys, app_home,
                                                           phrase_tensors):
    folder = write_checkpoint(tmp_path / "ft", phrase_tensors, n_head=N_HEAD, dtype="BF16")
    assert main(["models", "import", str(folder / "config.json")]) == 0
    assert "Imported ft.q4_0.bin (q4_0, " in capsys.readouterr().out
    assert models_in(app_home) == ["ft.q4_0.bin"]


def small_weights():
    lazy = random_weights(seed=1, n_layer=1, n_embd=32, n_ctx=16)
    return dict(lazy.items())


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def cut(path, keep_fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


BAD = {
    "wrong-model-type": (lambda f: edit_config(f, model_type="bert", architectures=["BertModel"]),
                         "holds a bert model; only GPT-2 models"),
    "missing-weights": (lambda f: (f / "model.safetensors").unlink(), "has no model.safetensors"),
    "missing-tokenizer": (lambda f: (f / "merges.txt").unlink(), "has no tokenizer"),
    "truncated": (lambda f: cut(f / "model.safetensors"), "model.safetensors is truncated"),
    "corrupt": (lambda f: (f / "model.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{oops"
                                                                 + b"\x00" * 20),
                "is not a safetensors file"),
    "shapes-contradict-config": (lambda f: edit_config(f, n_embd=64),
                                 "but config.json (n_embd 64"),
    "bad-json": (lambda f: (f / "config.json").write_text("{'n_embd': 32}"), "is not valid JSON"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_folders_end_in_one_line_exit_2_and_nothing_added(tmp_path, capsys, app_home, case):
    damage, words = BAD[case]
    folder = write_checkpoint(tmp_path / "ck", small_weights(), n_head=N_HEAD)
    damage(folder)
    assert main(["models", "import", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert models_in(app_home) == []


def test_quant_is_refused_for_a_ggml_file_and_unknown_values(tmp_path, capsys):
    assert main(["models", "import", str(tmp_path / "x.bin"), "--quant", "q4_0"]) == 2
    assert "--quant is for Hugging Face checkpoint folders" in capsys.readouterr().err
    assert main(["models", "import", str(tmp_path), "--quant", "q3_k"]) == 2
    assert "invalid choice: 'q3_k'" in capsys.readouterr().err


def test_the_progress_bar_redraws_one_line_on_a_terminal():
    import io

    from writer_app.cli_models import ConvertBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ConvertBar("ft", stream)
    for done in np.linspace(0, 100, 11):
        bar.update("converting", int(done), 100)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 11 and text.count("\n") == 1 and text.endswith("\n")
    assert text.split("\r")[-1].rstrip() == "ft [" + "#" * 30 + "] 100% converting"
