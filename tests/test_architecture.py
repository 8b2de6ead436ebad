"""The package's layers, read from the source: no import circles, nothing importing upwards.

Every import counts: at the top of a module, inside a function (deferred), and under
`if TYPE_CHECKING:`. A type-only import of a class from a higher layer still means the
lower module is written against the higher one, which is the circle in the design.

Layers, lowest first (a module may import its own layer and the ones below):
    foundation  writer_app, paths, assets,       where files are and how to write them
                safe_files                       safely; no writer_app imports
    core        engine/, models/, documents/     no Qt
    app data    settings, presets, model_choice  Qt-free, what the writer chose
    services    services/                        QtCore
    ui          ui/                              widgets
    entry       app (the composition root), the command line, screenshot, self-test
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "writer_app"
LAYERS = ("foundation", "core", "app data", "services", "ui", "entry")
FOUNDATION = {"writer_app", "writer_app.paths", "writer_app.assets", "writer_app.safe_files"}
APP_DATA = {"writer_app.settings", "writer_app.presets", "writer_app.model_choice"}
CORE_PACKAGES = ("engine", "models", "documents")
# Circles that are known and accepted (none): the test fails on a new one, and on an
# entry here that no longer exists.
KNOWN_CIRCLES: set[frozenset[str]] = set()


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package upwards
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from writer_app.ui import dialogs` imports the module writer_app.ui.dialogs.
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a.b.Class -> a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
                break
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(package)
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def layer(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    if module in APP_DATA:
        return "app data"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in CORE_PACKAGES:
        return "core"
    if len(parts) >= 2 and parts[1] in ("services", "ui"):
        return parts[1]
    return "entry"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if LAYERS.index(layer(target)) > LAYERS.index(layer(module))
    )


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected groups of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_import_reader_sees_every_kind_of_import(tmp_path):
    package = tmp_path / "writer_app"
    (package / "ui").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ui" / "__init__.py").write_text("")
    (package / "app.py").write_text("from writer_app.ui import panel\n")
    (package / "ui" / "panel.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from writer_app.app import WriterApp\n"
        "def later():\n"
        "    from . import menu\n"
    )
    (package / "ui" / "menu.py").write_text("import writer_app.app\n")
    graph = import_graph(package)
    assert graph["writer_app.app"] == {"writer_app.ui.panel"}
    assert graph["writer_app.ui.panel"] == {"writer_app.app", "writer_app.ui.menu"}
    assert graph["writer_app.ui.menu"] == {"writer_app.app"}
    assert circles(graph) == [
        frozenset({"writer_app.app", "writer_app.ui.panel", "writer_app.ui.menu"})
    ]
    assert upward_imports(graph) == [
        "writer_app.ui.menu (ui) imports writer_app.app (entry)",
        "writer_app.ui.panel (ui) imports writer_app.app (entry)",
    ]


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_there_are_no_import_circles():
    found = set(circles(import_graph()))
    assert sorted(sorted(c) for c in found - KNOWN_CIRCLES) == []
    gone = KNOWN_CIRCLES - found
    assert not gone, f"fixed, so delete from KNOWN_CIRCLES: {sorted(sorted(c) for c in gone)}"


@pytest.mark.parametrize("module", ["writer_app.app", "writer_app.ui.main_window"])
def test_the_graph_covers_the_package(module):
    graph = import_graph()
    assert module in graph and graph[module]  # the reader found the real modules' imports
