"""query_registry: which models may serve this request, and why each other one may not."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import TaskContext
from graph.services import Services
from graph.state import RunSettings, SelectionState, settings_of
from nodes.availability import unavailable_reasons
from nodes.record_feedback import record_rejection
from nodes.selection import Limits, NoEligibleModel, filter_models, waiting


def query_registry(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """Filter the registry by live health, circuits, keys, locality, tool calling, window
    and budget."""
    settings = settings_of(runtime.context)
    registry = services.registry
    ctx = TaskContext.model_validate(state["task"])
    relevant = registry.relevant(ctx.domain, ctx.task_type)
    live = services.store.live({m: registry.models[m].status for m in relevant})
    statuses = live.health
    mocked = frozenset(m for m in relevant if settings.is_mocked(m)) if (
        settings.require_keys and settings.mock_responses) else frozenset()  # only keys need it
    unavailable = unavailable_reasons(
        registry, live.availability, live.at, settings.require_keys, mocked
    )
    limits = Limits(state["prompt_tokens"], state["max_output_tokens"], bool(state.get("tools")))
    filtered = filter_models(registry, ctx, limits, statuses, unavailable)
    policy = [m for m in registry.fallback_chain(ctx.domain) if m in filtered.soft_excluded]
    if not filtered.eligible and not policy:
        rejection = NoEligibleModel(ctx, filtered.excluded | filtered.soft_excluded,
                                    transient=waiting(registry, ctx, filtered, statuses))
        record_rejection(services, state, rejection.summary)
        raise rejection
    usable = set(filtered.eligible) | set(filtered.soft_excluded)
    return {
        "eligible": filtered.eligible,
        "soft_excluded": filtered.soft_excluded,
        "excluded": filtered.excluded,
        "health": {m: statuses[m] for m in usable},
    }
