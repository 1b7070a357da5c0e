"""call_model: one attempt on the current model of the chain, within budget and deadline."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langgraph.runtime import Runtime

from graph import telemetry as tm
from graph.redact import redact
from graph.registry import ModelEntry
from graph.services import Services
from graph.state import Attempt, RunSettings, SelectionState, settings_of
from nodes import llm
from nodes.availability import fingerprint
from nodes.errors import Failure, classify
from nodes.selection import Limits, usd, worst_case_cost


def attempt(model_id: str, try_no: int, *, error_class: str | None = None,
            action: str | None = None, error: str | None = None, latency_ms: int = 0,
            cost_usd: float = 0.0) -> Attempt:
    """An attempt record; `error_class` None means the call succeeded."""
    return Attempt(model_id=model_id, try_no=try_no, ok=error_class is None,
                   error_class=error_class, action=action, error=error,
                   latency_ms=latency_ms, cost_usd=cost_usd)


def preflight(state: SelectionState, model: ModelEntry, now: float) -> Attempt | None:
    """A skip record when the deadline has passed or the budget cannot cover the call."""
    try_no = state["tries"] + 1
    deadline = state.get("deadline")
    if deadline is not None and now >= deadline:
        return attempt(model.id, try_no, error_class="deadline", action="stop",
                       error="latency budget spent before this attempt could start")
    budget = state["task"].get("max_cost_usd")
    if budget is not None:
        limits = Limits(state["prompt_tokens"], state["max_output_tokens"])
        need = state["spent_usd"] + worst_case_cost(model, limits)
        if need > budget:
            return attempt(model.id, try_no, error_class="budget", action="next",
                           error=f"spent {usd(state['spent_usd'])} + worst case of this call "
                                 f"would be {usd(need)}, over budget {usd(budget)}")
    return None


def call_params(state: SelectionState, settings: RunSettings, now: float) -> dict[str, Any]:
    """Timeout shrunk to what the deadline leaves; the run's max_tokens and temperature."""
    timeout = settings.timeout_s
    if state.get("deadline") is not None:
        timeout = max(0.001, min(timeout, state["deadline"] - now))
    return {"max_tokens": state["max_output_tokens"], "temperature": settings.temperature,
            "timeout_s": timeout, "tools": state.get("tools"),
            "tool_choice": state.get("tool_choice")}


def on_failure(services: Services, state: SelectionState, model: ModelEntry,
               failure: Failure) -> None:
    """Shared consequences of a failure: breaker, cooldown, unusable mark, health."""
    store = services.store
    policy = services.registry.breaker_policy(state["task"]["domain"])
    if failure.feeds_breaker:
        store.with_circuits(lambda c: c.record_failure(model.id, policy))
        store.update_health(model.id, "degraded")
    elif failure.action == "cool_down_next":
        seconds = failure.retry_after_s if failure.retry_after_s is not None else 5.0
        store.with_circuits(lambda c: c.cool_down(model.id, seconds))
    elif failure.action == "mark_unusable_next":
        store.with_circuits(
            lambda c: c.mark_unusable(model.id, fingerprint(model), failure.error_class)
        )


def _outcome(state: SelectionState, model_id: str, reply: llm.Reply) -> dict[str, Any]:
    try_no = state["tries"] + 1
    return {
        "attempts": [attempt(model_id, try_no, latency_ms=reply.latency_ms,
                             cost_usd=reply.cost_usd)],
        "tries": try_no,
        "spent_usd": state["spent_usd"] + reply.cost_usd,
        "response": reply.text,
        "tool_calls": reply.tool_calls,
        "model_used": model_id,
        "latency_ms": reply.latency_ms,
        "success": True,
        "stop_reason": "served",
        "fallback_triggered": state["position"] > 0,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _failed(state: SelectionState, model_id: str, exc: BaseException, failure: Failure,
            latency_ms: int) -> dict[str, Any]:
    try_no = state["tries"] + 1
    record = attempt(model_id, try_no, error_class=failure.error_class, action=failure.action,
                     error=redact(f"{type(exc).__name__}: {exc}")[:500], latency_ms=latency_ms)
    return {"attempts": [record], "tries": try_no}


PROVIDER_ANSWERED = frozenset({"rate_limit", "context_window", "content_policy", "auth",
                               "not_found"})
"""Failures that are the provider's answer about this request or key, not signs of an
unwell model. Not "unsupported" or "bad_request": LiteLLM may raise those before any
request is sent, which says nothing of the provider."""

CIRCUIT_OPEN = "circuit opened (or another process holds its probe)"
Prepared = tuple[ModelEntry, dict[str, Any], str]


def _prepare(state: SelectionState, settings: RunSettings,
             services: Services) -> Prepared | dict[str, Any]:
    """The model, call arguments and circuit admission, or a skip update (deadline, budget,
    open circuit)."""
    model = services.registry.models[state["chain"][state["position"]]["model_id"]]
    now = services.clock()
    skipped = preflight(state, model, now)
    if skipped:
        return {"attempts": [skipped]}
    admission = services.store.with_circuits(lambda c: c.admit(model.id))
    if admission == "open":
        return {"attempts": [attempt(model.id, 0, error_class="circuit_open", action="next",
                                     error=CIRCUIT_OPEN)]}
    kwargs = call_params(state, settings, now)
    kwargs["mock_response"] = settings.mock_for(model.id)
    return model, kwargs, admission


def _tag_call(span: Any, state: SelectionState, model: ModelEntry,
              kwargs: dict[str, Any]) -> None:
    span.set_attribute(tm.GEN_AI_OPERATION, "chat")
    span.set_attribute(tm.GEN_AI_SYSTEM, model.provider)
    span.set_attribute(tm.GEN_AI_REQUEST_MODEL, model.model)
    span.set_attribute(tm.GEN_AI_REQUEST_MAX_TOKENS, kwargs["max_tokens"])
    span.set_attribute(tm.GEN_AI_REQUEST_TEMPERATURE, kwargs["temperature"])
    span.set_attribute(tm.MODEL_ID, model.id)
    span.set_attribute(tm.ATTEMPT, len(state.get("attempts") or []) + 1)


def _settle_failure(services: Services, state: SelectionState, model: ModelEntry, span: Any,
                    exc: Exception, started: float, max_tries: int,
                    admission: str) -> dict[str, Any]:
    failure = classify(exc)
    if failure.action == "retry" and state["tries"] + 1 >= max_tries:
        failure = replace(failure, action="next")  # its tries are spent: the action taken
    span.set_attribute(tm.ERROR_TYPE, failure.error_class)
    span.set_attribute(tm.SELECTOR_ACTION, failure.action)
    tm.mark_failed(span, failure.error_class)
    on_failure(services, state, model, failure)
    if admission == "probe" and failure.error_class in PROVIDER_ANSWERED:
        # No sign of an unwell model: the probe closes the circuit instead of leaving it
        # half-open, the model excluded as "probe in flight" until the lease ran out.
        services.store.with_circuits(lambda c: c.record_success(model.id))
    return _failed(state, model.id, exc, failure, int((services.clock() - started) * 1000))


def _settle_success(services: Services, state: SelectionState, model: ModelEntry, span: Any,
                    reply: llm.Reply, admission: str) -> dict[str, Any]:
    span.set_attribute(tm.GEN_AI_USAGE_INPUT_TOKENS, reply.input_tokens)
    span.set_attribute(tm.GEN_AI_USAGE_OUTPUT_TOKENS, reply.output_tokens)
    span.set_attribute(tm.COST_USD, reply.cost_usd)
    span.set_attribute(tm.LATENCY_MS, reply.latency_ms)
    if admission != "clean":  # a clean circuit has nothing to reset: one round trip saved
        services.store.with_circuits(lambda c: c.record_success(model.id))
    return _outcome(state, model.id, reply)


def call_model(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """Call the current model once; record success or the classified failure."""
    settings = settings_of(runtime.context)
    prepared = _prepare(state, settings, services)
    if isinstance(prepared, dict):
        return prepared
    model, kwargs, admission = prepared
    with tm.tracer.start_as_current_span("gen_ai.chat", record_exception=False) as span:
        _tag_call(span, state, model, kwargs)
        started = services.clock()
        try:
            reply = llm.call(model, state["messages"], **kwargs)
        except Exception as exc:  # every failure is classified; none is swallowed unseen
            return _settle_failure(services, state, model, span, exc, started,
                                   settings.max_tries_per_model, admission)
        return _settle_success(services, state, model, span, reply, admission)


async def acall_model(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """`call_model` for `ainvoke`: the provider call is awaited, not run on a thread.

    The shared-state updates around it stay synchronous: each is one sub-millisecond round
    trip to Redis, and a second, asyncio copy of the outage-tolerant store would double it.
    """
    settings = settings_of(runtime.context)
    prepared = _prepare(state, settings, services)
    if isinstance(prepared, dict):
        return prepared
    model, kwargs, admission = prepared
    with tm.tracer.start_as_current_span("gen_ai.chat", record_exception=False) as span:
        _tag_call(span, state, model, kwargs)
        started = services.clock()
        try:
            reply = await llm.acall(model, state["messages"], **kwargs)
        except Exception as exc:  # every failure is classified; none is swallowed unseen
            return _settle_failure(services, state, model, span, exc, started,
                                   settings.max_tries_per_model, admission)
        return _settle_success(services, state, model, span, reply, admission)
