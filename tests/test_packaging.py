"""Packaging: desktop files and icons agree with each other and with pyproject; the frozen
build and a clean `pip install .` both pass `writer-app --self-test` (those two are opt-in:
they take minutes, and the clean install needs the package index)."""

from __future__ import annotations

import configparser
import fnmatch
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import venv
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

from tests.support.models import phrase_model
from writer_app import __version__, selftest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"
APP_ID = "io.github.writerapp.WriterApp"
DESKTOP_FILE = PACKAGING / "linux" / f"{APP_ID}.desktop"
METAINFO_FILE = PACKAGING / "linux" / f"{APP_ID}.metainfo.xml"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)



def _load_make_icons():
    # packaging/ is a folder of scripts, not a package: load the generator from its path.
    spec = importlib.util.spec_from_file_location("make_icons", PACKAGING / "make_icons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining it
    spec.loader.exec_module(module)
    return module


make_icons = _load_make_icons()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # desktop keys are case-sensitive
    parser.read(DESKTOP_FILE, encoding="utf-8")
    return parser["Desktop Entry"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _list(value: str) -> list[str]:
    return [item for item in value.split(";") if item]


# --- desktop entry and AppStream metadata -------------------------------------------------


def test_desktop_entry_launches_the_installed_gui_script_with_the_app_icon():
    entry = _desktop_entry()
    gui_scripts = _pyproject()["project"]["gui-scripts"]
    executable, *arguments = entry["Exec"].split()
    assert executable in gui_scripts
    assert arguments == ["%f"]
    assert entry["Icon"] == APP_ID
    assert entry["Type"] == "Application"
    assert {"text/plain", "text/markdown"} <= set(_list(entry["MimeType"]))
    assert {"Office", "TextEditor"} <= set(_list(entry["Categories"]))
    assert _list(entry["Keywords"])


def test_metainfo_names_the_same_app_version_and_license_as_pyproject():
    component = ElementTree.parse(METAINFO_FILE).getroot()
    project = _pyproject()["project"]
    assert component.get("type") == "desktop-application"
    assert component.findtext("id") == APP_ID
    assert component.find("launchable").text == DESKTOP_FILE.name
    assert component.findtext("metadata_license") == "CC0-1.0"
    assert component.findtext("project_license") == project["license"]["text"]
    assert component.find("content_rating") is not None
    versions = [release.get("version") for release in component.iter("release")]
    assert versions[0] == project["version"] == __version__
    assert component.findtext("summary")
    assert component.find("description/p") is not None


@pytest.mark.parametrize(
    ("tool", "arguments", "path"),
    [
        ("desktop-file-validate", [], DESKTOP_FILE),
        ("appstreamcli", ["validate", "--no-net"], METAINFO_FILE),
    ],
)
def test_freedesktop_validators_accept_the_files(tool, arguments, path):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: desktop-file-utils / appstream)")
    result = subprocess.run([tool, *arguments, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- icons ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ICON_SIZES)
def test_each_png_icon_is_the_size_its_name_claims(size):
    assert _png_size(ICONS / f"writer-app-{size}.png") == (size, size)


def test_svg_icon_is_square_and_up_to_date_with_its_generator(tmp_path):
    svg_text = (ICONS / "writer-app.svg").read_text(encoding="utf-8")
    root = ElementTree.fromstring(svg_text)
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    assert width == height
    assert svg_text == make_icons.to_svg(make_icons.icon_shapes(small=False))


def test_icon_generator_writes_every_size_with_visible_artwork(tmp_path):
    from PySide6.QtGui import QImage

    written = make_icons.make_icons(tmp_path)
    assert sorted(p.name for p in written) == sorted(
        ["writer-app.svg"] + [f"writer-app-{size}.png" for size in ICON_SIZES]
    )
    for size in ICON_SIZES:
        image = QImage(str(tmp_path / f"writer-app-{size}.png"))
        assert (image.width(), image.height()) == (size, size)
        # Transparent corners (the rounded background), opaque middle (the page).
        assert image.pixelColor(0, 0).alpha() == 0
        assert image.pixelColor(size // 2, size // 2).alpha() == 255


def test_installed_package_data_includes_every_icon():
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["writer_app.resources"]
    for icon in ICONS.iterdir():
        relative = icon.relative_to(ICONS.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_desktop_install_script_installs_every_icon_size(tmp_path):
    script = PACKAGING / "linux" / "install-desktop-files.sh"
    env = {**os.environ, "PREFIX": str(tmp_path)}
    subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
    share = tmp_path / "share"
    assert (share / "applications" / DESKTOP_FILE.name).read_bytes() == DESKTOP_FILE.read_bytes()
    assert (share / "metainfo" / METAINFO_FILE.name).is_file()
    assert (share / "icons/hicolor/scalable/apps" / f"{APP_ID}.svg").is_file()
    for size in ICON_SIZES:
        installed = share / f"icons/hicolor/{size}x{size}/apps/{APP_ID}.png"
        assert _png_size(installed) == (size, size)


# --- writer-app --self-test -----------------------------------------------------------------

# A phrase model continues "," greedily with the rest of this phrase, then ends the text;
# the self-test prompt ends in ",", so this is exactly what its suggestion must be.
PHRASE_AFTER_COMMA = ", must be in want wife."


@pytest.fixture(scope="module")
def phrase_model_file(tmp_path_factory) -> Path:
    assert selftest.PROMPT.endswith(",")
    folder = tmp_path_factory.mktemp("selftest-model")
    return phrase_model(folder / "phrases.bin", [PHRASE_AFTER_COMMA], ftype="q8_0")


def test_self_test_prints_the_models_suggestion_on_each_engine_and_passes(phrase_model_file, capsys):
    assert selftest.run(phrase_model_file) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert f"prompt:     {selftest.PROMPT!r}" in lines
    assert any(line.startswith("model:      phrases.bin: q8_0, 2 layers") for line in lines)
    for engine in ("ctransformers", "llama.cpp"):
        at = lines.index(f"{engine}:")
        assert lines[at + 2] == f"  suggestion: {PHRASE_AFTER_COMMA[1:]!r}", engine
    assert "converted in" in lines[lines.index("llama.cpp:") + 3]
    assert lines[-1] == "self-test passed"
    # The installed model stays as it was: llama.cpp's copy was converted elsewhere.
    assert sorted(p.name for p in phrase_model_file.parent.iterdir()) == ["phrases.bin"]


def test_self_test_fails_in_one_line_naming_an_engine_that_does_not_run(
    phrase_model_file, monkeypatch, capsys
):
    def no_room(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(selftest, "gguf_for", no_room)
    assert selftest.run(phrase_model_file) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "self-test failed: llama.cpp: the text engine failed: [Errno 28] No space left on device"
    ]


def test_self_test_without_the_demo_model_fails_with_one_line(tmp_path, capsys):
    missing = tmp_path / "resources" / "models" / "demo-austen-gpt2.bin"
    assert selftest.run(missing) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"self-test failed: the demo model is missing: {missing} (incomplete installation)"
    ]


def test_self_test_with_a_file_that_is_not_a_model_fails_with_one_line(tmp_path, capsys):
    # A GGUF header would crash ctransformers; the self-test must report it instead.
    broken = tmp_path / "demo-austen-gpt2.bin"
    broken.write_bytes(b"GGUF" + bytes(200))
    assert selftest.run(broken) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("self-test failed: demo-austen-gpt2.bin is not a usable GPT-2 model")


def test_self_test_refuses_to_run_inside_a_spawned_child(phrase_model_file, monkeypatch, capsys):
    # What a frozen engine child would do if it reached the command line instead of the
    # engine: it must stop at once rather than spawn another engine (and so on).
    monkeypatch.setattr(selftest.multiprocessing, "parent_process", lambda: object())
    assert selftest.run(phrase_model_file) == 1
    assert "freeze_support" in capsys.readouterr().err


# --- frozen build and clean install (opt-in, minutes) -------------------------------------


def _run_app(executable: Path, *arguments: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(executable), *arguments], capture_output=True, text=True, timeout=timeout
    )


def _assert_self_test_passes(executable: Path) -> None:
    version = _run_app(executable, "--version", timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"writer-app {__version__}"

    result = _run_app(executable, "--self-test", timeout=240)
    print(result.stdout, result.stderr, sep="\n")  # shown with -s / on failure
    assert result.returncode == 0, result.stderr
    assert "self-test passed" in result.stdout


@pytest.mark.slow
@pytest.mark.freeze
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    os.environ.get("WRITER_APP_TEST_FREEZE") != "1",
    reason="builds the PyInstaller app (minutes); opt in with WRITER_APP_TEST_FREEZE=1",
)
def test_frozen_app_passes_its_self_test(tmp_path):
    dist = tmp_path / "dist"
    env = {**os.environ, "PYTHON": sys.executable, "DIST_DIR": str(dist),
           "WORK_DIR": str(tmp_path / "work")}
    build = subprocess.run(["bash", str(PACKAGING / "build.sh")], env=env,
                           capture_output=True, text=True, timeout=1500)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(build.stdout)
    suffix = ".exe" if sys.platform == "win32" else ""
    _assert_self_test_passes(dist / "writer-app" / f"writer-app{suffix}")


@pytest.mark.slow
@pytest.mark.install
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    os.environ.get("WRITER_APP_TEST_INSTALL") != "1",
    reason="pip-installs the app from the package index into a fresh venv (network, "
    "minutes); opt in with WRITER_APP_TEST_INSTALL=1",
)
def test_clean_pip_install_passes_its_self_test(tmp_path):
    # Build from a copy so the install cannot leave build/ or *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(environment)
    bin_dir = environment / ("Scripts" if sys.platform == "win32" else "bin")
    install = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                              str(source)], capture_output=True, text=True, timeout=1500)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    _assert_self_test_passes(bin_dir / "writer-app")
