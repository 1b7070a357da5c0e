"""score: rank the candidates with the spec's formula; primary first, then fallbacks."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import TaskContext
from graph.services import Services
from graph.state import RunSettings, SelectionState
from nodes.policies import resolve
from nodes.selection import Filtered, Ranked, rank


def _record(ranked: Ranked) -> dict[str, Any]:
    return {"model_id": ranked.model_id, "via": ranked.via, "note": ranked.note,
            "score": ranked.score.as_dict()}


def score(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """Order the chain: best scores first, topped up from the domain's fallback policy."""
    settings = runtime.context or RunSettings()
    ctx = TaskContext.model_validate(state["task"])
    filtered = Filtered(
        eligible=state["eligible"],
        soft_excluded=state["soft_excluded"],
        excluded=state["excluded"],
    )
    policy = resolve(settings.policy)
    key = f"{settings.seed}:{state['prompt']}"
    decision = rank(services.registry, ctx, filtered, state["weights"], state["health"],
                    settings.top_k, order=lambda r: policy(r, services.registry, key))
    return {
        "chain": [_record(r) for r in decision.chain],
        "candidates": [_record(r) for r in decision.candidates],
        "excluded": decision.excluded,
    }
