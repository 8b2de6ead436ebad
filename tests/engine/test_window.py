from __future__ import annotations

import pytest

from writer_app.engine.window import (
    DEFAULT_MARGIN,
    WindowError,
    cut_step,
    fit_window,
    prompt_budget,
    text_window_start,
    window_start,
)


def test_short_prompt_is_kept_whole():
    prompt = list(range(100))
    window = fit_window(prompt, n_ctx=1024, max_new_tokens=24)
    assert window.start == 0
    assert window.tokens == prompt
    assert window.max_new_tokens == 24


@pytest.mark.parametrize("n_ctx", [64, 256, 1024])
@pytest.mark.parametrize("max_new", [1, 24, 256, 5000])
@pytest.mark.parametrize("n_prompt", [0, 1, 63, 500, 1023, 1024, 1025, 4000])
def test_prompt_plus_generation_never_exceeds_context(n_ctx, max_new, n_prompt):
    window = fit_window(list(range(n_prompt)), n_ctx=n_ctx, max_new_tokens=max_new)
    assert len(window.tokens) + window.max_new_tokens + DEFAULT_MARGIN <= n_ctx
    assert 1 <= window.max_new_tokens <= max_new
    assert window.tokens == list(range(n_prompt))[window.start :]


def test_long_prompt_keeps_the_most_recent_tokens():
    prompt = list(range(3000))
    window = fit_window(prompt, n_ctx=1024, max_new_tokens=24)
    assert window.tokens[-1] == 2999
    assert window.dropped == window.start > 0
    # The window is not needlessly short: at least budget minus one step is kept.
    budget = prompt_budget(1024, 24)
    assert len(window.tokens) > budget - cut_step(1024, budget)


def test_start_is_stable_while_typing_and_moves_in_large_steps():
    n_ctx, max_new = 1024, 24
    starts = [
        fit_window(list(range(n)), n_ctx=n_ctx, max_new_tokens=max_new).start
        for n in range(900, 3000)
    ]
    changes = [b - a for a, b in zip(starts, starts[1:], strict=False) if b != a]
    assert changes, "a growing prompt must eventually move the window"
    step = cut_step(n_ctx, prompt_budget(n_ctx, max_new))
    assert step >= (n_ctx - 32) // 2  # about half the context
    assert all(change == step for change in changes)
    # Consecutive keystrokes share the window start almost always.
    assert len(changes) < len(starts) / 100


def test_generation_length_is_capped_to_what_fits():
    window = fit_window(list(range(10)), n_ctx=64, max_new_tokens=200)
    assert window.max_new_tokens == 64 - DEFAULT_MARGIN - 10
    long_window = fit_window(list(range(500)), n_ctx=64, max_new_tokens=200)
    # A huge request still leaves half the context to the prompt.
    assert len(long_window.tokens) >= (64 - DEFAULT_MARGIN) // 2 - 64 // 4


def test_window_start_quantizes_to_steps():
    assert window_start(100, budget=100, step=25) == 0
    assert window_start(101, budget=100, step=25) == 25
    assert window_start(125, budget=100, step=25) == 25
    assert window_start(126, budget=100, step=25) == 50


def test_tiny_context_is_rejected_with_a_clear_error():
    with pytest.raises(WindowError, match="too small"):
        fit_window([1, 2, 3], n_ctx=4, max_new_tokens=1)
    with pytest.raises(WindowError):
        fit_window([1, 2, 3], n_ctx=64, max_new_tokens=0)


def test_text_window_keeps_short_text_whole():
    assert text_window_start("hello world", max_chars=100) == 0


def test_text_window_starts_on_whitespace_and_bounds_the_tail():
    text = " ".join(f"word{i}" for i in range(2000))
    start = text_window_start(text, max_chars=4000)
    assert text[start].isspace()
    assert len(text) - start <= 4000
    assert len(text) - start > 4000 - 4000 // 2 - 20


def test_text_window_is_stable_while_typing():
    base = "lorem ipsum dolor sit amet " * 400
    starts = {text_window_start(base + "x" * extra, max_chars=4000) for extra in range(50)}
    assert len(starts) == 1


def test_text_without_whitespace_is_still_cut():
    text = "字" * 10000
    start = text_window_start(text, max_chars=4000)
    assert start > 0 and len(text) - start <= 4000


# ---- where each cut will be after its next move (for a second sequence to prepare) ----


def test_the_upcoming_text_start_is_where_the_text_window_moves_to():
    from writer_app.engine.window import upcoming_text_window_start

    text = "word " * 400
    for length in range(120, 1200, 7):
        upcoming = upcoming_text_window_start(text[:length], 200)
        later = (text_window_start(text[:n], 200) for n in range(length, len(text)))
        moved_to = next(s for s in later if s != text_window_start(text[:length], 200))
        assert upcoming in (None, moved_to)
        if upcoming is None:  # undecided only while no whitespace follows the boundary
            assert length <= text_window_start(text[:length], 200) + 100 + 4


def test_the_upcoming_tokens_start_the_window_after_its_next_cut():
    from writer_app.engine.window import upcoming_window_tokens

    prompt = list(range(1000))
    for length in range(50, 900, 13):
        upcoming = upcoming_window_tokens(prompt[:length], n_ctx=256, max_new_tokens=8)
        current = fit_window(prompt[:length], n_ctx=256, max_new_tokens=8).start
        moved = next(
            w for n in range(length, 1000)
            if (w := fit_window(prompt[:n], n_ctx=256, max_new_tokens=8)).start != current
        )
        assert moved.tokens[: len(upcoming)] == upcoming
