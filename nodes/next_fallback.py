"""next_fallback: the on-error edge. Retry, move along the chain, or stop, by error class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from langgraph.runtime import Runtime

from graph.registry import ModelEntry, Registry
from graph.services import Services
from graph.state import Attempt, RunSettings, SelectionState, settings_of

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


def stop_reason(attempts: Sequence[Attempt], deadline_declined: bool = False) -> str:
    """Why an unserved request ended: the last decisive attempt says, or the deadline that
    declined its last retry."""
    last = attempts[-1]
    if last["error_class"] in ("deadline", "bad_request"):
        return str(last["error_class"])
    if any(a["error_class"] == "budget" for a in attempts):
        return "budget"
    return "deadline" if deadline_declined else "exhausted"


def decline_retry(model_id: str, delay: float, past_deadline: bool,
                  circuit: str | None) -> str | None:
    """Why a retry the error class asks for is not made, or None to make it (`circuit` is
    None when not read: past the deadline it does not matter)."""
    if past_deadline:
        return (f"no retry of {model_id}: its {delay:.2f} s backoff would pass the "
                f"request's deadline")
    if circuit not in (None, "closed"):
        return f"no retry of {model_id}: its circuit is {circuit.replace('_', '-')}"
    return None


def declined_so_far(state: SelectionState) -> list[str]:
    """The retries this request declined so far (a checkpoint written before they were
    listed holds one as a string)."""
    declined = state.get("retry_declined") or []
    return [declined] if isinstance(declined, str) else list(declined)


def decide(state: SelectionState, settings: RunSettings,
           services: Services) -> tuple[dict[str, Any], float]:
    """The next hop from the last attempt's action, and the backoff to wait before it."""
    last = state["attempts"][-1]
    action = last["action"] or "next"
    declined, past_deadline = None, False
    if action == "retry" and state["tries"] < settings.max_tries_per_model:
        model_id = last["model_id"]
        delay = backoff_s(state["tries"], services.rng.uniform)
        deadline = state.get("deadline")
        past_deadline = deadline is not None and services.clock() + delay >= deadline
        circuit = None if past_deadline else (
            services.store.with_circuits(lambda c: c.snapshot([model_id]))[model_id].state)
        declined = decline_retry(model_id, delay, past_deadline, circuit)
        if declined is None:
            return {}, delay
    noted = {"retry_declined": [*declined_so_far(state), declined],
             "attempts": [{**last, "action": "next"}]} if declined else {}
    if action != "stop":
        position = next_position(services.registry, state["chain"], state["position"], action)
        if position is not None:
            return {"position": position, "tries": 0, **noted}, 0.0
    return {"success": False, "stop_reason": stop_reason(state["attempts"], past_deadline),
            **noted}, 0.0


def next_fallback(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """Retry (after a backoff), move along the chain, or end the request."""
    update, delay = decide(state, settings_of(runtime.context), services)
    if delay:
        services.sleep(delay)
    return update


async def anext_fallback(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """`next_fallback` for `ainvoke`: the backoff is awaited, never blocking the loop."""
    update, delay = decide(state, settings_of(runtime.context), services)
    if delay:
        await services.asleep(delay)
    return update


def route_after_call(state: SelectionState) -> Literal["record_feedback", "next_fallback"]:
    """Served: record it. Failed or skipped: the on-error edge."""
    return "record_feedback" if state.get("success") else "next_fallback"


def route_after_fallback(state: SelectionState) -> Literal["call_model", "record_feedback"]:
    """Another attempt, unless next_fallback ended the request."""
    return "record_feedback" if state.get("stop_reason") else "call_model"
