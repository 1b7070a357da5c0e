"""Scoring learned from feedback: rated quality replaces the static capability guess.

The spec's capability component says only whether a model lists the task type. Ratings
(`graph.ratings.rate`: a user or a grader scores a served answer in [0, 1]) say how well it
did, per (domain, task_type). Each model's estimate is the mean of its ratings, shrunk
towards its static capability score as if that were `PRIOR_RATINGS` ratings: an unrated
model keeps the spec's score exactly, and one rated model does not swing the ranking.

The prior is optimistic (a capable model starts at 1.0, above any real mean), so models not
yet served are tried before a rated one is trusted: exploration without randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from graph.registry import Component
from nodes.selection import Ranked

PRIOR_RATINGS = 5
"""How many ratings the static capability score is worth."""

Tally = tuple[float, float]
"""(number of ratings, their sum) for one model on one kind of task; with a half-life both
are decayed (graph.store.Credit), so the count is fractional."""


def estimate(prior: float, tally: Tally, strength: float = PRIOR_RATINGS) -> float:
    """Mean rated quality, shrunk towards `prior` (the posterior mean of a Beta-like prior)."""
    n, total = tally
    return (total + strength * prior) / (n + strength)


def with_ratings(
    ranked: Sequence[Ranked], ratings: Mapping[str, Tally], weights: Mapping[Component, float]
) -> list[Ranked]:
    """Each candidate re-scored with its capability component replaced by its estimate
    relative to the best candidate's (so the best rated model keeps the full weight)."""
    estimates = {r.model_id: estimate(r.score.capability_match, ratings.get(r.model_id, (0.0, 0.0)))
                 for r in ranked}
    best = max(estimates.values(), default=0.0) or 1.0
    out = []
    for r in ranked:
        relative = estimates[r.model_id] / best
        total = r.score.total + weights["capability_match"] * (relative - r.score.capability_match)
        out.append(replace(r, score=replace(
            r.score, total=total, capability_match=relative,
            learned_quality=estimates[r.model_id], ratings=ratings.get(r.model_id, (0.0, 0.0))[0])))
    return out


def by_learned_score(
    ranked: Sequence[Ranked], ratings: Mapping[str, Tally], weights: Mapping[Component, float]
) -> list[Ranked]:
    """The spec's trade of quality, cost, latency and health, quality as rated."""
    return sorted(with_ratings(ranked, ratings, weights), key=lambda r: r.score.total,
                  reverse=True)


def by_learned_quality(
    ranked: Sequence[Ranked], ratings: Mapping[str, Tally], weights: Mapping[Component, float]
) -> list[Ranked]:
    """Highest estimated quality first; the learned score breaks ties. Budgets still bind
    (the filters ran before), but within them cost and latency only break ties."""
    rescored = with_ratings(ranked, ratings, weights)
    return sorted(rescored, key=lambda r: (r.score.learned_quality, r.score.total), reverse=True)
