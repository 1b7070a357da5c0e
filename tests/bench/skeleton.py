"""The selection graph's skeleton: LangGraph's own cost for a request, with no node work.

Same nodes (next_fallback too, never reached), edges, state, input, output and context
schemas, the same `Command` routing, and each node writes what it wrote in a real served
run (recorded once, returned as is): what is left is LangGraph's runtime. The bench times
it beside the real graph, so every run shows how much of the graph's overhead is
LangGraph's floor for this shape.
"""

from __future__ import annotations

from typing import Any

from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from graph.builder import SelectionGraph
from graph.state import RunSettings, SelectionInput, SelectionOutput, SelectionState

SERVED_PATH = ("analyze_context", "query_registry", "score", "call_model", "record_feedback")


def recorded_updates(graph: CompiledStateGraph, request: dict[str, Any],
                     settings: RunSettings) -> dict[str, dict[str, Any]]:
    """Each node's update in one run of `graph` (which must be served on the first model)."""
    updates: dict[str, dict[str, Any]] = {}
    for chunk in graph.stream(request, context=settings, stream_mode="updates"):
        updates.update(chunk)
    if tuple(updates) != SERVED_PATH:
        raise RuntimeError(f"not a first-model served run: {tuple(updates)}")
    return updates


def _constant(name: str, update: dict[str, Any], goto: str | None) -> RunnableCallable:
    result: Any = Command(update=update, goto=goto) if goto else update

    def sync(state: Any, runtime: Any) -> Any:
        return result

    async def asyn(state: Any, runtime: Any) -> Any:
        return result

    return RunnableCallable(sync, asyn, name=name, trace=False)


def skeleton_graph(updates: dict[str, dict[str, Any]]) -> CompiledStateGraph:
    """A graph of the served path's shape whose nodes return `updates` and do nothing else."""
    builder = StateGraph(SelectionState, context_schema=RunSettings,
                         input_schema=SelectionInput, output_schema=SelectionOutput)
    for name in SERVED_PATH:
        goto = "record_feedback" if name == "call_model" else None
        builder.add_node(name, _constant(name, updates[name], goto),
                         destinations=(goto, "next_fallback") if goto else None)
    builder.add_node("next_fallback", _constant("next_fallback", {}, "call_model"),
                     destinations=("call_model", "record_feedback"))  # never reached
    builder.add_edge(START, SERVED_PATH[0])
    for a, b in zip(SERVED_PATH[:3], SERVED_PATH[1:4]):
        builder.add_edge(a, b)
    builder.add_edge("record_feedback", END)
    compiled = builder.compile()
    compiled.__class__ = SelectionGraph  # invoked as the graph is (its v2 output format)
    return compiled
