"""The models a writer can download, and what the hub last told us about their files.

All file names, sizes and hashes live in the tables below, so a renamed upstream file is a
one-line fix. Sizes and sha256 for gpt2 and gpt2-large were copied from the repository's
Git LFS pointers; the others are approximate until the hub is asked (Catalog.refresh), and
the hub's answer is cached as JSON so the catalog also works offline.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from writer_app.engine.ggml import ModelFacts, weight_type
from writer_app.engine.memory import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_ENGINE,
    app_resident_within_budget,
)
from writer_app.models.errors import UnknownModel
from writer_app.safe_files import write_text_atomic

if TYPE_CHECKING:
    from writer_app.models.hub import HubClient, RemoteFile
    from writer_app.paths import AppPaths

REPO_ID = "Crataco/GPT-2-Series-GGML"  # MIT; GGML files made for ctransformers' gpt2 loader
LICENSE = "MIT"
QUANTIZATIONS = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "f16")
MB = 1_000_000
GIB = 1024**3

CONTEXT_LENGTH = 1024  # every GPT-2 size
GPT2_VOCAB = 50257
# gpt2-large q4_0 needs ~0.9 GB; below this much total RAM, the small model is the safe pick.
LARGE_MODEL_MIN_RAM = 8 * GIB


@dataclass(frozen=True)
class _Family:
    family: str
    display_name: str
    file_prefix: str
    n_layer: int
    n_embd: int
    n_head: int
    extra: bool  # shown only when the writer asks for more models


_FAMILIES = (
    _Family("gpt2", "GPT-2 Small (124M)", "gpt2-124M", 12, 768, 12, extra=False),
    _Family("gpt2-medium", "GPT-2 Medium (355M)", "gpt2-355M", 24, 1024, 16, extra=True),
    _Family("gpt2-large", "GPT-2 Large (774M)", "gpt2-774M", 36, 1280, 20, extra=False),
    _Family("gpt2-xl", "GPT-2 XL (1.5B)", "gpt2-1.5B", 48, 1600, 25, extra=True),
)

# (file prefix, quantization) -> (size in bytes, sha256 or None when not known up front)
# fmt: off
_FILES: dict[tuple[str, str], tuple[int, str | None]] = {
    ("gpt2-124M", "q4_0"): (73645129, "a1c5508151c62b7333a7dba6ce3e7067562825c48e311151b2cd7846e9889926"),
    ("gpt2-124M", "q4_1"): (81365881, "84ebf6947978ebb54865cb3177a90f7e563b9bafe9e4a21e5288145ae2b4ef6f"),
    ("gpt2-124M", "q5_0"): (89086633, "c8c134f62638af076157046f4fb3ae38639b3e35915fbf3c9833ef27c16d2de4"),
    ("gpt2-124M", "q5_1"): (96807385, "d478561bbd648e39660a37d1eda694ce9db99357b6a130ef52d3335274d850e8"),
    ("gpt2-124M", "q8_0"): (135411145, "f35c52a22fcf4bf06e9984a7b281f256d473f3c8025d86e199262a0a4f1db070"),
    ("gpt2-124M", "f16"): (251222425, "b457d5fcc7f2f71e727bee74298d42d80610619e02af16beca53d44a71d5f607"),
    ("gpt2-355M", "q4_0"): (205 * MB, None),
    ("gpt2-355M", "q4_1"): (227 * MB, None),
    ("gpt2-355M", "q5_0"): (249 * MB, None),
    ("gpt2-355M", "q5_1"): (271 * MB, None),
    ("gpt2-355M", "q8_0"): (382 * MB, None),
    ("gpt2-355M", "f16"): (713 * MB, None),
    ("gpt2-774M", "q4_0"): (442503529, "d947f327e4580beb6afa99ac62a1fb080b5a618bfa465028d28d1f0b81e3154c"),
    ("gpt2-774M", "q4_1"): (490760889, "bde1a24f706f544ebe6bbbaf82980b56ffa47a118f76f910d45bf7cb0eb90918"),
    ("gpt2-774M", "q5_0"): (539018249, "8f84e35172c0e7abe2058350d32444024ad6e1abe6dc278fe28e74dc2e2094cf"),
    ("gpt2-774M", "q5_1"): (587275609, "2b3608383898bd764dc500a44442ba0a475ece76a4270b40123743fb0589242d"),
    ("gpt2-774M", "q8_0"): (828562409, "964ca78cdc0d8f5429b883e34c14754d59f7f0b6a9eea16e618db82fe7ba7a3a"),
    ("gpt2-774M", "f16"): (1552422809, "44b54a6ab261de692b791d6492940de6e606182158e60d59a630c26a38e3ccf8"),
    ("gpt2-1.5B", "q4_0"): (886 * MB, None),
    ("gpt2-1.5B", "q4_1"): (983 * MB, None),
    ("gpt2-1.5B", "q5_0"): (1080 * MB, None),
    ("gpt2-1.5B", "q5_1"): (1180 * MB, None),
    ("gpt2-1.5B", "q8_0"): (1660 * MB, None),
    ("gpt2-1.5B", "f16"): (3120 * MB, None),
}
# fmt: on


@dataclass(frozen=True)
class CatalogEntry:
    id: str  # "gpt2-large-q4_0"
    family: str  # "gpt2-large"
    display_name: str  # "GPT-2 Large (774M)"
    repo_id: str
    filename: str
    quantization: str
    approx_size_bytes: int
    ram_bytes: int  # the whole app's resident memory with it, at the default memory budget
    license: str
    extra: bool
    known_sha256: str | None = None
    revision: str = "main"

    @property
    def label(self) -> str:
        return f"{self.display_name}, {self.quantization}"


def expected_facts(fam: _Family, quantization: str, file_size: int) -> ModelFacts:
    """What the engine will know about a file once it is here, from its family's shape:
    enough for engine/memory.py's model, the one model of memory the whole app uses."""
    # These files tie the output head to the embedding, and gpt2.cc copies it.
    head_copy = weight_type(quantization).nbytes(GPT2_VOCAB * fam.n_embd)
    return ModelFacts(
        path=Path(f"{fam.file_prefix}.{quantization}.bin"), n_vocab=GPT2_VOCAB,
        n_ctx=CONTEXT_LENGTH, n_embd=fam.n_embd, n_head=fam.n_head, n_layer=fam.n_layer,
        ftype=0, quantization=quantization, has_lm_head=False, parameter_count=0,
        file_size=file_size, eos_token_id=GPT2_VOCAB - 1,
        weight_bytes=file_size + head_copy,
    )


def ram_bytes_within(entry: CatalogEntry, budget_bytes: int | None, engine: str = DEFAULT_ENGINE) -> int:
    """The whole app's resident memory with `entry` loaded on `engine` under this budget."""
    fam = next(f for f in _FAMILIES if f.family == entry.family)
    facts = expected_facts(fam, entry.quantization, entry.approx_size_bytes)
    return app_resident_within_budget(facts, budget_bytes, engine)


def _build_entries() -> tuple[CatalogEntry, ...]:
    entries = []
    for fam in _FAMILIES:
        for quant in QUANTIZATIONS:
            size, sha256 = _FILES[(fam.file_prefix, quant)]
            entries.append(
                CatalogEntry(
                    id=f"{fam.family}-{quant}",
                    family=fam.family,
                    display_name=fam.display_name,
                    repo_id=REPO_ID,
                    filename=f"{fam.file_prefix}.{quant}.bin",
                    quantization=quant,
                    approx_size_bytes=size,
                    ram_bytes=app_resident_within_budget(
                        expected_facts(fam, quant, size), DEFAULT_BUDGET_BYTES),
                    license=LICENSE,
                    extra=fam.extra,
                    known_sha256=sha256,
                )
            )
    return tuple(entries)


CATALOG: tuple[CatalogEntry, ...] = _build_entries()
DEFAULT_QUANTIZATION = "q4_0"  # smallest file and RAM; quality loss is hard to notice
DEFAULT_ENTRY_ID = "gpt2-q4_0"
LARGE_ENTRY_ID = "gpt2-large-q4_0"


@dataclass(frozen=True)
class HubFileFacts:
    """The hub's exact answer for one file, as cached on disk."""

    size: int
    sha256: str | None
    revision: str
    fetched_at: float  # time.time()


class HubMetadataCache:
    """hub-metadata.json in the cache folder: {"repo/filename": HubFileFacts fields}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._facts = self._load()

    def get(self, repo_id: str, filename: str) -> HubFileFacts | None:
        return self._facts.get(f"{repo_id}/{filename}")

    def put(self, repo_id: str, filename: str, facts: HubFileFacts) -> None:
        self._facts[f"{repo_id}/{filename}"] = facts
        self._save()

    def _load(self) -> dict[str, HubFileFacts]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {key: HubFileFacts(**value) for key, value in raw["files"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # missing or damaged: it is only a cache, the hub can refill it

    def _save(self) -> None:
        data = {"version": 1, "files": {k: vars(v) for k, v in self._facts.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))


@dataclass(frozen=True)
class CatalogItem:
    """A catalog entry with the best size and hash we know for it."""

    entry: CatalogEntry
    size_bytes: int
    sha256: str | None
    from_hub: bool  # size and sha256 came from the hub (now or from the cache)


class Catalog:
    def __init__(
        self, entries: tuple[CatalogEntry, ...] = CATALOG, cache: HubMetadataCache | None = None
    ) -> None:
        self._entries = entries
        self.cache = cache

    def entries(self, *, include_extras: bool = True) -> list[CatalogEntry]:
        return [e for e in self._entries if include_extras or not e.extra]

    def get(self, entry_id: str) -> CatalogEntry:
        for entry in self._entries:
            if entry.id == entry_id:
                return entry
        known = ", ".join(e.id for e in self._entries if not e.extra)
        raise UnknownModel(f"There is no model called {entry_id!r} in the catalog (try {known}).")

    def resolve(self, name: str, quantization: str | None = None) -> CatalogEntry:
        """What the writer typed: an id ("gpt2-large-q8_0"), a family ("gpt2-large", with
        `quantization` or else q4_0, the smallest), or a file name ("gpt2-774M.q4_0.bin")."""
        for entry in self._entries:
            if name in (entry.id, entry.filename) and quantization in (None, entry.quantization):
                return entry
        families = {e.family for e in self._entries}
        if name in families:
            return self.get(f"{name}-{quantization or DEFAULT_QUANTIZATION}")
        return self.get(name if quantization is None else f"{name}-{quantization}")

    def by_filename(self, filename: str) -> CatalogEntry | None:
        return next((e for e in self._entries if e.filename == filename), None)

    def item(self, entry: CatalogEntry) -> CatalogItem:
        facts = self.cache.get(entry.repo_id, entry.filename) if self.cache else None
        if facts is not None:
            return CatalogItem(entry, facts.size, facts.sha256, from_hub=True)
        return CatalogItem(entry, entry.approx_size_bytes, entry.known_sha256, from_hub=False)

    def items(self, *, include_extras: bool = True) -> list[CatalogItem]:
        return [self.item(e) for e in self.entries(include_extras=include_extras)]

    def remember(self, remote: RemoteFile) -> None:
        """Cache what the hub said about a file (the downloader calls this)."""
        if self.cache is not None:
            facts = HubFileFacts(remote.size, remote.sha256, remote.revision, time.time())
            self.cache.put(remote.repo_id, remote.filename, facts)

    def refresh(self, hub: HubClient, *, include_extras: bool = True) -> list[CatalogItem]:
        """Ask the hub for exact sizes and hashes (one request per repository)."""
        wanted = self.entries(include_extras=include_extras)
        for repo_id in sorted({e.repo_id for e in wanted}):
            names = [e.filename for e in wanted if e.repo_id == repo_id]
            for remote in hub.files_info(repo_id, names).values():
                self.remember(remote)
        return [self.item(e) for e in wanted]

    def recommended(self, total_ram_bytes: int | None = None) -> CatalogEntry:
        """gpt2-large q4_0 when the machine clearly has room for it, else gpt2 q4_0."""
        ram = total_ram_bytes if total_ram_bytes is not None else system_memory_bytes()
        if ram is not None and ram >= LARGE_MODEL_MIN_RAM:
            return self.get(LARGE_ENTRY_ID)
        return self.get(DEFAULT_ENTRY_ID)


def system_memory_bytes() -> int | None:
    """Total physical memory, or None when the platform will not say."""
    if sys.platform == "win32":
        return _windows_memory_bytes()
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _windows_memory_bytes() -> int | None:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.ullTotalPhys)


def metadata_cache_path(paths: AppPaths) -> Path:
    return paths.cache_dir / "hub-metadata.json"


def app_catalog(paths: AppPaths) -> Catalog:
    """The catalog with the app's on-disk hub metadata cache."""
    return Catalog(cache=HubMetadataCache(metadata_cache_path(paths)))


def list_catalog(paths: AppPaths, *, include_extras: bool = False) -> list[CatalogItem]:
    """For `writer-app models list`: what can be downloaded, with the best known sizes."""
    return app_catalog(paths).items(include_extras=include_extras)


def catalog_as_dicts(items: list[CatalogItem]) -> list[dict[str, Any]]:
    """Plain data for JSON output."""
    return [
        {
            "id": item.entry.id,
            "name": item.entry.label,
            "filename": item.entry.filename,
            "size_bytes": item.size_bytes,
            "ram_bytes": item.entry.ram_bytes,
            "sha256": item.sha256,
            "license": item.entry.license,
        }
        for item in items
    ]
