"""next_fallback: the on-error edge. Retry, move along the chain, or stop, by error class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from langgraph.runtime import Runtime

from graph.registry import ModelEntry, Registry
from graph.services import Services
from graph.state import Attempt, RunSettings, SelectionState

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0


def backoff_s(try_no: int, uniform: Callable[[float, float], float]) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2^(try-1)))."""
    return uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (try_no - 1)))


def next_position(
    registry: Registry, chain: Sequence[dict[str, Any]], position: int, action: str
) -> int | None:
    """The next chain index fit for the failure, or None when the chain is spent.

    A context-window failure skips to a model with a larger window; a content-policy
    refusal skips to another provider; everything else takes the next model.
    """
    failed: ModelEntry = registry.models[chain[position]["model_id"]]
    for index in range(position + 1, len(chain)):
        model = registry.models[chain[index]["model_id"]]
        if action == "next_larger_context" and model.context_window <= failed.context_window:
            continue
        if action == "next_other_provider" and model.provider == failed.provider:
            continue
        return index
    return None


def stop_reason(attempts: Sequence[Attempt]) -> str:
    """Why an unserved request ended: the last decisive attempt says."""
    last = attempts[-1]
    if last["error_class"] in ("deadline", "bad_request"):
        return str(last["error_class"])
    if any(a["error_class"] == "budget" for a in attempts):
        return "budget"
    return "exhausted"


def decide(state: SelectionState, settings: RunSettings,
           services: Services) -> tuple[dict[str, Any], float]:
    """The next hop from the last attempt's action, and the backoff to wait before it."""
    last = state["attempts"][-1]
    action = last["action"] or "next"
    if action == "retry" and state["tries"] < settings.max_tries_per_model:
        delay = backoff_s(state["tries"], services.rng.uniform)
        deadline = state.get("deadline")
        if deadline is None or services.clock() + delay < deadline:
            admission = services.store.with_circuits(lambda c: c.snapshot([last["model_id"]]))
            if admission[last["model_id"]].state == "closed":
                return {}, delay
    if action != "stop":
        position = next_position(services.registry, state["chain"], state["position"], action)
        if position is not None:
            return {"position": position, "tries": 0}, 0.0
    return {"success": False, "stop_reason": stop_reason(state["attempts"])}, 0.0


def next_fallback(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """Retry (after a backoff), move along the chain, or end the request."""
    update, delay = decide(state, runtime.context or RunSettings(), services)
    if delay:
        services.sleep(delay)
    return update


async def anext_fallback(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """`next_fallback` for `ainvoke`: the backoff is awaited, never blocking the loop."""
    update, delay = decide(state, runtime.context or RunSettings(), services)
    if delay:
        await services.asleep(delay)
    return update


def route_after_call(state: SelectionState) -> Literal["record_feedback", "next_fallback"]:
    """Served: record it. Failed or skipped: the on-error edge."""
    return "record_feedback" if state.get("success") else "next_fallback"


def route_after_fallback(state: SelectionState) -> Literal["call_model", "record_feedback"]:
    """Another attempt, unless next_fallback ended the request."""
    return "record_feedback" if state.get("stop_reason") else "call_model"
