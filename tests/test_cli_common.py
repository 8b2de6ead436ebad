"""The shared command-line pieces: sampling flags stated once (SamplingSettings.LIMITS), and
no import circle between cli.py, commands.py and cli_models.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import writer_app
from writer_app.cli import build_parser, main
from writer_app.engine.sampling import SamplingSettings

# flag -> the SamplingSettings field it sets
FLAGS = {
    "--temperature": "temperature",
    "--top-k": "top_k",
    "--top-p": "top_p",
    "--repetition-penalty": "repetition_penalty",
    "--repetition-window": "repetition_window",
    "--max-tokens": "max_tokens",
    "--seed": "seed",
}


def help_text(capsys, command: str = "complete") -> str:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping


def flag_help(text: str, flag: str) -> str:
    """The help of one flag: from `--flag METAVAR` to the next option."""
    metavar = flag.lstrip("-").replace("-", "_").upper()
    start = text.index(f"{flag} {metavar} ")
    following = re.search(r" --[a-z]", text[start + len(flag):])
    return text[start: start + len(flag) + following.start()] if following else text[start:]


def out_of_range(field: str) -> list[str]:
    low, high = SamplingSettings.LIMITS[field]
    if isinstance(high, float):
        return [str(high + 0.5), str(low - 0.5), "nan", "inf"]
    return [str(high + 1), str(low - 1)]


@pytest.mark.parametrize("command", ["complete", "generate"])
def test_the_help_states_each_flags_limits_from_the_settings(capsys, command):
    text = help_text(capsys, command)
    for flag, field in FLAGS.items():
        low, high = SamplingSettings.LIMITS[field]
        assert f"({low} to {high};" in flag_help(text, flag), flag


def test_the_help_and_the_check_follow_a_change_of_the_limits(capsys, monkeypatch):
    """One statement of the limits: changing LIMITS changes both what the help says and
    what the flag accepts."""
    monkeypatch.setitem(SamplingSettings.LIMITS, "temperature", (0.0, 1.5))
    monkeypatch.setitem(SamplingSettings.LIMITS, "max_tokens", (1, 64))
    text = help_text(capsys)
    assert "(0.0 to 1.5;" in flag_help(text, "--temperature")
    assert "(1 to 64;" in flag_help(text, "--max-tokens")
    assert build_parser().parse_args(["complete", "--temperature", "1.5", "x"]).temperature == 1.5
    assert main(["complete", "--temperature", "1.7", "x"]) == 2
    assert "--temperature: 1.7 is outside 0.0 to 1.5" in capsys.readouterr().err
    assert main(["complete", "--max-tokens", "65", "x"]) == 2
    assert "--max-tokens: 65 is outside 1 to 64" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [(flag, value) for flag, field in FLAGS.items() for value in out_of_range(field)],
)
def test_each_flag_refuses_values_outside_its_limits_in_one_line(capsys, flag, value):
    assert main(["complete", flag, value, "Hi"]) == 2
    err = capsys.readouterr().err
    low, high = SamplingSettings.LIMITS[FLAGS[flag]]
    assert err == f"error: writer-app complete: argument {flag}: {value} is outside {low} to {high}\n"


@pytest.mark.parametrize("flag", FLAGS)
def test_each_flag_accepts_both_ends_of_its_range(flag):
    low, high = SamplingSettings.LIMITS[FLAGS[flag]]
    dest = FLAGS[flag]
    for value in (low, high):
        args = build_parser().parse_args(["complete", flag, str(value), "Hi"])
        assert getattr(args, dest) == value


def test_a_value_that_is_not_a_number_is_one_line(capsys):
    assert main(["complete", "--top-k", "1.5", "Hi"]) == 2
    assert capsys.readouterr().err == (
        "error: writer-app complete: argument --top-k: '1.5' is not a whole number\n"
    )


def imported_modules(module: str) -> set[str]:
    path = Path(writer_app.__file__).parent / f"{module}.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_cli_modules_form_no_import_circle():
    """cli.py imports commands.py (which imports cli_models.py); neither runs back up, and
    the shared module imports none of them (deferred imports included)."""
    cli_modules = {"writer_app.cli", "writer_app.commands", "writer_app.cli_models"}
    assert not imported_modules("cli_common") & cli_modules
    assert "writer_app.cli" not in imported_modules("commands")
    assert not imported_modules("cli_models") & {"writer_app.cli", "writer_app.commands"}
