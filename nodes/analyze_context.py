"""analyze_context: validate the request and derive what the later nodes decide with."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from graph.checkpoint import NEW_THREAD
from graph.context import TaskContext
from graph.services import Services
from graph.state import RunSettings, SelectionState, settings_of
from graph.tokens import count_messages, count_tools
from nodes import policies
from nodes.conversation import BadRequest, build_messages, check_tool_choice, check_tools
from nodes.scoring import effective_weights


def parse_context(raw: Any) -> TaskContext:
    """A TaskContext from a TaskContext or a plain dict (pydantic names any bad field)."""
    if raw is None:
        raise BadRequest("context: required (a TaskContext or a dict of its fields)")
    return raw if isinstance(raw, TaskContext) else TaskContext.model_validate(raw)


def analyze_context(
    state: SelectionState, runtime: Runtime[RunSettings], config: RunnableConfig, *,
    services: Services,
) -> dict[str, Any]:
    """Validate, count the messages' real tokens, and fix weights, deadline and budget.

    The input's `messages` (a conversation so far) is replaced by the whole conversation
    sent: system prompt, history, prompt; its `tools` by the OpenAI tool specs sent."""
    settings = settings_of(runtime.context)
    ctx = parse_context(state.get("context"))
    messages = build_messages(state.get("prompt"), state.get("system_prompt"),
                              state.get("messages"))
    tools = check_tools(state.get("tools"))
    tool_choice = check_tool_choice(state.get("tool_choice"), tools)
    try:  # before any Redis read
        policies.check(settings.policy, services.registry)
    except ValueError as exc:
        raise BadRequest(f"policy: {exc}") from None
    unknown = [m for m in settings.mock_responses or () if m != "*"
               and m not in services.registry.models]  # (a set difference walked the registry)
    if unknown:  # a misspelt id would leave its model called for real
        raise BadRequest(f"mock_responses: no model {', '.join(sorted(unknown))} in the "
                         "registry")
    now = services.clock()
    configurable = config.get("configurable", {})
    update = {
        "task": ctx.model_dump(mode="json"),
        "messages": messages,
        "tools": tools,
        "tool_choice": tool_choice,
        "prompt_tokens": count_messages(messages) + count_tools(tools),
        "max_output_tokens": settings.max_tokens,
        "weights": effective_weights(services.registry.scoring, ctx),
        "started": now,
        "deadline": now + ctx.max_latency_ms / 1000 if ctx.max_latency_ms else None,
        # without a checkpointer (and none from the caller) the id only names the request
        "thread_id": request_id(configurable),
        "position": 0,
        "tries": 0,
        "spent_usd": 0.0,
        "retry_declined": [],
        "attempts": None,
        "success": False,
        "stop_reason": None,  # none yet (a paused run); the last request's is gone
        "cost_usd": 0.0,
        "latency_ms": 0,
        "response": None,
        "tool_calls": None,
        "model_used": None,
        "error": None,
    }
    if "thread_id" in configurable and not configurable.get(NEW_THREAD):
        # a thread id the caller chose may be a reused one: nothing of its last request
        update |= {"chain": [], "candidates": [], "excluded": {}, "fallback_triggered": False,
                   "usage": {}}
    return update


def request_id(configurable: Mapping[str, Any]) -> str:
    """The request's id (a str: ratable): the thread id the caller chose, else a fresh one.
    Embedded in a parent graph, whose one thread may run many selections, it is the
    parent's thread id and this run's namespace (`agent-1/select:<task id>`): each
    selection is rated on its own, and a resumed one keeps its id."""
    chosen = chosen_thread_id(configurable)
    if chosen is None:
        return str(uuid.uuid4())
    namespace = configurable.get("checkpoint_ns") or ""
    if "|" not in namespace:
        return chosen
    run = namespace.rsplit("|", 1)[0]  # ours is the last part; the parent's run of us, the rest
    if ":" not in run.rsplit("|", 1)[-1]:  # a subgraph that keeps its own thread
        # (`checkpointer=True`) has no task id in its namespace: every run would share it
        run = f"{run}:{uuid.uuid4()}"
    return f"{chosen}/{run}"


def chosen_thread_id(configurable: Mapping[str, Any]) -> str | None:
    """The thread id the caller chose, as a string; None for no choice: None or ""
    (`os.environ.get(...)` unset) would pile unrelated requests on one thread, while 0 is
    thread "0"."""
    chosen = configurable.get("thread_id")
    return None if chosen in (None, "") else str(chosen)
