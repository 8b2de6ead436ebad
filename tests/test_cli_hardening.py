"""Bad input through the real command line (issue 17, items 1-7): one line on stderr and
exit code 2, never a traceback, and the one validator deciding for every path."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.models import random_gpt2
from writer_app.assets import demo_model_path
from writer_app.cli import main

# <|endoftext|> last, as in GPT-2: a token after it that is not a merge is a token added in
# fine-tuning, which is allowed; a flipped byte before it is not.
BPE_VOCAB = [bytes([b]) for b in range(256)] + [b"ab", b"abc", b"<|endoftext|>"]
TINY = dict(n_layer=1, n_embd=8, n_head=2)
VOCAB_REASON = "its vocabulary can't be tokenized exactly: Token 257 (b'a\\x1bc')"


def cli(*args: str, timeout: float = 120, **options) -> subprocess.CompletedProcess[bytes]:
    """The installed entry point in a child process; str arguments may carry surrogates
    (a file name that is not UTF-8), which reach the child as the original bytes."""
    options.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "writer_app", *args], stderr=subprocess.PIPE,
                          timeout=timeout, env=os.environ.copy(), **options)


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == 2, (result.returncode, err)
    assert b"\x1b" not in result.stderr and b"Traceback" not in result.stderr, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("tiny") / "tiny.bin"
    return random_gpt2(path, vocab=BPE_VOCAB, n_ctx=16, **TINY).read_bytes()


def flipped(tiny: bytes) -> bytes:
    token = struct.pack("<I", 3) + b"abc"
    assert tiny.count(token) == 1
    return tiny.replace(token, struct.pack("<I", 3) + b"a\x1bc")


# ---- 1. one flipped vocabulary byte: the same verdict from every path ----------------------


def test_a_flipped_vocabulary_byte_is_refused_alike_by_info_import_complete_and_loading(
    tmp_path, tiny_bytes
):
    from writer_app.engine.ggml import InvalidModelFile
    from writer_app.engine.session import TextSession

    bad = tmp_path / "flipped.bin"
    bad.write_bytes(flipped(tiny_bytes))
    expected = f"error: flipped.bin is not a usable GPT-2 model: {VOCAB_REASON}"
    assert one_line_error(cli("models", "info", str(bad))).startswith(expected)
    assert one_line_error(cli("complete", "--model", str(bad), "Hi")).startswith(expected)
    imported = one_line_error(cli("models", "import", str(bad)))
    assert VOCAB_REASON in imported
    # The app's loader (and the engine client and process) open models through this.
    with pytest.raises(InvalidModelFile) as caught:
        TextSession.open(bad)
    assert str(caught.value).startswith(expected.removeprefix("error: "))


# ---- 2. a context with no room to generate ---------------------------------------------------


def test_a_model_with_a_context_of_5_is_refused_and_one_of_6_completes(tmp_path):
    five = random_gpt2(tmp_path / "five.bin", vocab=BPE_VOCAB, n_ctx=5, **TINY)
    assert one_line_error(cli("complete", "--model", str(five), "Hello there")) == (
        "error: five.bin is not a usable GPT-2 model: its context is 5 tokens, too small to "
        "generate anything (at least 6 are needed)"
    )
    six = random_gpt2(tmp_path / "six.bin", vocab=BPE_VOCAB, n_ctx=6, **TINY)
    # Room for one prompt token and one new one: the generation runs to its end.
    done = cli("complete", "--model", str(six), "--max-tokens", "8", "Hello there")
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.endswith(b"\n")


# ---- 3. a FIFO ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["models", "info"], ["models", "import"],
                                     ["complete", "Hi", "--model"]])
def test_a_fifo_as_a_model_is_refused_without_hanging(tmp_path, command):
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    line = one_line_error(cli(*command, str(fifo), timeout=60))  # a hang times out
    assert "model.bin" in line
    assert ("it is a named pipe (FIFO), not a regular file" in line
            or "does not exist or is not a file" in line)  # import checks before validating


# ---- 4. stat raising --------------------------------------------------------------------------------


def _without_root_file_access() -> None:
    """In the child: drop the capabilities that let root enter any folder, so a folder
    without permissions refuses it as it refuses everyone else (PR_CAPBSET_DROP)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.mark.parametrize("command", [
    ["complete", "Hi", "--model", "LOCKED/cat.bin"], ["models", "info", "LOCKED/cat.bin"],
    ["models", "import", "LOCKED/cat.bin"],
    ["generate", "--prompts", "LOCKED/prompts.txt", "--out", "out.jsonl"],
    ["generate", "--prompts", "prompts.txt", "--out", "LOCKED/sub/out.jsonl"],
])
def test_a_file_in_a_folder_we_may_not_enter_is_one_line(tmp_path, cat_model, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(cat_model, locked / "cat.bin")
    (tmp_path / "prompts.txt").write_text("The cat sat\n", encoding="utf-8")
    locked.chmod(0)
    try:
        result = cli(*[part.replace("LOCKED", str(locked)) for part in command], cwd=tmp_path,
                     preexec_fn=_without_root_file_access if os.geteuid() == 0 else None)
    finally:
        locked.chmod(0o755)
    assert "Permission denied" in one_line_error(result)


def test_a_models_folder_we_may_not_read_is_one_line(app_home):
    app_home.models_dir.mkdir(parents=True)
    app_home.models_dir.chmod(0)
    try:
        result = cli("models", "list",
                     preexec_fn=_without_root_file_access if os.geteuid() == 0 else None)
    finally:
        app_home.models_dir.chmod(0o755)
    assert one_line_error(result) == f"error: {app_home.models_dir}: Permission denied"


@pytest.mark.parametrize("command", [["complete", "Hi", "--model"], ["models", "info"],
                                     ["models", "import"]])
@pytest.mark.parametrize("name", ["m" * 300 + ".bin", "folder/" + "m" * 300 + ".bin"])
def test_a_300_character_file_name_is_one_line(tmp_path, command, name):
    (tmp_path / "folder").mkdir()
    assert "File name too long" in one_line_error(cli(*command, name, cwd=tmp_path))


# ---- 5. broken standard output -------------------------------------------------------------------


def test_a_reader_that_goes_away_ends_quietly(cat_model):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the first write meets a broken pipe
    try:
        result = cli("complete", "--model", str(cat_model), "--temperature", "0", "The cat sat",
                     stdout=write_end)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, b"")


def test_complete_piped_into_head_exits_quietly():
    command = (f"{sys.executable} -m writer_app complete --model demo --max-tokens 256 "
               "--stop-at length 'It is a truth' | head -c1; echo \" ${PIPESTATUS[0]}\"")
    result = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120,
                            env=os.environ.copy())
    assert result.stderr == b""  # no traceback, no "Exception ignored" noise
    status = result.stdout[1:].decode().strip()  # after head's one byte
    assert status in ("0", "141")  # 0: the engine finished before head went away


@pytest.mark.parametrize("command", [
    ["complete", "--model", "demo", "It is a truth"], ["models", "info", "DEMO"],
    ["models", "list"],
])
def test_a_full_disk_on_stdout_is_one_line(command):
    command = [str(demo_model_path()) if part == "DEMO" else part for part in command]
    with open("/dev/full", "wb") as full:
        line = one_line_error(cli(*command, stdout=full))
    assert line == "error: cannot write to standard output: No space left on device"


@pytest.mark.parametrize("command", [
    "complete --model demo 'It is a truth'", "models info DEMO", "models list",
])
def test_a_closed_stdout_is_one_line(command):
    command = command.replace("DEMO", str(demo_model_path()))
    result = subprocess.run(["bash", "-c", f"{sys.executable} -m writer_app {command} >&-"],
                            capture_output=True, timeout=120, env=os.environ.copy())
    assert one_line_error(result) == (
        "error: standard output is closed, so there is nowhere to write the result"
    )


# ---- 6. names from files are escaped ---------------------------------------------------------------


def test_control_characters_in_a_file_name_and_a_tensor_name_never_reach_the_terminal(
    tmp_path, tiny_bytes, app_home
):
    name = "evil\n\x1b[2J.bin"
    bad = tmp_path / name
    bad.write_bytes(tiny_bytes.replace(b"model/ln_f/g", b"model/\n\x1b_f/g", 1))
    expected = ("error: evil\\n\\x1b[2J.bin is not a usable GPT-2 model: "
                "unknown tensor model/\\n\\x1b_f/g")
    assert one_line_error(cli("models", "info", str(bad))) == expected
    assert one_line_error(cli("complete", "--model", str(bad), "Hi")) == expected
    assert "unknown tensor model/\\n\\x1b_f/g" in one_line_error(cli("models", "import", str(bad)))

    # A file the models folder holds: `models list` explains it in one escaped line.
    app_home.models_dir.mkdir(parents=True)
    shutil.copy(bad, app_home.models_dir / name)
    listing = cli("models", "list")
    assert listing.returncode == 0 and b"\x1b" not in listing.stdout
    assert listing.stdout.decode().splitlines()[-1] == (
        "not usable: evil\\n\\x1b[2J.bin: " + expected.removeprefix("error: ")
    )


def test_a_valid_model_with_control_characters_in_its_name_is_shown_escaped(tmp_path, cat_model):
    odd = tmp_path / "cat\x1b]0;owned\x07.bin"
    shutil.copy(cat_model, odd)
    info = cli("models", "info", str(odd))
    assert info.returncode == 0, info.stderr
    assert info.stdout.decode().splitlines()[0] == (
        "cat\\x1b]0;owned\\x07.bin: a valid GGML GPT-2 model"
    )


# ---- 7. a file name that isn't UTF-8 -----------------------------------------------------------------


def test_a_model_whose_file_name_is_not_utf8_loads_and_is_shown(tmp_path, cat_model):
    path = tmp_path / os.fsdecode(b"chat-\xe9t\xe9.bin")  # Latin-1 bytes
    shutil.copy(cat_model, path)
    info = cli("models", "info", str(path))
    assert info.returncode == 0, info.stderr
    assert info.stdout.decode().splitlines()[0] == "chat-\\xe9t\\xe9.bin: a valid GGML GPT-2 model"
    done = cli("complete", "--model", str(path), "--temperature", "0", "The cat sat")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b" on the mat. Then it slept all day!\n"

    imported = cli("models", "import", str(path))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(b"Imported chat-\\xe9t\\xe9.bin (q8_0, ")
    listing = cli("models", "list").stdout.decode().splitlines()
    assert any(line.startswith("chat-\\xe9t\\xe9.bin ") for line in listing), listing
    by_name = cli("complete", "--model", path.name, "--temperature", "0", "The cat sat")
    assert by_name.stdout == done.stdout, by_name.stderr


# ---- issue 15 item 8: the demo by name --------------------------------------------------------------


def test_the_demo_model_is_named_demo_on_the_command_line(capsys):
    done = cli("complete", "--model", "demo", "--seed", "1", "--max-tokens", "6", "It is a truth")
    default = cli("complete", "--seed", "1", "--max-tokens", "6", "It is a truth")
    assert done.returncode == 0, done.stderr
    assert done.stdout == default.stdout and done.stdout.strip()

    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    demo = rows[0]
    assert (demo["id"], demo["builtin"], demo["status"]) == ("demo", True, "built-in")
    assert Path(demo["path"]) == demo_model_path()
    assert demo["size_bytes"] == demo_model_path().stat().st_size
    assert [row["id"] for row in rows if row["builtin"]] == ["demo"]
