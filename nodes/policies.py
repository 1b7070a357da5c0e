"""Routing policies: how the scored candidates are ordered. A name -> function table, so a
new policy (the learned one) plugs in without touching the nodes.

"spec" is the spec's scorer and the default; the others are the baselines `evaluate`
compares it with. Every policy reorders the same eligible candidates: filters, budgets and
fallback top-up apply to all alike.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence

from graph.registry import Registry
from nodes.selection import Ranked

Policy = Callable[[Sequence[Ranked], Registry, str], list[Ranked]]


def by_score(ranked: Sequence[Ranked], registry: Registry, key: str) -> list[Ranked]:
    """Best total score first (the spec's selector)."""
    return sorted(ranked, key=lambda r: r.score.total, reverse=True)


def cheapest(ranked: Sequence[Ranked], registry: Registry, key: str) -> list[Ranked]:
    """Lowest input + output price first."""
    def price(r: Ranked) -> float:
        m = registry.models[r.model_id]
        return m.input_cost_per_1m + m.output_cost_per_1m

    return sorted(ranked, key=lambda r: (price(r), -r.score.total))


def uniform_random(ranked: Sequence[Ranked], registry: Registry, key: str) -> list[Ranked]:
    """A random order, seeded by the request key so a run can be repeated exactly."""
    out = list(ranked)
    random.Random(zlib.crc32(key.encode())).shuffle(out)
    return out


def pinned(model_id: str) -> Policy:
    """One model first (e.g. the best single model), the rest by score."""
    def order(ranked: Sequence[Ranked], registry: Registry, key: str) -> list[Ranked]:
        return sorted(by_score(ranked, registry, key), key=lambda r: r.model_id != model_id)

    return order


POLICIES: dict[str, Policy] = {"spec": by_score, "cheapest": cheapest, "random": uniform_random}


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
