"""How much memory a loaded model takes, and how much context fits a memory budget.

Each engine's process holds, measured on gpt2- and gpt2-large-shaped q4_0 files:

ctransformers: weights (as gpt2.cc holds them: the tensors and a copy of a tied output
head) + ~46 MiB (interpreter, numpy, the library) + up to ~34 MiB (the scratch of a
4-token prewarm evaluation) + 12 bytes x n_layer x n_embd per token of context in use:
f32 keys and values in the cache (8) and the transposed copy of V that gpt2.cc makes
over the whole context on every evaluation (4). gpt2: 137 MiB after load, 226 MiB at 800
tokens; gpt2-large: 503 MiB after load, 941 MiB at 800 tokens. Pages of the cache are
only touched as the context fills, so capping the context caps its memory.

llama.cpp (xllamacpp, llama_backend.py): the file's tensors once (read, not mmapped: an
mmapped file stays resident beside the CPU's repacked copy of its q4_0 weights, 939
instead of 551 MiB for gpt2-large) + ~84-100 MiB (interpreter, the engine process's
modules, the library, its 16-token batch's scratch; a little more below 512 tokens) + f16 keys and values, 4 bytes x n_layer x n_embd per token, for the
whole context of every sequence, allocated and cleared at load. llama.cpp splits the
context between its sequences and rounds each one's up to a multiple of 256: the app
keeps two (the second prepares the next window move), so two of 640 tokens hold as
much as two of 768. gpt2-large: 551 MiB with one sequence of 256 tokens, 687 with two
of 512, 867 with two of 1024; gpt2: 158 / 188 / 223. In the app's engine process
(gpt2-large, two sequences): 604 MiB at 256 tokens, 782 at 640 (held as 768), 873 at
1024.
"""

from __future__ import annotations

from dataclasses import dataclass

from writer_app.engine.ggml import ModelFacts

MIB = 1024 * 1024


@dataclass(frozen=True)
class EngineFootprint:
    """What one engine's process holds beside the model's weights."""

    base_bytes: int  # interpreter, libraries, evaluation scratch
    context_bytes_per_layer_width: int  # per token of context, per sequence
    sequences: int = 1  # sequences with a context (cache) of their own
    context_granule: int = 1  # the engine rounds each sequence's context up to a multiple
    # True: the weights in memory are the file's tensors (llama.cpp); False: as gpt2.cc
    # holds them, a tied output head copied (ModelFacts.weight_bytes).
    weights_are_the_file: bool = False

    def weight_bytes(self, facts: ModelFacts) -> int:
        return facts.file_size if self.weights_are_the_file else facts.weight_bytes

    def allocated_tokens(self, context_tokens: int) -> int:
        """Tokens of cache held for `context_tokens` of context in every sequence."""
        per_sequence = -(-context_tokens // self.context_granule) * self.context_granule
        return per_sequence * self.sequences


FOOTPRINTS = {
    "ctransformers": EngineFootprint(base_bytes=80 * MIB, context_bytes_per_layer_width=12),
    "llama.cpp": EngineFootprint(
        base_bytes=100 * MIB,
        context_bytes_per_layer_width=4,
        sequences=2,
        context_granule=256,
        weights_are_the_file=True,
    ),
}
DEFAULT_ENGINE = "ctransformers"
# The app's own (GUI) process: 117-123 MiB before any model, 165-167 MiB at its peak
# with a tokenizer loaded and a document open (benchmarks/README.md).
GUI_RESERVE_BYTES = 192 * MIB
# Less context than this makes continuations noticeably worse; a budget too small for
# it is exceeded rather than crippling the model.
MIN_CONTEXT = 256
CONTEXT_STEP = 32  # caps are rounded down to this, so they read as plain numbers
# The budget the app starts with (settings.models.memory_budget_mb): gpt2-large at 416
# tokens on ctransformers, 512 on llama.cpp, the whole app under 1 GB.
DEFAULT_BUDGET_BYTES = 1_000_000_000


def footprint(engine: str) -> EngineFootprint:
    return FOOTPRINTS.get(engine, FOOTPRINTS[DEFAULT_ENGINE])


def context_bytes_per_token(facts: ModelFacts, engine: str = DEFAULT_ENGINE) -> int:
    """One token of context in one sequence."""
    return footprint(engine).context_bytes_per_layer_width * facts.n_layer * facts.n_embd


def engine_resident_bytes(
    facts: ModelFacts, context_tokens: int, engine: str = DEFAULT_ENGINE
) -> int:
    """The engine process's resident memory with `context_tokens` of context in use."""
    engine_footprint = footprint(engine)
    cache_tokens = engine_footprint.allocated_tokens(context_tokens)
    return (
        engine_footprint.weight_bytes(facts)
        + engine_footprint.base_bytes
        + cache_tokens * context_bytes_per_token(facts, engine)
    )


def app_resident_bytes(facts: ModelFacts, context_tokens: int, engine: str = DEFAULT_ENGINE) -> int:
    """The whole app's: its own process and the engine's."""
    return GUI_RESERVE_BYTES + engine_resident_bytes(facts, context_tokens, engine)


def context_for_budget(
    facts: ModelFacts, budget_bytes: int | None, engine: str = DEFAULT_ENGINE
) -> int:
    """The longest context (at most the model's own, in steps of CONTEXT_STEP) that keeps
    the whole app within budget_bytes on `engine`; never below MIN_CONTEXT. None: no
    budget, the model's full context."""
    if budget_bytes is None or app_resident_bytes(facts, facts.n_ctx, engine) <= budget_bytes:
        return facts.n_ctx
    fits = MIN_CONTEXT
    for tokens in range(MIN_CONTEXT + CONTEXT_STEP, facts.n_ctx, CONTEXT_STEP):
        if app_resident_bytes(facts, tokens, engine) > budget_bytes:
            break
        fits = tokens
    return fits


def app_resident_within_budget(
    facts: ModelFacts, budget_bytes: int | None, engine: str = DEFAULT_ENGINE
) -> int:
    """The whole app's resident memory with this model, at the context the budget allows:
    what the catalog and the Model Manager quote as the memory a model needs."""
    return app_resident_bytes(facts, context_for_budget(facts, budget_bytes, engine), engine)


def loads_beside(
    current_engine_bytes: int | None,
    facts: ModelFacts,
    budget_bytes: int | None,
    engine: str = DEFAULT_ENGINE,
) -> bool:
    """Whether `facts`' model can load in a new engine process while the current one,
    holding current_engine_bytes (engine_resident_bytes of the model in use; None: no
    model), keeps suggesting, and the whole app stays within budget_bytes.

    When not, the current engine is closed first: for the second or so of a load the
    writer gets no suggestions, rather than the app holding two models at once (gpt2
    beside gpt2-large on llama.cpp: 1,080 MiB measured, over a 954 MiB budget).
    """
    if budget_bytes is None or current_engine_bytes is None:
        return True
    return current_engine_bytes + app_resident_within_budget(facts, budget_bytes, engine) <= budget_bytes
