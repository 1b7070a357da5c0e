"""Routing policies: how the scored candidates are ordered. A name -> function table, so a
new policy plugs in without touching the nodes.

"spec" is the spec's scorer and the default; "learned" and "learned-quality" use the
ratings (nodes/learned.py); the others are the baselines `evaluate` compares them with.
Every policy reorders the same eligible candidates: filters, budgets and fallback top-up
apply to all alike.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from graph.registry import Component, Registry
from nodes import learned
from nodes.selection import Ranked


@dataclass(frozen=True, slots=True)
class Given:
    """What a policy may look at besides the candidates."""

    registry: Registry
    key: str
    """Seed and prompt: the random policy's seed, so a run repeats exactly."""
    weights: Mapping[Component, float] = field(default_factory=dict)
    ratings: Mapping[str, learned.Tally] = field(default_factory=dict)
    """(count, sum) of ratings per model for this domain and task type, decayed to now
    (rated policies)."""


Policy = Callable[[Sequence[Ranked], Given], list[Ranked]]


def by_score(ranked: Sequence[Ranked], given: Given) -> list[Ranked]:
    """Best total score first (the spec's selector)."""
    return sorted(ranked, key=lambda r: r.score.total, reverse=True)


def cheapest(ranked: Sequence[Ranked], given: Given) -> list[Ranked]:
    """Lowest input + output price first."""
    def price(r: Ranked) -> float:
        m = given.registry.models[r.model_id]
        return m.input_cost_per_1m + m.output_cost_per_1m

    return sorted(ranked, key=lambda r: (price(r), -r.score.total))


def uniform_random(ranked: Sequence[Ranked], given: Given) -> list[Ranked]:
    """A random order, seeded by the request key so a run can be repeated exactly."""
    out = list(ranked)
    random.Random(zlib.crc32(given.key.encode())).shuffle(out)
    return out


def learned_score(ranked: Sequence[Ranked], given: Given) -> list[Ranked]:
    """The spec's formula with rated quality in place of the capability guess."""
    return learned.by_learned_score(ranked, given.ratings, given.weights)


def learned_quality(ranked: Sequence[Ranked], given: Given) -> list[Ranked]:
    """Best rated quality first, within the budgets."""
    return learned.by_learned_quality(ranked, given.ratings, given.weights)


def pinned(model_id: str) -> Policy:
    """One model first (e.g. the best single model), the rest by score."""
    def order(ranked: Sequence[Ranked], given: Given) -> list[Ranked]:
        return sorted(by_score(ranked, given), key=lambda r: r.model_id != model_id)

    return order


POLICIES: dict[str, Policy] = {"spec": by_score, "cheapest": cheapest, "random": uniform_random,
                               "learned": learned_score, "learned-quality": learned_quality}
RATED = frozenset({"learned", "learned-quality"})
"""Policies that read the ratings (one more Redis read per request)."""


def check(name: str, registry: Registry) -> None:
    """A ValueError naming the problem for an unknown policy, or for one that pins a model
    the registry lacks (it would silently have ranked by score)."""
    resolve(name)
    pinned = name.removeprefix("model:")
    if pinned != name and pinned not in registry.models:
        raise ValueError(f"{name!r} pins a model the registry does not have")


def resolve(name: str) -> Policy:
    """A policy by name; `model:<id>` pins one model."""
    if name.startswith("model:"):
        return pinned(name.removeprefix("model:"))
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown policy {name!r} (known: {', '.join(POLICIES)}, model:<id>)") from None
