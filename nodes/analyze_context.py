"""analyze_context: validate the request and derive what the later nodes decide with."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from graph.checkpoint import NEW_THREAD
from graph.context import TaskContext
from graph.services import Services
from graph.state import RunSettings, SelectionState
from graph.tokens import count_messages
from nodes import policies
from nodes.scoring import effective_weights


class BadRequest(ValueError):
    """The caller's request is unusable; the message names the field."""


def build_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    """Chat messages for the prompt, system prompt first when given."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": prompt}]


def parse_context(raw: Any) -> TaskContext:
    """A TaskContext from a TaskContext or a plain dict (pydantic names any bad field)."""
    if raw is None:
        raise BadRequest("context: required (a TaskContext or a dict of its fields)")
    return raw if isinstance(raw, TaskContext) else TaskContext.model_validate(raw)


def analyze_context(
    state: SelectionState, runtime: Runtime[RunSettings], config: RunnableConfig, *,
    services: Services,
) -> dict[str, Any]:
    """Validate, count the prompt's real tokens, and fix weights, deadline and budget."""
    settings = runtime.context or RunSettings()
    ctx = parse_context(state.get("context"))
    prompt = state.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt: required, a non-empty string")
    system_prompt = state.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise BadRequest("system_prompt: must be a string or None")
    try:  # before any Redis read
        policies.check(settings.policy, services.registry)
    except ValueError as exc:
        raise BadRequest(f"policy: {exc}") from None
    messages = build_messages(prompt, system_prompt)
    now = services.clock()
    configurable = config.get("configurable", {})
    update = {
        "task": ctx.model_dump(mode="json"),
        "messages": messages,
        "prompt_tokens": count_messages(messages),
        "max_output_tokens": settings.max_tokens,
        "weights": effective_weights(services.registry.scoring, ctx),
        "started": now,
        "deadline": now + ctx.max_latency_ms / 1000 if ctx.max_latency_ms else None,
        # without a checkpointer (and none from the caller) the id only names the request
        "thread_id": configurable.get("thread_id") or str(uuid.uuid4()),
        "position": 0,
        "tries": 0,
        "spent_usd": 0.0,
        "attempts": None,
        "success": False,
        "stop_reason": "",
        "response": None,
        "model_used": None,
        "error": None,
    }
    if "thread_id" in configurable and not configurable.get(NEW_THREAD):
        # a thread id the caller chose may be a reused one: nothing of its last request
        update |= {"chain": [], "candidates": [], "excluded": {}, "fallback_triggered": False,
                   "usage": {}}
    return update
