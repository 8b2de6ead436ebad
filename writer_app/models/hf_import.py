"""Import a fine-tuned Hugging Face GPT-2 checkpoint folder as a GGML model file.

Steps, each of which can refuse the import with one sentence (InvalidCheckpoint,
DiskFull, ImportCancelled, ModelAlreadyInstalled) leaving nothing behind:
1. read config.json, the safetensors headers and the tokenizer, and check them all
   against each other before any work (checkpoint.py, hf_tokenizer.py);
2. check there is room for the result;
3. convert tensor by tensor from the memory-mapped weights into a hidden folder inside
   the models folder, through the engine's GGML writer and quantizer;
4. prove the conversion: the real engine (ctransformers, in a child process like the
   app's engine) and a numpy forward pass of the checkpoint's weights, as the chosen
   quantization rounds them, must give the same logits on a few tokens;
5. hand the file to the store's import, which links it into the folder atomically.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from writer_app.engine.ggml import is_big_matrix, weight_type
from writer_app.engine.ggml_writer import WeightsError, ggml_name, to_ggml_layout, write_gpt2
from writer_app.engine.quantize import round_trip
from writer_app.engine.reference_forward import gpt2_logits
from writer_app.engine.tokenizer import Tokenizer, TokenizerError
from writer_app.models.catalog import DEFAULT_QUANTIZATION
from writer_app.models.checkpoint import Checkpoint, open_checkpoint
from writer_app.models.errors import DiskFull, ImportCancelled, ModelAlreadyInstalled
from writer_app.models.hf_tokenizer import read_vocabulary
from writer_app.models.safetensors_file import InvalidCheckpoint
from writer_app.models.store import MODEL_SUFFIX, InstalledModel, ModelStore

QUANTIZATIONS = ("f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
# Largest |engine - numpy| / largest |numpy logit| that still counts as the same model.
# Measured on 12 tokens, with the demo model's trained weights and random GPT-2 weights
# (2-4 layers tied and untied, and gpt2-large's 36 layers): f32 <= 2.3e-4, f16 <= 3.8e-4
# (small models) and 7.7e-4 (gpt2-large), block types 6e-3 (2 layers) to 1.1e-2 (4) and 1.9e-2 (gpt2-large q4_0):
# ggml rounds the activations to 8 bits inside each product, which adds up with depth.
# One transposed attn.c_proj gave 0.10 (demo) to 0.66 (random small), and 0.15 (last
# layer) to 0.24 (middle layer) in gpt2-large q4_0. Each limit sits ~2.5x above the noise
# and ~3x below the smallest of those mistakes.
TOLERANCE = {"f32": 3e-3, "f16": 3e-3} | dict.fromkeys(QUANTIZATIONS[1:], 0.05)
CHECK_TEXT = "The letter was short, and she read it twice before"
CHECK_TOKENS = 12
DISK_MARGIN_BYTES = 16 * 1024 * 1024
STAGING_PREFIX = ".converting-"

Progress = Callable[[str, int, int], None]  # phase, done, total (any unit)
CancelCheck = Callable[[], bool]


class ConversionMismatch(InvalidCheckpoint):
    """The converted model does not compute what the checkpoint computes."""


@dataclass(frozen=True)
class ImportPlan:
    """What importing a folder will make, known before any conversion."""

    checkpoint: Checkpoint
    vocab: list[bytes]
    quantization: str
    name: str  # the model file name in the store
    output_bytes: int


def default_quantization(n_embd: int) -> str:
    """The catalog's recommendation (q4_0 for gpt2 and gpt2-large alike), or f16 where
    the block types can't split a row (n_embd not a multiple of 32)."""
    return DEFAULT_QUANTIZATION if n_embd % 32 == 0 else "f16"


def plan_import(source: Path, quantization: str | None = None) -> ImportPlan:
    checkpoint = open_checkpoint(Path(source))
    config = checkpoint.config
    vocab = read_vocabulary(checkpoint.folder, config.vocab_size)
    try:
        Tokenizer.from_vocab(vocab)
    except TokenizerError as exc:
        raise InvalidCheckpoint(f"{checkpoint.folder.name}'s tokenizer can't be used: {exc}") from exc
    quant = quantization or default_quantization(config.n_embd)
    if quant not in (*QUANTIZATIONS, "f32"):
        raise InvalidCheckpoint(f"{quant} is not a quantization writer-app can write "
                                f"(choose one of {', '.join(QUANTIZATIONS)}).")
    if weight_type(quant).quantized and config.n_embd % 32:
        raise InvalidCheckpoint(f"{quant} needs n_embd divisible by 32; this model has "
                                f"{config.n_embd}, so use f16.")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", checkpoint.folder.resolve().name).strip(".-")
    return ImportPlan(checkpoint, vocab, quant, f"{stem or 'model'}.{quant}{MODEL_SUFFIX}",
                      _output_bytes(checkpoint, quant, len(vocab)))


def import_checkpoint(
    source: Path,
    store: ModelStore,
    *,
    quantization: str | None = None,
    progress: Progress | None = None,
    should_cancel: CancelCheck | None = None,
) -> InstalledModel:
    """Convert, prove and add a checkpoint folder (or a file in one) to `store`."""
    plan = plan_import(source, quantization)
    report = progress or (lambda phase, done, total: None)
    cancelled = should_cancel or (lambda: False)
    target = store.models_dir / plan.name
    if target.exists():
        raise ModelAlreadyInstalled(
            f"A model called {plan.name} is already installed; remove it first.")
    free = store.usage().free_bytes
    if free < plan.output_bytes + DISK_MARGIN_BYTES:
        raise DiskFull(f"Importing {plan.checkpoint.folder.name} as {plan.quantization} needs "
                       f"{_mb(plan.output_bytes)} but only {_mb(free)} is free in "
                       f"{store.models_dir}.")
    store.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=store.models_dir))
    try:
        converted = staging / plan.name
        config = plan.checkpoint.config
        watched = _Watched(plan.checkpoint, report, cancelled)
        try:
            write_gpt2(converted, watched, vocab=plan.vocab, n_ctx=config.n_positions,
                       n_head=config.n_head, ftype=plan.quantization)
        except WeightsError as exc:
            raise InvalidCheckpoint(f"{plan.checkpoint.folder.name} can't be converted: {exc}") from exc
        if cancelled():
            raise ImportCancelled(f"Importing {plan.checkpoint.folder.name} was cancelled.")
        converted.chmod(0o644)  # like a downloaded model, not mkstemp's owner-only
        report("checking", 0, 1)
        check_conversion(plan, converted)
        report("checking", 1, 1)
        if cancelled():  # pressed while the proof ran (it can't stop midway): keep nothing
            raise ImportCancelled(f"Importing {plan.checkpoint.folder.name} was cancelled.")
        model = store.import_file(converted, progress=lambda d, t: report("adding", d, t),
                                  should_cancel=cancelled)  # a link: usually no progress
        report("adding", 1, 1)
        return model
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_tokens(plan: ImportPlan) -> list[int]:
    """A short English prompt, plus the last row of the vocabulary (an added token, if any)."""
    config = plan.checkpoint.config
    ids = Tokenizer.from_vocab(plan.vocab).encode(CHECK_TEXT)[:CHECK_TOKENS - 1]
    ids.append(config.vocab_size - 1)
    return ids[:config.n_positions]


def logit_error(plan: ImportPlan, path: Path, tokens: list[int] | None = None) -> float:
    """max |engine logit - numpy logit| / max |numpy logit| on the check tokens."""
    tokens = tokens if tokens is not None else check_tokens(plan)
    engine = engine_logits(path, tokens)
    config = plan.checkpoint.config
    expected = gpt2_logits(RoundedWeights(plan.checkpoint, plan.quantization), tokens,
                           n_layer=config.n_layer, n_head=config.n_head,
                           eps=config.layer_norm_epsilon)
    scale = float(np.abs(expected).max()) or 1.0
    return float(np.abs(engine - expected).max()) / scale


def check_conversion(plan: ImportPlan, path: Path) -> None:
    error = logit_error(plan, path)
    limit = TOLERANCE[plan.quantization]
    if not error <= limit:
        raise ConversionMismatch(
            f"The converted {plan.checkpoint.folder.name} does not compute what the checkpoint "
            f"computes (its logits differ by {error:.1%} where {plan.quantization} allows "
            f"{limit:.1%}), so it was not imported."
        )


class RoundedWeights(Mapping[str, np.ndarray]):
    """The checkpoint's weights as the engine sees them after quantizing to `ftype`:
    the six big matrices are rounded in file layout (blocks run along ggml rows). The
    embedding and head come as _RoundedRows, so the forward pass reads (and rounds) only
    the rows it uses at a time rather than a whole vocabulary-sized copy."""

    def __init__(self, weights: Checkpoint, ftype: str) -> None:
        self._weights, self._ftype = weights, ftype

    def __getitem__(self, name: str) -> np.ndarray:
        if name in ("transformer.wte.weight", "lm_head.weight"):
            return _RoundedRows(self._weights, name, self._ftype)  # type: ignore[return-value]
        array = self._weights[name]
        if not is_big_matrix(ggml_name(name)):
            return np.asarray(array, dtype=np.float32)
        stored = round_trip(to_ggml_layout(name, array), self._ftype)
        return stored.T if name.startswith("transformer.h.") else stored

    def __contains__(self, name: object) -> bool:
        return name in self._weights

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)


class _RoundedRows:
    """Row slices of a [rows, n_embd] matrix stored with blocks along its rows."""

    def __init__(self, checkpoint: Checkpoint, name: str, ftype: str) -> None:
        self._checkpoint, self._name, self._ftype = checkpoint, name, ftype
        self.shape = checkpoint.shape(name)

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        return round_trip(self._checkpoint.rows(self._name, rows), self._ftype)


def engine_logits(path: Path, tokens: list[int]) -> np.ndarray:
    """Logits [T, V] from ctransformers, in a child process like the app's engine, so a
    native crash on a bad file can't take the importer (or the app) with it."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            return pool.submit(_engine_logits_in_child, str(path), list(tokens)).result()
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise ConversionMismatch(f"The engine crashed loading the converted "
                                     f"{path.name}, so it was not imported.") from exc
        except Exception as exc:  # the engine's own errors, pickled back
            raise ConversionMismatch(f"The engine could not run the converted {path.name} "
                                     f"({exc}), so it was not imported.") from exc


def _engine_logits_in_child(path: str, tokens: list[int]) -> np.ndarray:
    from writer_app.engine.backend import CTransformersBackend

    backend = CTransformersBackend.load(path)
    try:
        rows = []
        for end in range(1, len(tokens) + 1):
            backend.evaluate(tokens[:end])  # reuses the cached prefix: one token each
            rows.append(np.array(backend.logits(), dtype=np.float32))
        return np.stack(rows)
    finally:
        backend.close()


class _Watched(Mapping[str, np.ndarray]):
    """The checkpoint as write_gpt2 reads it: reports progress, stops when cancelled."""

    def __init__(self, checkpoint: Checkpoint, report: Progress, cancelled: CancelCheck) -> None:
        self._checkpoint, self._report, self._cancelled = checkpoint, report, cancelled
        self._total = sum(checkpoint.nbytes(name) for name in checkpoint)
        self._seen: set[str] = set()
        self._done = 0

    def __getitem__(self, name: str) -> np.ndarray:
        if self._cancelled():
            raise ImportCancelled(f"Importing {self._checkpoint.folder.name} was cancelled.")
        if name not in self._seen:
            self._seen.add(name)
            self._done += self._checkpoint.nbytes(name)
        array = self._checkpoint[name]
        self._report("converting", self._done, self._total)
        return array

    def __contains__(self, name: object) -> bool:
        return name in self._checkpoint

    def __iter__(self) -> Iterator[str]:
        return iter(self._checkpoint)

    def __len__(self) -> int:
        return len(self._checkpoint)


def _output_bytes(checkpoint: Checkpoint, quant: str, n_vocab: int) -> int:
    wtype = weight_type(quant)
    size = 28 + 4 + n_vocab * 16  # header, vocabulary (tokens average under 12 bytes)
    for name in checkpoint:
        count = checkpoint.nbytes(name) // 4
        size += 64 + (wtype.nbytes(count) if is_big_matrix(ggml_name(name)) else 4 * count)
    return size


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.0f} MB"
