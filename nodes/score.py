"""score: rank the candidates with the spec's formula; primary first, then fallbacks."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph import telemetry as tm
from graph.context import TaskContext
from graph.services import Services
from graph.state import RunSettings, SelectionState, settings_of
from nodes.conversation import text_of
from nodes.policies import RATED, Given, resolve
from nodes.selection import Filtered, Ranked, rank


def _record(ranked: Ranked) -> dict[str, Any]:
    return {"model_id": ranked.model_id, "via": ranked.via, "note": ranked.note,
            "score": ranked.score.as_dict()}


def score(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """Order the chain: best scores first, topped up from the domain's fallback policy."""
    settings = settings_of(runtime.context)
    ctx = TaskContext.model_validate(state["task"])
    filtered = Filtered(
        eligible=state["eligible"],
        soft_excluded=state["soft_excluded"],
        excluded=state["excluded"],
    )
    policy = resolve(settings.policy)
    asked = state.get("prompt") or text_of(state["messages"])
    given = Given(services.registry, f"{settings.seed}:{asked}", state["weights"],
                  services.store.ratings(ctx.domain, ctx.task_type)
                  if settings.policy in RATED else {})
    decision = rank(services.registry, ctx, filtered, state["weights"], state["health"],
                    settings.top_k, order=lambda r: policy(r, given))
    with tm.tracer.start_as_current_span("model_selector.decision",
                                         record_exception=False) as span:
        span.set_attribute(tm.TASK_TYPE, ctx.task_type)
        span.set_attribute(tm.SELECTOR_DOMAIN, ctx.domain)
        span.set_attribute(tm.SELECTOR_AGENT, ctx.agent_id)
        span.set_attribute(tm.SELECTOR_PRIMARY, decision.chain[0].model_id)
        span.set_attribute(tm.SELECTOR_CHAIN, [r.model_id for r in decision.chain])
        span.set_attribute(tm.SELECTOR_CANDIDATES, len(decision.candidates))
        span.set_attribute(tm.SELECTOR_EXCLUDED, len(decision.excluded))
    return {
        "chain": [_record(r) for r in decision.chain],
        "candidates": [_record(r) for r in decision.candidates],
        "excluded": decision.excluded,
    }
