"""Locate files shipped in resources/ (installed as the package writer_app.resources)."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:  # PyInstaller one-folder build
        return Path(frozen_root) / "writer_app" / "resources"
    try:
        import writer_app.resources as pkg

        return Path(next(iter(pkg.__path__)))
    except (ImportError, StopIteration):
        # Running from a checkout without installing: resources/ sits beside the package.
        return Path(__file__).resolve().parent.parent / "resources"


def demo_model_path() -> Path:
    return resources_dir() / "models" / "demo-austen-gpt2.bin"
