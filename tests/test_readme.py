"""The README's two set-up commands are the project's contract with newcomers and CI."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands), "each set-up command is one line to copy"
    assert commands[0].endswith("writer-app")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_one_step_per_line():
    # Each step on its own line: under `set -e` a failure inside an && chain that is not
    # its last command would not stop the script.
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    steps = readme_commands()[1].split(" && ")
    first = ci_lines.index(steps[0])
    assert ci_lines[first : first + len(steps)] == steps
    assert readme_commands()[1] not in ci_lines
