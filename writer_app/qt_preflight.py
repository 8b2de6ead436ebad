"""Before the editor creates its QApplication: can Qt's X11 platform plugin load?

On a minimal Linux, Qt's xcb plugin (libqxcb.so) links system libraries that may be
missing. Qt then aborts (exit code 134) with a message that blames the wrong library.
So the launcher first asks the dynamic linker (`ldd` on the plugin Qt would load). If
anything is missing, it says in one sentence which packages to install.

This runs only for the window on Linux under X11: not for the command-line modes, not
offscreen, not on Wayland. When the check itself cannot run (no ldd, no plugin found),
it says nothing and Qt goes ahead as it always did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

XCB_PLUGIN = "libqxcb.so"

# The system libraries libqxcb.so needs (its own links and those of the Qt libraries it
# pulls in; Qt and ICU themselves ship inside PySide6), with the Debian/Ubuntu package of
# each. Derived with `ldd libqxcb.so` and `dpkg -S` on Debian 12 with PySide6 6.x;
# tests/test_qt_preflight.py checks it against the machine it runs on, and the README's
# apt line against it.
XCB_PLUGIN_PACKAGES: dict[str, str] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libbrotlicommon.so.1": "libbrotli1",
    "libbrotlidec.so.1": "libbrotli1",
    "libbsd.so.0": "libbsd0",
    "libc.so.6": "libc6",
    "libcap.so.2": "libcap2",
    "libdbus-1.so.3": "libdbus-1-3",
    "libdl.so.2": "libc6",
    "libexpat.so.1": "libexpat1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libgcc_s.so.1": "libgcc-s1",
    "libgcrypt.so.20": "libgcrypt20",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgpg-error.so.0": "libgpg-error0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "liblz4.so.1": "liblz4-1",
    "liblzma.so.5": "liblzma5",
    "libm.so.6": "libc6",
    "libmd.so.0": "libmd0",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libpng16.so.16": "libpng16-16",
    "libpthread.so.0": "libc6",
    "libstdc++.so.6": "libstdc++6",
    "libsystemd.so.0": "libsystemd0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)
_SONAME = re.compile(r"^(?P<name>.+)\.so\.(?P<version>[\d.]+)$")

Ldd = Callable[[Path], str | None]


def debian_package(soname: str) -> str:
    """The package that ships a library: from the table, else Debian's naming rule for
    library packages (libfoo.so.4 -> libfoo4, libfoo-x11.so.0 -> libfoo-x11-0)."""
    known = XCB_PLUGIN_PACKAGES.get(soname)
    if known is not None:
        return known
    match = _SONAME.match(soname)
    if match is None:
        return soname
    name, version = match.group("name").lower(), match.group("version").split(".")[0]
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def uses_xcb(environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt would start its X11 plugin for a window here."""
    if not platform.startswith("linux"):
        return False
    requested = environ.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return requested.split(";")[0].split(":")[0] == "xcb"
    # Qt picks Wayland by itself in a Wayland session.
    return not (environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"))


def plugin_dirs(environ: Mapping[str, str]) -> list[Path]:
    """Where Qt looks for platform plugins, in its order."""
    dirs = [Path(p) for p in environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs += [Path(p) / "platforms" for p in environ.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    from PySide6.QtCore import QLibraryInfo  # QtCore loads without any X11 library

    dirs.append(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms")
    return dirs


def find_xcb_plugin(environ: Mapping[str, str]) -> Path | None:
    return next((d / XCB_PLUGIN for d in plugin_dirs(environ) if (d / XCB_PLUGIN).is_file()), None)


def run_ldd(library: Path) -> str | None:
    """ldd's report on `library`, or None when it cannot be asked."""
    try:
        done = subprocess.run(["ldd", str(library)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def missing_libraries(library: Path, ldd: Ldd = run_ldd) -> list[str] | None:
    """The libraries `library` links that the dynamic linker cannot find (in ldd's
    order, once each); None when that cannot be found out."""
    report = ldd(library)
    if report is None:
        return None
    return list(dict.fromkeys(_NOT_FOUND.findall(report)))


def problem(
    environ: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    ldd: Ldd = run_ldd,
) -> str | None:
    """One sentence saying what to install when Qt's X11 plugin cannot load; None when
    it can (or the check does not apply or cannot run)."""
    environ = os.environ if environ is None else environ
    if not uses_xcb(environ, platform):
        return None
    plugin = find_xcb_plugin(environ)
    missing = missing_libraries(plugin, ldd) if plugin is not None else None
    if not missing:
        return None
    it = "it" if len(missing) == 1 else "them"
    opening = (
        f"The editor cannot open a window: Qt's X11 support needs {_and_list(missing)}, "
        "which this system does not have"
    )
    if shutil.which("apt-get") is None:
        return f"{opening}; install the packages that provide {it}."
    packages = " ".join(dict.fromkeys(debian_package(name) for name in missing))
    return f"{opening}; install {it} with: sudo apt-get install {packages}"


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
