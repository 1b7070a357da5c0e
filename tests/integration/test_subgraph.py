"""Agents embed the selection graph as a subgraph of their own checkpointed graphs."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from graph.builder import compile_graph
from graph.state import RunSettings
from tests.conftest import PORT_HEALER


class AgentState(TypedDict, total=False):
    context: dict[str, Any]
    prompt: str
    response: str | None
    model_used: str | None
    success: bool
    summary: str


def summarize(state: AgentState) -> dict[str, Any]:
    return {"summary": f"{state['model_used']}: {state['response']}"}


def parent_graph(child):
    builder = StateGraph(AgentState)
    builder.add_node("select_and_call", child)
    builder.add_node("summarize", summarize)
    builder.add_edge(START, "select_and_call")
    builder.add_edge("select_and_call", "summarize")
    builder.add_edge("summarize", END)
    return builder.compile(checkpointer=InMemorySaver())


def test_runs_as_a_subgraph_under_the_parents_checkpointer(services):
    child = compile_graph(services, checkpointer=None)  # inherits the parent's
    parent = parent_graph(child)
    config = {"configurable": {"thread_id": "agent-run-1"}}
    out = parent.invoke({"context": PORT_HEALER, "prompt": "free port 8080"}, config,
                        context=RunSettings(mock_responses={"*": "fuser -k 8080/tcp"}))
    assert out["summary"] == "llama-3.3-70b-versatile: fuser -k 8080/tcp"
    # the parent's history holds the subgraph's steps under its namespace
    state = parent.get_state(config, subgraphs=True)
    assert state.values["success"] is True
    history = list(parent.get_state_history(config))
    assert any("select_and_call" in (h.next or ()) for h in history)


def test_the_checkpointed_selection_graph_embeds_too(services, checkpointer, redis_client, prefix):
    """Embedded, LangGraph stores its steps with the parent's checkpointer, not in Redis."""
    child = compile_graph(services, checkpointer=checkpointer)
    parent = parent_graph(child)
    config = {"configurable": {"thread_id": "agent-run-2"}}
    out = parent.invoke({"context": PORT_HEALER, "prompt": "free port 8080"}, config,
                        context=RunSettings(mock_responses={"*": "ok"}))
    assert out["success"] is True and out["summary"].endswith(": ok")
    assert not list(redis_client.scan_iter(match=f"{prefix}lg:cp:*"))


def test_standalone_runs_leave_their_history_in_redis(selection, redis_client, prefix):
    out = selection.invoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                           context=RunSettings(mock_responses={"*": "ok"}))
    keys = list(redis_client.scan_iter(match=f"{prefix}lg:cp:{out['thread_id']}:*"))
    assert len(keys) >= 7  # a checkpoint per step
    history = list(selection.get_state_history({"configurable": {"thread_id": out["thread_id"]}}))
    assert history[0].values["response"] == "ok"
