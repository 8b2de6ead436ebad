"""The first start on a plain Linux: the README's apt line against what Qt's X11 plugin
really links (ldd + dpkg on this machine), and the launcher's check before Qt starts.

Needs ldd and dpkg (Debian/Ubuntu), and for the README check the packages the README
lists installed: a library that is missing here cannot be asked about with `dpkg -S`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QLibraryInfo

from writer_app import qt_preflight
from writer_app.qt_preflight import (
    XCB_PLUGIN,
    XCB_PLUGIN_PACKAGES,
    debian_package,
    find_xcb_plugin,
    missing_libraries,
    problem,
    run_ldd,
)

README = Path(__file__).resolve().parent.parent / "README.md"
LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd: Linux only")
X11 = {"QT_QPA_PLATFORM": "xcb"}
_RESOLVED = re.compile(r"^\s*(\S+)\s+=>\s+(/\S+)", re.MULTILINE)


def qt_own_libraries() -> Path:
    """Qt and ICU ship inside PySide6: not the system's business."""
    return Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.LibrariesPath)).resolve()


def linked_system_libraries(plugin: Path) -> dict[str, Path | None]:
    """soname -> where the linker finds it (None: not found), for everything the plugin
    and the Qt libraries it pulls in link, Qt's own libraries left out."""
    report = run_ldd(plugin)
    assert report, f"ldd said nothing about {plugin}"
    found = {
        name: Path(path) for name, path in _RESOLVED.findall(report)
        if not Path(path).resolve().is_relative_to(qt_own_libraries())
    }
    return found | dict.fromkeys(missing_libraries(plugin), None)


def owning_packages(paths: list[Path]) -> dict[Path, str]:
    """dpkg -S: the installed package each file belongs to (asked as linked, then as
    resolved and under /usr, since /lib and /usr/lib are one folder on merged-/usr)."""
    owners: dict[Path, str] = {}
    for spelling in (lambda p: p, Path.resolve, lambda p: Path("/usr") / p.relative_to("/")):
        asked = {spelling(path): path for path in paths if path not in owners}
        if not asked:
            break
        done = subprocess.run(["dpkg", "-S", *map(str, asked)], capture_output=True, text=True)
        for line in done.stdout.splitlines():  # "libegl1:amd64: /lib/.../libEGL.so.1"
            packages, _, file = line.rpartition(": ")
            if Path(file) in asked:
                owners[asked[Path(file)]] = packages.split(",")[0].split(":")[0].strip()
    return owners


def readme_apt_lines() -> list[set[str]]:
    """The packages of each `sudo apt-get install` command in the README."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for match in re.finditer(
        r"sudo apt-get install( -y)?((?:[ \t]+|[ \t]*\\\n[ \t]*)[a-z0-9][a-z0-9.+-]*)+", text
    ):
        words = match.group(0).replace("\\", " ").split()[3:]
        lines.append({word for word in words if not word.startswith("-")})
    return lines


@LINUX_ONLY
@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg -S needs Debian/Ubuntu")
def test_the_readme_apt_line_covers_every_library_the_x11_plugin_links():
    plugin = find_xcb_plugin({})
    assert plugin is not None, f"PySide6 has no {XCB_PLUGIN}"
    linked = linked_system_libraries(plugin)
    assert "libxcb.so.1" in linked and "libxkbcommon-x11.so.0" in linked
    owners = owning_packages([path for path in linked.values() if path is not None])
    needed: dict[str, str] = {}
    for soname, path in linked.items():
        if path is None:
            # Not installed here, so dpkg cannot be asked: the table must know it.
            assert soname in XCB_PLUGIN_PACKAGES, f"{soname} is missing here and unknown"
            needed[soname] = XCB_PLUGIN_PACKAGES[soname]
        else:
            assert path in owners, f"dpkg -S does not know {path}"
            needed[soname] = owners[path]
            # The launcher's table names the same package dpkg does.
            assert XCB_PLUGIN_PACKAGES.get(soname) == owners[path], soname
    apt_lines = readme_apt_lines()
    assert apt_lines, "the README has no apt-get line"
    for packages in apt_lines:
        left_out = {soname: package for soname, package in needed.items() if package not in packages}
        assert not left_out, f"the README's apt line leaves out {left_out}"


def test_debian_package_names():
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libglib-2.0.so.0") == "libglib2.0-0"  # from the table
    assert debian_package("libnew-thing.so.3") == "libnew-thing3"  # Debian's naming rule
    assert debian_package("libnew2.so.1") == "libnew2-1"


# --- the launcher's check ----------------------------------------------------------------


def xcb_shape_library() -> Path:
    """A real system library the plugin links, which itself links libxcb.so.1."""
    path = linked_system_libraries(find_xcb_plugin({})).get("libxcb-shape.so.0")
    assert path is not None, "libxcb-shape0 is not installed"
    return path


def plugin_with_a_missing_library(tmp_path: Path) -> Path:
    """A real shared library standing in for the plugin, with one of its dependencies
    renamed to a library no system has: the dynamic linker cannot find it."""
    data = xcb_shape_library().read_bytes()
    assert b"libxcb.so.1\0" in data
    folder = tmp_path / "platforms"
    folder.mkdir()
    (folder / XCB_PLUGIN).write_bytes(data.replace(b"libxcb.so.1\0", b"libxcq.so.1\0"))
    return folder


def plugin_with_everything(tmp_path: Path) -> Path:
    folder = tmp_path / "complete"
    folder.mkdir()
    shutil.copy(xcb_shape_library(), folder / XCB_PLUGIN)
    return folder


@LINUX_ONLY
def test_a_missing_library_is_named_with_the_apt_command(tmp_path):
    folder = plugin_with_a_missing_library(tmp_path)
    message = problem(X11 | {"QT_QPA_PLATFORM_PLUGIN_PATH": str(folder)}, "linux")
    assert message is not None
    assert "libxcq.so.1" in message and "\n" not in message
    if shutil.which("apt-get"):
        assert message.endswith("install it with: sudo apt-get install libxcq1")


@LINUX_ONLY
def test_with_every_library_present_it_says_nothing(tmp_path):
    folder = plugin_with_everything(tmp_path)
    assert missing_libraries(folder / XCB_PLUGIN) == []
    assert problem(X11 | {"QT_QPA_PLATFORM_PLUGIN_PATH": str(folder)}, "linux") is None


def test_it_only_checks_where_qt_would_load_the_x11_plugin(tmp_path):
    def no_ldd(_library: Path) -> str:
        raise AssertionError("ldd must not run")

    for environ, platform in [
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux"),
        ({"QT_QPA_PLATFORM": "wayland"}, "linux"),
        ({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "linux"),
        ({}, "darwin"),
        ({}, "win32"),
    ]:
        assert problem(environ, platform, ldd=no_ldd) is None


def test_when_ldd_cannot_run_it_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ldd on the PATH
    assert qt_preflight.run_ldd(Path("/bin/sh")) is None
    assert problem(X11, "linux", ldd=lambda _library: None) is None


@LINUX_ONLY
def test_the_launcher_prints_one_sentence_instead_of_a_qt_abort(tmp_path):
    folder = plugin_with_a_missing_library(tmp_path)
    environ = os.environ | X11 | {
        "QT_QPA_PLATFORM_PLUGIN_PATH": str(folder),
        "WRITER_APP_HOME": str(tmp_path / "home"),
    }
    done = subprocess.run([sys.executable, "-m", "writer_app"], capture_output=True,
                          text=True, timeout=120, env=environ)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: The editor cannot open a window")
    assert "libxcq.so.1" in done.stderr
