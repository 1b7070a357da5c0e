"""Small statistics helpers: percentiles, summaries, least-squares slope, interleaved timing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already-sorted values, linear interpolation."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def summarize_ns(samples_ns: Sequence[int]) -> dict[str, Any]:
    """p50/p90/p99/mean/min/max in milliseconds of nanosecond samples."""
    values = sorted(s / 1e6 for s in samples_ns)
    n = len(values)
    return {
        "n": n,
        "p50_ms": round(percentile(values, 50), 4),
        "p90_ms": round(percentile(values, 90), 4),
        "p99_ms": round(percentile(values, 99), 4),
        "mean_ms": round(sum(values) / n, 4) if n else math.nan,
        "min_ms": round(values[0], 4) if n else math.nan,
        "max_ms": round(values[-1], 4) if n else math.nan,
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0.0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def interleaved(
    cases: Mapping[str, Callable[[], Any]], iterations: int, warmup: int,
    settle: Callable[[], None] | None = None,
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Time every case once per round, rotating the order each round.

    Interleaving puts every case under the same machine noise (the suite runs on shared
    2-core machines), so differences between cases are not drift between two loops.
    `settle` waits for the background work a call left (LiteLLM's logging thread) and is
    timed with it, so each case pays its own and, every call starting with none pending,
    never another's. Returns two samples per case: until settled (the call and its
    background work) and until the call returned.
    """
    names = list(cases)
    if settle:
        settle()  # whatever ran before this call
    for _ in range(warmup):
        for name in names:
            cases[name]()
            if settle:
                settle()
    settled: dict[str, list[int]] = {name: [] for name in names}
    returned: dict[str, list[int]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for i in range(iterations):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            fn = cases[name]
            started = clock()
            fn()
            elapsed = clock() - started
            returned[name].append(elapsed)
            if settle:
                settle()
                elapsed = clock() - started
            settled[name].append(elapsed)
    return settled, returned
