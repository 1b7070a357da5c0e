"""Routing-quality arithmetic for `evaluate`: pure functions over (cost, quality) points.

AIQ follows RouterBench (arXiv 2403.12031): take a router's (cost, quality) points, keep the
non-decreasing upper convex hull, and average its quality over the cost range spanned by the
single models (area under the curve / cost range). Outside the hull's own span the curve is
held flat at its nearest end.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]  # (cost per 1k requests, mean quality)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def hull(points: Sequence[Point]) -> list[Point]:
    """The non-decreasing upper convex hull: the best quality reachable at each cost."""
    frontier: list[Point] = []
    for cost, quality in sorted(points):
        if not frontier or quality > frontier[-1][1]:
            if frontier and cost == frontier[-1][0]:
                frontier.pop()
            frontier.append((cost, quality))
    upper: list[Point] = []
    for p in frontier:
        while len(upper) >= 2:
            (x1, y1), (x2, y2) = upper[-2], upper[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                upper.pop()  # the middle point lies under the chord
            else:
                break
        upper.append(p)
    return upper


def _at(curve: Sequence[Point], cost: float) -> float:
    if cost <= curve[0][0]:
        return curve[0][1]
    for (x1, y1), (x2, y2) in zip(curve, curve[1:]):
        if cost <= x2:
            return y1 + (y2 - y1) * (cost - x1) / (x2 - x1)
    return curve[-1][1]


def aiq(points: Sequence[Point], lo: float, hi: float, steps: int = 2000) -> float:
    """Average quality of the hull of `points` over costs [lo, hi]."""
    if not points:
        return 0.0
    curve = hull(points)
    if hi <= lo:
        return _at(curve, lo)
    width = (hi - lo) / steps
    return sum(_at(curve, lo + (i + 0.5) * width) for i in range(steps)) / steps
