"""Small statistics for timings: medians and percentiles without numpy's interpolation
surprises (nearest rank, so a reported p90 is a value that was actually measured)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, median, p90, p99 and max of `values` (all NaN but count for none)."""
    return {
        "count": len(values),
        "median": median(values),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else math.nan,
    }


def median_run(runs: Sequence[dict]) -> dict:
    """The run of median "tokens_per_s" (the lower middle of an even count), with every
    run's rate under "runs_tokens_per_s": one run's rate is one minute of this shared
    machine's, so a rate that stands for a round is a median of runs on both sides."""
    ranked = sorted(runs, key=lambda run: run["tokens_per_s"] or 0.0)
    return {**ranked[(len(ranked) - 1) // 2], "runs_tokens_per_s": [run["tokens_per_s"] for run in runs]}
