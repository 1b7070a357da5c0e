"""record_feedback: the spec's feedback record to JSONL, usage to Redis, the final answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from langgraph.runtime import Runtime

from graph import telemetry as tm
from graph.redact import redact_all
from graph.services import Services
from graph.state import Attempt, RunSettings, SelectionState
from graph.store import Served
from nodes.next_fallback import declined_so_far

CALLED = frozenset({None, "rate_limit", "timeout", "connection", "server_error",
                    "context_window", "content_policy", "auth", "not_found", "unsupported",
                    "bad_request", "unknown"})
"""Attempt classes that reached a provider (skips for budget, deadline or circuit did not)."""


def summarize_error(attempts: list[Attempt], retry_declined: Sequence[str] = ()) -> str:
    """One line listing every attempt, for a request that was not served (a provider's
    multi-line message, a pydantic error say, is folded onto it), and each retry asked
    for but not made."""
    parts = [f"{a['model_id']}#{a['try_no']}: {a['error_class']} "
             f"({' '.join(str(a['error']).split())})" for a in attempts if not a["ok"]]
    return f"all {len(parts)} attempts failed: " + "; ".join([*parts, *retry_declined])


def feedback_record(state: SelectionState, now: datetime,
                    include_prompt: bool = False) -> dict[str, Any]:
    """The spec's record (timestamp .. user_feedback) plus what explains the outcome."""
    attempts = state.get("attempts") or []
    called = [a["model_id"] for a in attempts if a["error_class"] in CALLED]
    served = state.get("model_used")
    task = state["task"]
    record: dict[str, Any] = {
        "timestamp": now.isoformat(),
        # unserved: the last model called (None when none was: skips blame no model)
        "model_id": served or (called[-1] if called else None),
        "task_type": task["task_type"],
        "success": bool(state.get("success")),
        "latency_ms": state.get("latency_ms", 0),
        "cost_usd": round(state.get("spent_usd", 0.0), 8),
        "agent_id": task.get("agent_id", ""),
        "user_feedback": None,
        "request_id": state.get("thread_id"),
        "domain": task["domain"],
        "fallback_triggered": bool(state.get("fallback_triggered")),
        "failed_models": sorted({a["model_id"] for a in attempts
                                 if not a["ok"] and a["error_class"] in CALLED}),
        "attempts": len(attempts),
        "stop_reason": state.get("stop_reason"),
        "prompt_tokens": state.get("prompt_tokens"),
        "error": state.get("error"),
    }
    if include_prompt:  # a key pasted into a prompt is redacted here too
        record["prompt"], record["messages"] = redact_all(
            [state.get("prompt"), state.get("messages")])
    return record


def record_feedback(
    state: SelectionState, runtime: Runtime[RunSettings], *, services: Services
) -> dict[str, Any]:
    """Append the record (always), log usage per called model (Redis, or queued), answer."""
    now = datetime.fromtimestamp(services.clock(), tz=timezone.utc)
    attempts = state.get("attempts") or []
    result: dict[str, Any] = {
        "cost_usd": round(state.get("spent_usd", 0.0), 8),
        "fallback_triggered": bool(state.get("fallback_triggered")) or state["position"] > 0,
    }
    if not state.get("success"):
        result |= {"success": False, "response": None, "model_used": None,
                   "latency_ms": sum(a["latency_ms"] for a in attempts),
                   "error": summarize_error(attempts, declined_so_far(state))}
    record = feedback_record({**state, **result}, now,  # type: ignore[typeddict-item]
                             services.include_prompt)
    services.feedback.append(record)
    called = [a for a in attempts if a["error_class"] in CALLED]
    for a in called:
        served = None  # the serving call is kept ratable (graph/ratings.py)
        if a["ok"] and record["request_id"]:
            served = (record["request_id"],
                      Served(a["model_id"], record["domain"], record["task_type"]))
        elif a is called[-1] and not record["success"] and record["request_id"]:
            served = (record["request_id"], None)  # nothing to rate: not an earlier answer
        services.store.log_usage(a["model_id"], {
            "timestamp": record["timestamp"], "latency_ms": a["latency_ms"],
            "success": a["ok"], "task_type": record["task_type"],
            "cost_usd": a["cost_usd"], "request_id": record["request_id"],
        }, served)
    with tm.tracer.start_as_current_span("model_selector.outcome",
                                         record_exception=False) as span:
        span.set_attribute(tm.MODEL_ID, record["model_id"] or "")
        span.set_attribute(tm.SELECTOR_STOP, str(record["stop_reason"]))
        span.set_attribute(tm.COST_USD, record["cost_usd"])
        span.set_attribute(tm.LATENCY_MS, record["latency_ms"])
        span.set_attribute(tm.ATTEMPT, len(attempts))
        span.set_attribute(tm.SELECTOR_SUCCESS, record["success"])
        span.set_attribute(tm.SELECTOR_REQUEST, record["request_id"] or "")
        if not record["success"]:
            tm.mark_failed(span, str(record["stop_reason"]))
    return result


def record_rejection(services: Services, state: SelectionState, reason: str) -> None:
    """A request no model may even try still leaves its feedback record (records = requests)."""
    now = datetime.fromtimestamp(services.clock(), tz=timezone.utc)
    services.feedback.append(feedback_record(
        {**state, "success": False, "stop_reason": "no_eligible_model",  # type: ignore[typeddict-item]
         "attempts": [], "spent_usd": 0.0, "latency_ms": 0, "error": reason}, now,
        services.include_prompt))
