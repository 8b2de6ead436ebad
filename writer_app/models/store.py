"""The models folder: which model files are installed, partial downloads, import and delete.

Layout of the folder (the downloader writes the partial files):
    gpt2-124M.q4_0.bin            an installed model: only listed once it passes validation
    gpt2-774M.q4_0.bin.part       bytes downloaded so far
    gpt2-774M.q4_0.bin.part.json  what those bytes are (PartialState), for resuming later
    .name.bin.<random>.tmp        an import being copied in (safe_files); never listed
Every scan re-reads the folder, so files dropped in by hand appear without a restart;
validation results are cached by (path, size, mtime) to keep rescans cheap.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from writer_app.models.catalog import Catalog, CatalogEntry, app_catalog
from writer_app.models.errors import (
    DiskFull,
    ImportCancelled,
    InvalidModel,
    ModelAlreadyInstalled,
    ModelsError,
    UnknownModel,
)
from writer_app.safe_files import AtomicWriter, link_into_place, write_text_atomic

if TYPE_CHECKING:
    from writer_app.paths import AppPaths

MODEL_SUFFIX = ".bin"
PARTIAL_SUFFIX = ".part"
STATE_SUFFIX = ".part.json"
# ENOSPC, and EDQUOT (over quota) where the platform has it.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

Validator = Callable[[Path], Any]  # returns the engine's ModelFacts, raises InvalidModel
ImportProgress = Callable[[int, int], None]  # bytes copied so far, bytes in all
COPY_BLOCK_BYTES = 4 * 1024 * 1024


def check_model_file(path: Path) -> Any:
    """Validate with the engine's GGML reader; InvalidModel (with its reason) if unusable."""
    # Imported lazily: the engine's reader is optional for listing the catalog or downloads.
    from writer_app.engine.ggml import InvalidModelFile, validate_model_file
    from writer_app.engine.printable import printable

    try:
        return validate_model_file(path)
    except InvalidModelFile as exc:
        raise InvalidModel(str(exc)) from exc
    except OSError as exc:
        raise InvalidModel(f"{printable(path.name)} could not be read: {exc.strerror or exc}.") from exc


def partial_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + PARTIAL_SUFFIX)


def state_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + STATE_SUFFIX)


@dataclass(frozen=True)
class PartialState:
    """What a .part file is a prefix of; written before the first byte is downloaded."""

    url: str
    repo_id: str
    filename: str
    revision: str
    size: int
    sha256: str | None
    etag: str | None
    catalog_id: str | None = None

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> PartialState | None:
        """None when missing or unreadable: the partial is then simply started over."""
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


@dataclass(frozen=True)
class InstalledModel:
    name: str  # the file name, unique in the store
    path: Path
    size_bytes: int
    catalog_entry: CatalogEntry | None  # None: imported by the writer
    facts: Any = field(compare=False)  # writer_app.engine.ggml.ModelFacts

    @property
    def imported(self) -> bool:
        return self.catalog_entry is None

    @property
    def display_name(self) -> str:
        return self.catalog_entry.label if self.catalog_entry else self.path.stem


@dataclass(frozen=True)
class PartialDownload:
    name: str  # the model file name it will become
    path: Path
    bytes_done: int
    total_bytes: int | None  # None when the state file is missing or damaged
    catalog_entry: CatalogEntry | None


@dataclass(frozen=True)
class RejectedFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class StoreContents:
    models: list[InstalledModel]
    partials: list[PartialDownload]
    rejected: list[RejectedFile]  # .bin files that failed validation, to explain to the writer


@dataclass(frozen=True)
class StoreUsage:
    models_bytes: int
    partial_bytes: int
    free_bytes: int


class ModelStore:
    def __init__(
        self,
        models_dir: Path,
        *,
        catalog: Catalog | None = None,
        validate: Validator = check_model_file,
        free_space: Callable[[Path], int] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.catalog = catalog or Catalog()
        self._validate = validate
        self._free_space = free_space or (lambda p: shutil.disk_usage(p).free)
        self._checked: dict[Path, tuple[int, int, Any, str | None]] = {}

    # -- listing -------------------------------------------------------------------------
    def scan(self) -> StoreContents:
        models: list[InstalledModel] = []
        partials: list[PartialDownload] = []
        rejected: list[RejectedFile] = []
        for path in self._entries():
            name = path.name
            if name.endswith(MODEL_SUFFIX + PARTIAL_SUFFIX):
                partials.append(self._partial(path))
            elif name.endswith(MODEL_SUFFIX) and not name.startswith("."):
                facts, reason = self._checked_facts(path)
                if reason is not None:
                    rejected.append(RejectedFile(path, reason))
                else:
                    models.append(self._installed(path, facts))
        live = {m.path for m in models} | {r.path for r in rejected}
        self._checked = {p: v for p, v in self._checked.items() if p in live}
        return StoreContents(models, partials, rejected)

    def installed(self) -> list[InstalledModel]:
        return self.scan().models

    def partials(self) -> list[PartialDownload]:
        return self.scan().partials

    def find(self, name: str) -> InstalledModel:
        """By file name or catalog id."""
        for model in self.installed():
            if name in (model.name, model.catalog_entry.id if model.catalog_entry else None):
                return model
        raise UnknownModel(f"No installed model is called {name!r}.")

    def usage(self) -> StoreUsage:
        contents = self.scan()
        return StoreUsage(
            models_bytes=sum(m.size_bytes for m in contents.models),
            partial_bytes=sum(p.bytes_done for p in contents.partials),
            free_bytes=self._free_space(_existing_ancestor(self.models_dir)),
        )

    # -- changes -------------------------------------------------------------------------
    def delete(self, name: str) -> int:
        """Remove a model and any partial download of it; returns the bytes freed."""
        base = name if name.endswith(MODEL_SUFFIX) else None
        if base is None:
            entry = next((e for e in self.catalog.entries() if e.id == name), None)
            base = entry.filename if entry else name
        target = self.models_dir / Path(base).name  # never outside the folder
        freed = 0
        found = False
        for path in (target, partial_path(target), state_path(target)):
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ModelsError(f"Could not delete {path.name}: {exc.strerror or exc}.") from exc
            found = True
            freed += size
        if not found:
            raise UnknownModel(f"No installed model or partial download is called {name!r}.")
        self._checked.pop(target, None)
        return freed

    def import_file(
        self,
        source: Path,
        *,
        overwrite: bool = False,
        progress: ImportProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> InstalledModel:
        """Validate a local GGML file, then link or copy it into the store atomically.

        A copy (the file is on another disk) reports progress(bytes_done, total) as it
        goes and stops with ImportCancelled once should_cancel() says so, leaving
        nothing behind. Both are called from the thread that imports."""
        source = Path(source).expanduser()
        from writer_app.engine.printable import printable

        try:
            regular = source.is_file()  # a FIFO is refused here, before anything opens it
        except OSError as exc:  # a folder we may not enter, a name too long
            raise InvalidModel(f"{printable(str(source))} could not be read: "
                               f"{exc.strerror or exc}.") from exc
        if not regular:
            raise InvalidModel(f"{printable(str(source))} does not exist or is not a file.")
        facts = self._validate(source)
        name = source.name if source.name.endswith(MODEL_SUFFIX) else source.name + MODEL_SUFFIX
        target = self.models_dir / name
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if target.exists():
            if os.path.samefile(source, target):
                return self._installed(target, facts)
            if not overwrite:
                raise ModelAlreadyInstalled(
                    f"A different model called {name} is already installed; remove it first."
                )
        self._link_or_copy(source, target, progress, should_cancel)
        self._checked.pop(target, None)
        return self._installed(target, facts)

    # -- internals -----------------------------------------------------------------------
    def _entries(self) -> list[Path]:
        try:
            return sorted(p for p in self.models_dir.iterdir() if p.is_file())
        except FileNotFoundError:
            return []

    def _checked_facts(self, path: Path) -> tuple[Any, str | None]:
        stat = path.stat()
        cached = self._checked.get(path)
        if cached is not None and cached[:2] == (stat.st_size, stat.st_mtime_ns):
            return cached[2], cached[3]
        try:
            facts, reason = self._validate(path), None
        except InvalidModel as exc:
            facts, reason = None, str(exc)
        self._checked[path] = (stat.st_size, stat.st_mtime_ns, facts, reason)
        return facts, reason

    def _installed(self, path: Path, facts: Any) -> InstalledModel:
        entry = self.catalog.by_filename(path.name)
        return InstalledModel(path.name, path, path.stat().st_size, entry, facts)

    def _partial(self, path: Path) -> PartialDownload:
        model_name = path.name.removesuffix(PARTIAL_SUFFIX)
        state = PartialState.load(state_path(path.with_name(model_name)))
        return PartialDownload(
            name=model_name,
            path=path,
            bytes_done=path.stat().st_size,
            total_bytes=state.size if state else None,
            catalog_entry=self.catalog.by_filename(model_name),
        )

    def _link_or_copy(
        self,
        source: Path,
        target: Path,
        progress: ImportProgress | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        try:
            if link_into_place(source, target):  # same filesystem: instant, no second copy
                return
        except OSError as exc:
            raise ModelsError(f"Could not import {source.name}: {exc.strerror or exc}.") from exc
        size = source.stat().st_size
        free = self._free_space(self.models_dir)
        if free < size:
            raise DiskFull(
                f"Importing {source.name} needs {_mb(size)} but only {_mb(free)} is free "
                f"in {self.models_dir}."
            )
        try:
            # A cancel raises inside the writer: the temp copy is removed, nothing is left.
            with open(source, "rb") as reader, AtomicWriter(target) as writer:
                done = 0
                while block := reader.read(COPY_BLOCK_BYTES):
                    if should_cancel is not None and should_cancel():
                        raise ImportCancelled(f"Importing {source.name} was cancelled.")
                    writer.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, size)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise DiskFull(f"The disk filled up while importing {source.name}.") from exc
            raise ModelsError(f"Could not copy {source.name}: {exc.strerror or exc}.") from exc


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.0f} MB"


def app_store(paths: AppPaths, models_dir: Path | None = None) -> ModelStore:
    """The store in the app's folder, or in `models_dir` (the writer's setting) if given."""
    return ModelStore(models_dir or paths.models_dir, catalog=app_catalog(paths))


def list_installed(paths: AppPaths, models_dir: Path | None = None) -> list[InstalledModel]:
    """For `writer-app models list`: installed, validated models."""
    return app_store(paths, models_dir).installed()


def import_model(
    paths: AppPaths, source: Path, *, overwrite: bool = False, models_dir: Path | None = None
) -> InstalledModel:
    """For `writer-app models import FILE`."""
    return app_store(paths, models_dir).import_file(source, overwrite=overwrite)


def remove_model(paths: AppPaths, name: str, models_dir: Path | None = None) -> int:
    """For `writer-app models remove NAME` (file name or catalog id): returns bytes freed."""
    return app_store(paths, models_dir).delete(name)
