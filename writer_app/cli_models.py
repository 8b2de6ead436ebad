"""`writer-app models list|download|import|remove`: the models folder from the command line.

The same settings as the app decide where models live (models.models_dir), which hub to
use (models.hub_endpoint, else HF_ENDPOINT, else the public hub) and whether the network
may be used at all (privacy.offline). Failures raise CliError: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from writer_app.assets import demo_model_path
from writer_app.cli_common import DEMO_MODEL_NAME, CliError, say
from writer_app.engine.printable import printable
from writer_app.model_choice import DEMO_MODEL_NAME as DEMO_MODEL_LABEL
from writer_app.model_choice import MemoryQuote, memory_quote, models_folder
from writer_app.models.catalog import Catalog, app_catalog
from writer_app.models.checkpoint import checkpoint_folder
from writer_app.models.downloader import Downloader, DownloadPhase, Progress, RetryPolicy
from writer_app.models.errors import ModelsError
from writer_app.models.hf_import import import_checkpoint
from writer_app.models.hub import HubClient, HubSettings
from writer_app.models.store import ModelStore, StoreContents
from writer_app.paths import AppPaths
from writer_app.settings import Settings, SettingsStore

RETRY_POLICY = RetryPolicy()  # a module constant so tests can make retries quick
OFFLINE = ("offline mode is on in the settings (privacy), so writer-app does not contact "
           "the model hub; turn it off to download models")


@dataclass(frozen=True)
class _Context:
    paths: AppPaths
    settings: Settings
    catalog: Catalog

    @classmethod
    def load(cls) -> _Context:
        paths = AppPaths.default()
        settings = SettingsStore.for_paths(paths).load().settings  # damaged: defaults
        return cls(paths, settings, app_catalog(paths))

    @property
    def models_dir(self) -> Path:
        return models_folder(self.settings, self.paths)

    @property
    def quote(self) -> MemoryQuote:
        return memory_quote(self.settings)

    def store(self) -> ModelStore:
        return ModelStore(self.models_dir, catalog=self.catalog)


def run(args: argparse.Namespace) -> int:
    context = _Context.load()
    commands = {"list": list_models, "download": download, "import": import_file,
                "remove": remove}
    command = commands.get(args.models_command)
    if command is None:
        raise CliError(f"unknown models command: {args.models_command}")
    try:
        return command(args, context)
    except ModelsError as error:
        raise CliError(" ".join(str(error).split())) from None  # always one line
    except OSError as error:  # e.g. a models folder we may not read
        where = f"{printable(os.fsdecode(error.filename))}: " if error.filename else ""
        raise CliError(f"{where}{error.strerror or error}") from None


# ---- list ------------------------------------------------------------------------------


def demo_row(quote: MemoryQuote, path: Path | None = None) -> dict[str, Any]:
    """The model that ships with the app: `--model demo` (and the default)."""
    from writer_app.models.errors import InvalidModel
    from writer_app.models.store import check_model_file

    path = path or demo_model_path()
    row: dict[str, Any] = {
        "id": DEMO_MODEL_NAME, "name": f"{DEMO_MODEL_LABEL} (built-in)", "filename": path.name,
        "quantization": None, "size_bytes": 0, "ram_bytes": 0, "status": "missing",
        "percent": None, "path": str(path), "imported": False, "builtin": True,
        "sha256": None, "license": "MIT",
    }
    try:
        facts = check_model_file(path)
    except InvalidModel:
        return row  # an incomplete installation: listed as missing, not hidden
    return row | {"quantization": facts.quantization, "size_bytes": facts.file_size,
                  "ram_bytes": quote.ram_bytes(facts), "status": "built-in",
                  "percent": 100.0}


def model_rows(
    contents: StoreContents, catalog: Catalog, quote: MemoryQuote
) -> list[dict[str, Any]]:
    """The built-in demo, the catalog (extras only when present) and imported models, with
    their status. RAM is the whole app's with each model on the chosen engine at the
    context the memory budget allows (`quote`: engine/memory.py's model, as in the app)."""
    installed = {m.name: m for m in contents.models}
    partials = {p.name: p for p in contents.partials}
    rows = [demo_row(quote)]
    for item in catalog.items():
        entry = item.entry
        model, partial = installed.get(entry.filename), partials.get(entry.filename)
        if entry.extra and model is None and partial is None:
            continue
        row: dict[str, Any] = {
            "id": entry.id, "name": entry.label, "filename": entry.filename,
            "quantization": entry.quantization, "size_bytes": item.size_bytes,
            "ram_bytes": quote.entry_ram_bytes(entry), "status": "not downloaded",
            "percent": None,
            "path": None, "imported": False, "builtin": False, "sha256": item.sha256,
            "license": entry.license,
        }
        if model is not None:
            row.update(status="installed", size_bytes=model.size_bytes, path=str(model.path),
                       ram_bytes=quote.ram_bytes(model.facts),
                       percent=100.0)
        elif partial is not None:
            total = partial.total_bytes or item.size_bytes
            row.update(status="partial", percent=round(100 * partial.bytes_done / total, 1))
        rows.append(row)
    for model in contents.models:
        if model.imported:
            facts = model.facts
            rows.append({
                "id": model.name, "name": f"{model.display_name} (imported)",
                "filename": model.name, "quantization": facts.quantization,
                "size_bytes": model.size_bytes,
                "ram_bytes": quote.ram_bytes(facts),
                "status": "installed", "percent": 100.0, "path": str(model.path),
                "imported": True, "builtin": False, "sha256": None, "license": None,
            })
    return rows


def list_models(args: argparse.Namespace, context: _Context) -> int:
    contents = context.store().scan()
    rows = model_rows(contents, context.catalog, context.quote)
    rejected = [{"path": str(r.path), "reason": r.reason} for r in contents.rejected]
    if args.json:  # json.dumps escapes what isn't printable
        say(json.dumps({"models_dir": str(context.models_dir), "models": rows,
                        "rejected": rejected}, indent=2))
        return 0
    say(f"Models folder: {printable(str(context.models_dir))}")
    table = [("ID", "NAME", "SIZE", "RAM", "STATUS")]
    for row in rows:
        status = row["status"] if row["status"] != "partial" else f"partial ({row['percent']:.0f} %)"
        table.append((printable(row["id"]), printable(row["name"]), size_text(row["size_bytes"]),
                      f"~{size_text(row['ram_bytes'])}", status))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        say("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    for item in rejected:
        say(f"not usable: {printable(Path(item['path']).name)}: {printable(item['reason'])}")
    return 0


# ---- download ----------------------------------------------------------------------------


def download(args: argparse.Namespace, context: _Context) -> int:
    if context.settings.privacy.offline:
        raise CliError(OFFLINE)
    entry = context.catalog.resolve(args.name, args.quant)
    hub = HubClient(HubSettings.from_environment(context.settings.models.hub_endpoint))
    downloader = Downloader(hub, catalog=context.catalog, retry=RETRY_POLICY)
    bar = DownloadBar(entry.filename)
    try:
        path = downloader.download(entry, context.models_dir, progress=bar.update)
    finally:
        bar.close()
    say(f"{entry.label} is installed: {printable(str(path))}")
    return 0


class DownloadBar:
    """One line on stderr, redrawn in place on a terminal; a line per phase and 10 % else."""

    WIDTH = 30

    def __init__(self, filename: str, stream: TextIO | None = None) -> None:
        self.filename = filename
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last: tuple[DownloadPhase, int] | None = None
        self._drawn = False

    def update(self, progress: Progress) -> None:
        tenth = int(progress.percent // 10)
        if not self.tty and self._last == (progress.phase, tenth):
            return
        self._last = (progress.phase, tenth)
        line = self.line(progress)
        if self.tty:
            self.stream.write("\r" + line.ljust(79))
        else:
            self.stream.write(line + "\n")
        self._drawn = True
        self.stream.flush()

    def line(self, progress: Progress) -> str:
        filled = int(self.WIDTH * progress.percent / 100)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        parts = [f"[{bar}] {progress.percent:3.0f}%"]
        if progress.total_bytes:
            parts.append(f"{size_text(progress.bytes_done)}/{size_text(progress.total_bytes)}")
        if progress.phase is DownloadPhase.DOWNLOADING and progress.speed_bytes_per_second > 0:
            parts.append(f"{size_text(int(progress.speed_bytes_per_second))}/s")
            if progress.eta_seconds is not None:
                parts.append(f"{progress.eta_seconds:.0f}s left")
        elif progress.phase is DownloadPhase.RETRYING:
            parts.append(f"retrying in {progress.retry_in_seconds or 0:.0f}s")
        elif progress.phase is not DownloadPhase.DOWNLOADING:
            parts.append(progress.phase.value)
        return f"{self.filename} " + " · ".join(parts)

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


# ---- import and remove ---------------------------------------------------------------------


def import_file(args: argparse.Namespace, context: _Context) -> int:
    source = Path(args.path)
    if checkpoint_folder(source) is not None:
        return import_checkpoint_folder(source, args.quant, context)
    if args.quant:
        raise CliError("--quant is for Hugging Face checkpoint folders; a GGML file is "
                       "imported as it is")
    model = context.store().import_file(source)
    say(f"Imported {printable(model.name)} ({model.facts.quantization}, "
        f"{size_text(model.size_bytes)}) into {printable(str(context.models_dir))}")
    return 0


def import_checkpoint_folder(source: Path, quant: str | None, context: _Context) -> int:
    bar = ConvertBar(source.name)
    try:
        model = import_checkpoint(source, context.store(), quantization=quant,
                                  progress=bar.update)
    finally:
        bar.close()
    say(f"Imported {printable(model.name)} ({model.facts.quantization}, "
        f"{size_text(model.size_bytes)}) into {printable(str(context.models_dir))}; "
        f"use it with --model {printable(model.name)}")
    return 0


class ConvertBar:
    """A checkpoint import's phases on stderr: redrawn in place on a terminal, else a line
    per phase and per 10 %."""

    WIDTH = 30

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last: tuple[str, int] | None = None
        self._drawn = False

    def update(self, phase: str, done: int, total: int) -> None:
        percent = 100 * done / total if total else 100.0
        if self._last == (phase, int(percent // 10)) and not self.tty:
            return
        self._last = (phase, int(percent // 10))
        filled = int(self.WIDTH * percent / 100)
        line = f"{self.name} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:3.0f}% {phase}"
        self.stream.write("\r" + line.ljust(79) if self.tty else line + "\n")
        self._drawn = True
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def remove(args: argparse.Namespace, context: _Context) -> int:
    freed = context.store().delete(args.name)
    say(f"Removed {printable(args.name)}; {size_text(freed)} freed")
    return 0


def size_text(size: int) -> str:
    for unit, scale, digits in (("GB", 1e9, 2), ("MB", 1e6, 1)):
        if size >= scale:
            return f"{size / scale:,.{digits}f} {unit}"
    return f"{size / 1e3:,.0f} kB"
