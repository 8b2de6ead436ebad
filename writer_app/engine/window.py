"""Context windowing: fit prompt + generation into the model's context, prefix-stable.

The model can attend to at most n_ctx tokens, and ctransformers silently overwrites its
cache when asked to go further, so everything the engine evaluates must fit:

    len(window) + max_new_tokens + margin <= n_ctx

When the text before the cursor is too long, the oldest tokens are dropped. The cut
point only moves in large steps (half the context), so while the writer types,
consecutive prompts start at the same token and share a long prefix; the engine then
re-evaluates only the few new tokens instead of the whole window. When the cut does
move, everything after it must be evaluated again (GPT-2's positions are absolute, so a
cache can't be shifted): half-context steps make that happen half as often as quarter
steps, and each time over fewer tokens (a third of the re-evaluation per typed token),
at the price of a window that is between half and all of the budget.

Two levels, both pure functions:
    text_window_start()  where to start reading characters, so the caller tokenizes a
                         bounded tail of a long document (also quantized, also stable)
    fit_window()         which tokens of that tail go to the model, and how many new
                         tokens may be generated after them

and, for an engine that can prepare the next window while the writer types (a second
sequence), where each level's window will start once it next moves:
upcoming_text_window_start() and upcoming_window_tokens().
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MARGIN = 4  # spare slots, so an off-by-one anywhere never reaches native code
DEFAULT_STEP_FRACTION = 2  # the cut moves by ~n_ctx // 2 tokens at a time


class WindowError(ValueError):
    """The context is too small for the request (e.g. n_ctx smaller than the margin)."""


@dataclass(frozen=True)
class Window:
    start: int  # index of the first kept token in the full prompt
    tokens: list[int]  # the kept tokens, prompt[start:]
    max_new_tokens: int  # how many tokens may be generated after them

    @property
    def dropped(self) -> int:
        return self.start


def prompt_budget(n_ctx: int, max_new_tokens: int, margin: int = DEFAULT_MARGIN) -> int:
    """How many prompt tokens fit once room for the generation and the margin is kept."""
    if n_ctx <= margin + 1:
        raise WindowError(
            f"The model's context ({n_ctx} tokens) is too small to generate anything."
        )
    # Generation never gets more than half the context: a prompt is what makes it useful.
    new_tokens = max(1, min(max_new_tokens, (n_ctx - margin) // 2))
    return n_ctx - margin - new_tokens


def cut_step(n_ctx: int, budget: int) -> int:
    """The granularity of the cut: large for a hot cache, but well below the budget."""
    return max(1, min(n_ctx // DEFAULT_STEP_FRACTION, budget // 2))


def window_start(n_tokens: int, budget: int, step: int) -> int:
    """The smallest multiple of `step` that leaves at most `budget` tokens after it.

    Typing one more token moves the start only when it crosses a step boundary, so the
    start is the same for long runs of consecutive prompts.
    """
    if budget < 1 or step < 1:
        raise WindowError("The window budget and step must be at least one token.")
    overflow = n_tokens - budget
    if overflow <= 0:
        return 0
    return -(-overflow // step) * step  # ceil to the next step boundary


def fit_window(
    prompt: Sequence[int], *, n_ctx: int, max_new_tokens: int, margin: int = DEFAULT_MARGIN
) -> Window:
    """Choose the tokens to evaluate and the generation length so both fit in n_ctx."""
    if max_new_tokens < 1:
        raise WindowError("A generation needs room for at least one new token.")
    budget = prompt_budget(n_ctx, max_new_tokens, margin)
    start = window_start(len(prompt), budget, cut_step(n_ctx, budget))
    tokens = list(prompt[start:])
    new_tokens = min(max_new_tokens, n_ctx - margin - len(tokens))
    return Window(start=start, tokens=tokens, max_new_tokens=new_tokens)


def text_window_start(text: str, max_chars: int, step_chars: int | None = None) -> int:
    """Where to start reading `text` so that at most ~max_chars characters are tokenized.

    The start is quantized to multiples of step_chars (default: half of max_chars) and
    then moved forward to the next whitespace, so the first token is a whole word and the
    same text always yields the same start. Callers should pick max_chars generously
    (several characters per token) so fit_window() still has a full budget to cut from.
    """
    if max_chars < 1:
        raise WindowError("max_chars must be at least 1.")
    step = step_chars or max(1, max_chars // DEFAULT_STEP_FRACTION)
    start = window_start(len(text), max_chars, step)
    if start == 0:
        return 0
    # Snapping forward keeps the tail within max_chars; give up after one step so a
    # document without whitespace (e.g. CJK) is still cut.
    limit = min(len(text), start + step)
    for index in range(start, limit):
        if text[index].isspace():
            return index
    return start


def upcoming_window_tokens(
    prompt: Sequence[int], *, n_ctx: int, max_new_tokens: int, margin: int = DEFAULT_MARGIN
) -> list[int]:
    """The tokens the window will start with once fit_window() next moves its cut, as
    far as they are known: prompt[next cut:], or [] while the prompt ends before it."""
    budget = prompt_budget(n_ctx, max_new_tokens, margin)
    step = cut_step(n_ctx, budget)
    upcoming = window_start(len(prompt), budget, step) + step
    return list(prompt[upcoming:])


def upcoming_text_window_start(text: str, max_chars: int, step_chars: int | None = None) -> int | None:
    """Where text_window_start() will start once the writer has typed past its next move
    (same max_chars and step), or None while that is not yet decided by the text: the
    start is snapped forward to the first whitespace after the step boundary, and until
    the writer has typed one there, it could still fall anywhere."""
    if max_chars < 1:
        raise WindowError("max_chars must be at least 1.")
    step = step_chars or max(1, max_chars // DEFAULT_STEP_FRACTION)
    upcoming = window_start(len(text), max_chars, step) + step
    for index in range(upcoming, min(len(text), upcoming + step)):
        if text[index].isspace():
            return index
    return upcoming if upcoming + step <= len(text) else None
