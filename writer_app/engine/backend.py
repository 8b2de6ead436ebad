"""The ctransformers backend: the only module that imports ctransformers.

It implements the Backend Protocol (engine/protocol.py); the sampling, streaming and
stopping helpers it shares with every other engine are in engine/generation.py.

Runs inside the engine process (see process.py), from one thread. It never sees text:
prompts arrive as token ids, and generated tokens are decoded from the vocabulary read
out of the (validated) model file, because ctransformers' own tokenizer corrupts memory
on emoji and CJK.

Guards against the native library's known failure modes:
  * every file passes validate_model_file() before ctransformers opens it;
  * every token id is checked against the vocabulary before it reaches native code;
  * nothing is evaluated past n_ctx (ctransformers would silently overwrite its cache);
  * prompts are evaluated in chunks no larger than safe_batch_size() allows, because
    gpt2.cc builds each evaluation in a fixed 256 MiB buffer and crashes when the graph
    outgrows it (see eval_buffer_bytes() for the arithmetic); a generation's prompt goes
    one token per call, so a cancel takes effect within one token's time;
  * top_k 0 ("off") is passed as the vocabulary size, since 0.2.27 misbehaves on <= 0;
  * temperature 0 never reaches native code (it would divide by zero): greedy is argmax.

Seeds: ctransformers_llm_sample seeds a fresh mt19937 with the given seed on every call,
so one fixed seed would draw the same random number for every token. Each token gets
its own seed derived from (request seed, step) instead (generation.derive_seed):
reproducible, yet independent.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from ctypes import c_int
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from writer_app.engine.generation import (
    GenerationRun,
    penalize,
    prompt_window,
    softmax,
    top_alternatives,
)
from writer_app.engine.ggml import ModelFacts, path_for_native_code, read_layout
from writer_app.engine.protocol import (
    Alternative,
    CancelCheck,
    ContextOverflowError,
    EvaluationError,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    ModelLoadError,
    TokenEvent,
    check_token_ids,
)
from writer_app.engine.sampling import SamplingSettings
from writer_app.engine.window import Window

MAX_BATCH = 32  # more tokens per native call hardly speed up GPT-2 on a CPU
# A generation's own prompt goes one token per native call, so an edit cancels it within
# one token's time: a batch of 2 already takes ~1.4x one token here (gpt2 q4_0 at 800
# tokens of context: 23 ms for 1, 33 for 2, 83 for 8). Prewarming, which nobody waits to
# cancel, goes in batches of 4: 1.4-1.7x faster than one at a time on a cold prompt, and
# within 10-20% of batches of 8, whose scratch memory would cost gpt2-large 38 MiB more
# (peak 808 MiB against 770 at 448 tokens of context; see engine/memory.py). A request
# nobody will cancel for an edit (GenerationRequest.interactive False: the command line)
# reads its prompt in PREWARM_CHUNKs too: `writer-app generate` reads a fresh prompt for
# nearly every sample.
GENERATION_CHUNK = 1
PREWARM_CHUNK = 4
# gpt2.cc evaluates in a static 256 MiB buffer (it only grows it from a per-token
# estimate measured on the first call, which ignores the context length).
EVAL_BUFFER_BYTES = 256 * 1024 * 1024
EVAL_BUFFER_SAFETY = 0.9  # stay this far below the buffer: room for counting errors


def library_variant() -> str:
    """avx2, avx or basic, from the CPU's flags (ctransformers' own detection takes ~1 s)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "basic"
    flags = _cpu_flags()
    if "avx2" in flags:
        return "avx2"
    if "avx" in flags and "f16c" in flags:
        return "avx"
    return "basic"


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
        return set()
    if platform.system() == "Windows":
        import ctypes

        present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined]
        # PF_AVX_INSTRUCTIONS_AVAILABLE = 39, PF_AVX2_INSTRUCTIONS_AVAILABLE = 40; every
        # AVX-capable x86 CPU Windows runs on also has F16C.
        return {name for name, code in (("avx", 39), ("avx2", 40)) if present(code)} | (
            {"f16c"} if present(39) else set()
        )
    if platform.system() == "Darwin":
        import subprocess

        keys = ["machdep.cpu.features", "machdep.cpu.leaf7_features"]
        found = subprocess.run(["sysctl", "-n", *keys], capture_output=True, text=True)
        return {flag.lower().replace(".", "_") for flag in found.stdout.split()}
    return set()


def library_path(variant: str | None = None) -> str:
    _import_ctransformers_lightly()
    from ctransformers.lib import find_library

    return find_library(variant or library_variant())


def _import_ctransformers_lightly() -> None:
    """Make `ctransformers.llm` importable without running ctransformers/__init__.py.

    The package's __init__ also imports its Hugging Face hub helpers, which pull in
    huggingface_hub and an HTTP stack: ~0.7 s on every engine start, for nothing the
    engine uses. The package module is created empty instead; the first access to one
    of its own attributes (`from ctransformers import LLM` elsewhere) runs the real
    __init__ then, so nobody else notices the difference.
    """
    if "ctransformers" in sys.modules:
        return
    spec = importlib.util.find_spec("ctransformers")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # an unusual installation: the ordinary import will do

    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def finish_import(name: str) -> object:
        del package.__getattr__  # type: ignore[attr-defined]  # once is enough
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = finish_import  # type: ignore[attr-defined]  # PEP 562
    sys.modules["ctransformers"] = package


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int

    @classmethod
    def of(cls, facts: ModelFacts) -> ModelShape:
        return cls(facts.n_layer, facts.n_embd, facts.n_head, facts.n_vocab)


def eval_buffer_bytes(n_tokens: int, n_past: int, shape: ModelShape) -> int:
    """Bytes gpt2_eval() allocates in its buffer to evaluate n_tokens after n_past.

    Counted from ctransformers 0.2.27 models/llms/gpt2.cc, per layer: the transposed copy
    of V over the whole context ((n_past + N) x n_embd: this is what grows with the
    context), the attention scores ((n_past + N) x N x n_head) and 46 activations of
    N x n_embd (norms, bias repeats, qkv, 4x-wide MLP, residuals); then N x n_vocab
    logits. It predicts the measured gpt2-large crashes to within 0.1%: batch 8 at
    n_past ~950 and batch 16 at ~544 both need just over 256 MiB.
    """
    n, kv, e = n_tokens, n_past + n_tokens, shape.n_embd
    per_layer = kv * e + kv * n * shape.n_head + 46 * n * e
    floats = shape.n_layer * per_layer + n * shape.n_vocab + 8 * n * e
    tensor_headers = (48 * shape.n_layer + 32) * 512
    return 4 * floats + tensor_headers


def safe_batch_size(n_past: int, remaining: int, shape: ModelShape, max_batch: int) -> int:
    """The largest chunk (at least 1, at most max_batch and remaining) that fits the
    buffer with a safety margin. Shrinks as the context fills; 1 near the end."""
    limit = EVAL_BUFFER_BYTES * EVAL_BUFFER_SAFETY
    size = max(1, min(max_batch, remaining))
    while size > 1 and eval_buffer_bytes(size, n_past, shape) > limit:
        size -= 1
    return size


class CTransformersBackend:
    """One GPT-2 model loaded into ctransformers, with a prefix-reusing KV cache.
    A protocol.Backend."""

    def __init__(
        self, llm: object, facts: ModelFacts, vocab: list[bytes], threads: int, n_ctx: int
    ) -> None:
        # Use load(); this constructor trusts its arguments.
        self._llm = llm
        self.facts = facts
        self._vocab = vocab
        self._threads = threads
        self.n_ctx = n_ctx
        self.gpu_layers = 0  # ctransformers computes GPT-2 on the CPU only
        self._shape = ModelShape.of(facts)
        self._context: list[int] = []  # tokens whose keys/values are in the cache, in order

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, threads: int = 1, context_length: int | None = None
    ) -> CTransformersBackend:
        """Validate and load a GGML GPT-2 file. Raises InvalidModelFile or ModelLoadError.

        context_length only lowers the usable context: ctransformers sizes GPT-2's
        position table from it, so passing it through would make the file unloadable.
        """
        layout = read_layout(path)  # raises InvalidModelFile before native code sees it
        facts = layout.facts
        lib = library_path()
        from ctransformers.llm import LLM, Config

        try:
            llm = LLM(path_for_native_code(path), "gpt2", config=Config(threads=threads), lib=lib)
        except (RuntimeError, ValueError, OSError) as error:
            raise ModelLoadError(
                f"ctransformers could not load {Path(path).name}: {error}"
            ) from error
        n_ctx = min(facts.n_ctx, context_length or facts.n_ctx)
        return cls(llm, facts, layout.vocab, max(1, threads), n_ctx)

    @property
    def n_vocab(self) -> int:
        return self.facts.n_vocab

    @property
    def eos_id(self) -> int | None:
        return self.facts.eos_token_id

    def close(self) -> None:
        self._llm = None  # LLM.__del__ frees the native model

    # ---- evaluation ------------------------------------------------------------------

    def check_ids(self, token_ids: Sequence[int]) -> list[int]:
        return check_token_ids(token_ids, self.n_vocab)

    def evaluate(
        self,
        token_ids: Sequence[int],
        should_cancel: CancelCheck | None = None,
        *,
        max_chunk: int = MAX_BATCH,
    ) -> int:
        """Bring the cache to exactly `token_ids`; returns how many had to be evaluated.

        The longest prefix shared with what is already cached is kept (ctransformers is
        told the explicit n_past), so only the new tail costs time. Tokens go to native
        code in chunks of at most max_chunk, and fewer where the evaluation buffer
        requires (safe_batch_size). should_cancel is checked between chunks; ggml can't
        be stopped mid-call, so a cancel waits for the chunk in progress. If cancelled,
        the cache holds a prefix that a later call continues from; check
        should_cancel() afterwards to know.
        """
        ids = self.check_ids(token_ids)
        if not ids:
            raise ContextOverflowError("Nothing to evaluate: the prompt is empty.")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(
                f"{len(ids)} tokens do not fit in the model's context of {self.n_ctx}."
            )
        # Keep at least one token to evaluate unless the cache already ends exactly here
        # (then the current logits are the ones for this prompt).
        keep = _common_prefix(self._context, ids)
        if keep == len(ids) == len(self._context):
            return 0
        keep = min(keep, len(ids) - 1)
        del self._context[keep:]
        evaluated = 0
        while len(self._context) < len(ids):
            if should_cancel is not None and should_cancel():
                break
            n_past = len(self._context)
            size = safe_batch_size(n_past, len(ids) - n_past, self._shape, max_chunk)
            self._eval_chunk(ids[n_past : n_past + size])
            evaluated += size
        return evaluated

    def _eval_chunk(self, chunk: list[int]) -> None:
        n_past = len(self._context)
        if n_past + len(chunk) > self.n_ctx:
            raise ContextOverflowError(f"Evaluating past the model's context of {self.n_ctx}.")
        array = (c_int * len(chunk))(*chunk)
        ok = self._llm.ctransformers_llm_batch_eval(  # type: ignore[attr-defined]
            array, len(chunk), n_past, len(chunk), self._threads
        )
        if not ok:
            self._context.clear()  # the cache state is unknown now
            raise EvaluationError("ctransformers failed to evaluate the prompt.")
        self._context.extend(chunk)

    def logits(self) -> np.ndarray:
        """The next-token logits for the cached context: a read-only view into native
        memory, valid until the next evaluation (copy it to keep it)."""
        if not self._context:
            raise ContextOverflowError("No logits yet: nothing has been evaluated.")
        llm = self._llm
        size = llm.ctransformers_llm_logits_size()  # type: ignore[attr-defined]
        pointer = llm.ctransformers_llm_logits_data()  # type: ignore[attr-defined]
        view = np.ctypeslib.as_array(pointer, shape=(size,))[size - self.n_vocab :]
        view.flags.writeable = False
        return view

    # ---- probabilities ---------------------------------------------------------------

    def token_text(self, token_id: int) -> str:
        return self._vocab[token_id].decode("utf-8", errors="replace")

    def next_token_probs(
        self, prompt_ids: Sequence[int], temperature: float, top_n: int
    ) -> tuple[Alternative, ...]:
        """The top_n most likely next tokens after the (windowed) prompt."""
        self.evaluate(self._window(prompt_ids, 1).tokens)
        return top_alternatives(softmax(self.logits(), temperature), top_n, self.token_text)

    def prewarm(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        should_cancel: CancelCheck | None = None,
        upcoming_ids: Sequence[int] = (),
        ahead: GenerationRequest | None = None,
    ) -> int:
        """Evaluate the prompt a later generate() will use, so its cache is hot (its
        logits too: `ahead` is ignored). upcoming_ids is ignored: ctransformers has one
        sequence to keep a cache in."""
        window = self._window(prompt_ids, max_tokens)
        return self.evaluate(window.tokens, should_cancel, max_chunk=PREWARM_CHUNK)

    def _window(self, prompt_ids: Sequence[int], max_tokens: int) -> Window:
        return prompt_window(prompt_ids, self.facts, self.n_ctx, max_tokens)

    # ---- generation ------------------------------------------------------------------

    def generate(
        self, request: GenerationRequest, should_cancel: CancelCheck | None = None
    ) -> Iterator[TokenEvent | FinishEvent]:
        """Stream the suggestion token by token; the last event is always a FinishEvent.
        should_cancel makes it interruptible between tokens (see evaluate())."""
        window = self._window(request.prompt_ids, request.settings.max_tokens)
        started = time.perf_counter()
        chunk = GENERATION_CHUNK if request.interactive else PREWARM_CHUNK
        evaluated = self.evaluate(window.tokens, should_cancel, max_chunk=chunk)
        prompt_done = time.perf_counter()
        run = GenerationRun(request)
        should_cancel = should_cancel or _never
        if should_cancel():
            run.reason = FinishReason.CANCELLED
        else:
            yield from self._sample_loop(run, window.max_new_tokens, should_cancel)
        yield run.finish(
            prompt_tokens=len(window.tokens),
            evaluated_tokens=evaluated,
            window_start=window.start,
            prompt_eval_ms=(prompt_done - started) * 1000,
            generation_ms=(time.perf_counter() - prompt_done) * 1000,
        )

    def _sample_loop(
        self, run: GenerationRun, max_new: int, should_cancel: CancelCheck
    ) -> Iterator[TokenEvent]:
        request = run.request
        for step in range(max_new):
            if should_cancel():
                run.reason = FinishReason.CANCELLED
                return
            token = self._sample(run.settings, run.step_seed(step))
            probability, alternatives = None, ()
            if request.with_probs:
                probs = softmax(self.logits(), run.settings.temperature)
                probability = float(probs[token])
                alternatives = top_alternatives(probs, request.top_n, self.token_text)
            if token == self.eos_id:
                run.reason = FinishReason.EOS
                return
            event = run.accept(token, self._vocab[token], probability, alternatives)
            if event is not None:
                yield event
            if run.stopped:
                return
            if should_cancel():  # before the token's evaluation, the one costly step
                run.reason = FinishReason.CANCELLED
                return
            if step + 1 < max_new:
                self._eval_chunk([token])
        run.reason = FinishReason.LENGTH

    def _sample(self, settings: SamplingSettings, seed: int) -> int:
        recent = self._context[-settings.repetition_window :] if settings.repetition_window else []
        if settings.greedy:
            logits = np.array(self.logits(), dtype=np.float64)
            penalize(logits, recent, settings.repetition_penalty)
            return int(np.argmax(logits))
        top_k = settings.top_k if 0 < settings.top_k <= self.n_vocab else self.n_vocab
        last = (c_int * len(recent))(*recent)
        token = self._llm.ctransformers_llm_sample(  # type: ignore[attr-defined]
            last,
            len(recent),
            top_k,
            settings.top_p,
            settings.temperature,
            settings.repetition_penalty,
            seed,
        )
        return self.check_ids([token])[0]


def _never() -> bool:
    return False


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
