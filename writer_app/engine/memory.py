"""How much memory a loaded model takes, and how much context fits a memory budget.

The engine process's resident memory, measured on gpt2- and gpt2-large-shaped q4_0
files, is
    weights + ~46 MiB (interpreter, numpy, the ctransformers library)
            + up to ~34 MiB (the scratch of a 4-token prewarm evaluation; 1-token
              evaluations touch ~15 MiB, 8-token ones ~86 MiB)
            + 12 bytes x n_layer x n_embd per token of context in use:
f32 keys and values in the cache (8) and the transposed copy of V that gpt2.cc makes
over the whole context on every evaluation (4). gpt2: 137 MiB after load, 226 MiB at 800
tokens (0.105 MiB a token); gpt2-large: 503 MiB after load, 941 MiB at 800 tokens (0.53
MiB a token); gpt2-large with prewarms at 448 tokens: 770 MiB at its peak. Pages of
the cache are only touched as the context fills, so capping the context the engine uses
(the backend's n_ctx) caps its memory.
"""

from __future__ import annotations

from writer_app.engine.ggml import ModelFacts

MIB = 1024 * 1024
ENGINE_BASE_BYTES = 80 * MIB  # interpreter, libraries, a prewarm evaluation's scratch
CONTEXT_BYTES_PER_LAYER_WIDTH = 12
# The app's own (GUI) process: 117-123 MiB before any model, 165-167 MiB at its peak
# with a tokenizer loaded and a document open (benchmarks/README.md).
GUI_RESERVE_BYTES = 192 * MIB
# Less context than this makes continuations noticeably worse; a budget too small for
# it is exceeded rather than crippling the model.
MIN_CONTEXT = 256
CONTEXT_STEP = 32  # caps are rounded down to this, so they read as plain numbers
# The budget the app starts with (settings.models.memory_budget_mb): gpt2-large at 416
# tokens, the whole app under 1 GB.
DEFAULT_BUDGET_BYTES = 1_000_000_000


def context_bytes_per_token(facts: ModelFacts) -> int:
    return CONTEXT_BYTES_PER_LAYER_WIDTH * facts.n_layer * facts.n_embd


def engine_resident_bytes(facts: ModelFacts, context_tokens: int) -> int:
    """The engine process's resident memory with `context_tokens` of context in use."""
    return facts.weight_bytes + ENGINE_BASE_BYTES + context_tokens * context_bytes_per_token(facts)


def app_resident_bytes(facts: ModelFacts, context_tokens: int) -> int:
    """The whole app's: its own process and the engine's."""
    return GUI_RESERVE_BYTES + engine_resident_bytes(facts, context_tokens)


def context_for_budget(facts: ModelFacts, budget_bytes: int | None) -> int:
    """The longest context (at most the model's own) that keeps the whole app within
    budget_bytes; never below MIN_CONTEXT. None: no budget, the model's full context."""
    if budget_bytes is None or app_resident_bytes(facts, facts.n_ctx) <= budget_bytes:
        return facts.n_ctx
    spare = budget_bytes - app_resident_bytes(facts, 0)
    fits = spare // context_bytes_per_token(facts) // CONTEXT_STEP * CONTEXT_STEP
    return min(facts.n_ctx, max(MIN_CONTEXT, fits))


def app_resident_within_budget(facts: ModelFacts, budget_bytes: int | None) -> int:
    """The whole app's resident memory with this model, at the context the budget allows:
    what the catalog and the Model Manager quote as the memory a model needs."""
    return app_resident_bytes(facts, context_for_budget(facts, budget_bytes))
