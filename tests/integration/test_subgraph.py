"""Agents embed the selection graph as a subgraph of their own checkpointed graphs."""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from graph.builder import compile_graph
from graph.state import RunSettings
from tests.conftest import PORT_HEALER, QUERY_OPTIMIZER


class AgentState(TypedDict, total=False):
    context: dict[str, Any]
    prompt: str
    response: str | None
    model_used: str | None
    success: bool
    summary: str


def summarize(state: AgentState) -> dict[str, Any]:
    return {"summary": f"{state['model_used']}: {state['response']}"}


def chain_graph(*steps):
    """A parent graph running the named steps in turn, checkpointed in memory."""
    builder = StateGraph(AgentState)
    previous = START
    for name, step in steps:
        builder.add_node(name, step)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile(checkpointer=InMemorySaver())


def parent_graph(child):
    return chain_graph(("select_and_call", child), ("summarize", summarize))


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


def test_each_selection_in_one_parent_thread_is_its_own_ratable_request(services):
    """Every selection in a parent's thread took the parent's thread id as its request id:
    their feedback records shared it, and only the latest could be rated."""
    child = compile_graph(services, checkpointer=None)
    parent = chain_graph(("first", child), ("second", child))
    parent.invoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                  {"configurable": {"thread_id": "agent-run-3"}},
                  context=RunSettings(mock_responses={"*": "fuser -k 8080/tcp"}))
    ids = [json.loads(line)["request_id"]
           for line in services.feedback.path.read_text().splitlines()]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert [i.split(":")[0] for i in ids] == ["agent-run-3/first", "agent-run-3/second"]
    for request in ids:  # each rates its own answer
        assert services.store.rate(request, 0.5) is not None


@pytest.mark.parametrize("keeps_its_thread", [False, True])
def test_a_loop_over_the_selection_node_rates_each_run(services, keeps_its_thread):
    """With `checkpointer=True` the namespace has no task id: every run shared one id."""
    class Loop(TypedDict, total=False):
        context: dict[str, Any]
        prompt: str
        response: str | None
        turns: int

    child = compile_graph(services, checkpointer=True if keeps_its_thread else None)
    builder = StateGraph(Loop)
    builder.add_node("sel", child)
    builder.add_node("count", lambda s: {"turns": s.get("turns", 0) + 1})
    builder.add_edge(START, "sel")
    builder.add_edge("sel", "count")
    builder.add_conditional_edges("count", lambda s: END if s["turns"] >= 2 else "sel")
    builder.compile(checkpointer=InMemorySaver()).invoke(
        {"context": PORT_HEALER, "prompt": "x"}, {"configurable": {"thread_id": "agent-1"}},
        context=RunSettings(mock_responses={"*": "ok"}))
    ids = [json.loads(line)["request_id"]
           for line in services.feedback.path.read_text().splitlines()]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("agent-1/sel") for i in ids)


def test_a_parent_whose_state_is_a_pydantic_model_embeds_it(services):
    """Refusing every request that is not a dict refused a parent's state object."""
    from pydantic import BaseModel

    class AgentModel(BaseModel):
        context: dict[str, Any]
        prompt: str
        response: str | None = None

    builder = StateGraph(AgentModel)
    builder.add_node("sel", compile_graph(services, checkpointer=None))
    builder.add_edge(START, "sel")
    builder.add_edge("sel", END)
    out = builder.compile().invoke({"context": PORT_HEALER, "prompt": "x"},
                                   context=RunSettings(mock_responses={"*": "ok"}))
    assert out["response"] == "ok"  # the run passed (it raised BadRequest)


def test_a_string_sent_from_inside_a_parents_node_is_still_refused_naming_it(services):
    """Inside a parent (a node passing its config on) any non-dict was let through, to
    fail as LangGraph's 'Expected dict'."""
    from nodes.conversation import BadRequest

    child = compile_graph(services, checkpointer=None)
    parent = chain_graph(("ask", lambda state, config: {"response": child.invoke("x", config)}))
    with pytest.raises(BadRequest, match="^request: must be a dict .*not str"):
        parent.invoke({"context": PORT_HEALER, "prompt": "x"},
                      {"configurable": {"thread_id": uuid.uuid4().hex}})


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


def _without_run_values(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k not in ("thread_id", "latency_ms", "attempts")}


def test_invoke_returns_what_langgraphs_own_invoke_returns(selection):
    """`SelectionGraph.invoke` runs LangGraph's v2 output format (cheaper) and hands back
    v1's: the final values, the same after an `interrupt_before`, other modes untouched."""
    from langgraph.graph.state import CompiledStateGraph

    request = {"context": PORT_HEALER, "prompt": "free port 8080"}
    settings = RunSettings(mock_responses={"*": "ok"})
    ours = selection.invoke(request, context=settings)
    theirs = CompiledStateGraph.invoke(selection, request, context=settings)
    assert isinstance(ours, dict) and ours["response"] == "ok"
    assert _without_run_values(ours) == _without_run_values(theirs)

    for n, run in enumerate((selection.invoke, functools.partial(CompiledStateGraph.invoke,
                                                                 selection))):
        config = {"configurable": {"thread_id": f"paused-{n}-{uuid.uuid4().hex}"}}
        paused = run(request, config, context=settings, interrupt_before=["call_model"])
        assert "__interrupt__" not in paused and paused.get("response") is None
        assert [c["model_id"] for c in paused["chain"]][0] == "llama-3.3-70b-versatile"
        assert selection.get_state(config).next == ("call_model",)

    updates = selection.invoke(request, context=settings, stream_mode="updates")
    assert [next(iter(u)) for u in updates][-1] == "record_feedback"
    assert selection.invoke(request, context=settings, version="v2").value["response"] == "ok"


async def test_ainvoke_returns_the_final_values_too(selection):
    out = await selection.ainvoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                                  context=RunSettings(mock_responses={"*": "ok"}))
    assert isinstance(out, dict) and out["response"] == "ok" and out["success"] is True


def test_an_interrupt_comes_back_under_its_v1_key():
    from langgraph.types import GraphOutput, Interrupt

    from graph.builder import _as_v1

    pause = Interrupt(value="approve?", id="i-1")
    assert _as_v1(GraphOutput(value={"a": 1}, interrupts=(pause,))) == {
        "a": 1, "__interrupt__": [pause]}
    assert _as_v1(GraphOutput(value=None, interrupts=(pause,))) == {"__interrupt__": [pause]}
    assert _as_v1(GraphOutput(value={"a": 1})) == {"a": 1}


@pytest.mark.parametrize("chosen", ["", None])
def test_an_empty_thread_id_is_no_choice_each_request_gets_its_own(selection, chosen):
    config = {"configurable": {"thread_id": chosen}}
    settings = RunSettings(mock_responses={"*": "ok"})
    ids = [selection.invoke({"context": PORT_HEALER, "prompt": "free port 8080"}, config,
                            context=settings)["thread_id"] for _ in range(2)]
    assert ids[0] != ids[1] and all(ids)
    for rid in ids:  # the id the result names is where the run's history is
        history = list(selection.get_state_history({"configurable": {"thread_id": rid}}))
        assert history[0].values["response"] == "ok"


def test_an_integer_thread_id_comes_back_as_the_string_that_rates_it(selection):
    thread = uuid.uuid4().int % 10**12
    out = selection.invoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                           {"configurable": {"thread_id": thread}},
                           context=RunSettings(mock_responses={"*": "ok"}))
    assert out["thread_id"] == str(thread)
    assert selection.rate(out["thread_id"], 0.5)["model_id"] == "llama-3.3-70b-versatile"


def test_a_misspelt_request_key_is_refused_naming_it(selection):
    from nodes.conversation import BadRequest

    with pytest.raises(BadRequest, match="unknown request key.*system_promt"):
        selection.invoke({"context": PORT_HEALER, "prompt": "x", "system_promt": "be brief"},
                         context=RunSettings(mock_responses={"*": "ok"}))


@pytest.mark.parametrize(("request_", "context", "error", "message"), [
    ([1], None, "BadRequest", r"^request: must be a dict \(context, messages, prompt, .*not list"),
    ({"context": PORT_HEALER, "prompt": "x"}, "cheap", "TypeError",
     r"^context: must be a RunSettings \(or a dict of its fields\), not str"),
    ({"context": PORT_HEALER, "prompt": "x"}, {"top_k": 2, "topk": 1}, "TypeError",
     r"^context: unknown RunSettings field\(s\) topk"),
    ({"context": PORT_HEALER, "prompt": "x"}, RunSettings(mock_responses={"llama-3.3": "ok"}),
     "BadRequest", r"^mock_responses: no model llama-3.3 in the registry"),
])
def test_a_bad_request_or_context_is_refused_naming_it(selection, request_, context, error,
                                                       message):
    """Each failed as LangGraph's InvalidUpdateError or an AttributeError in the first node;
    a misspelt mock id left its model called for real."""
    with pytest.raises(Exception, match=message) as raised:
        selection.invoke(request_, context=context)
    assert type(raised.value).__name__ == error


def test_a_parent_with_a_context_of_its_own_runs_it_on_default_settings(services,
                                                                       monkeypatch):
    """The parent's own context reached the nodes, which failed reading `.policy` from it."""
    from dataclasses import dataclass

    import litellm

    calls = []
    real = litellm.completion

    def answered(*args, **kwargs):  # the real call path, answered by LiteLLM's mock
        calls.append(kwargs)
        return real(*args, **{**kwargs, "mock_response": "ok"})

    monkeypatch.setattr(litellm, "completion", answered)

    @dataclass
    class AgentContext:
        user_id: str = "u1"

    child = compile_graph(services, checkpointer=None)
    builder = StateGraph(AgentState, context_schema=AgentContext)
    builder.add_node("select_and_call", child)
    builder.add_edge(START, "select_and_call")
    builder.add_edge("select_and_call", END)
    out = builder.compile().invoke({"context": PORT_HEALER, "prompt": "x"},
                                   context=AgentContext())
    assert out["response"] == "ok"
    assert (calls[-1]["max_tokens"], calls[-1]["temperature"]) == (4096, 0.1)  # the defaults
    # a parent without a schema passes a dict on: one of our settings' fields is read as ours
    out = parent_graph(child).invoke({"context": PORT_HEALER, "prompt": "x"},
                                     {"configurable": {"thread_id": uuid.uuid4().hex}},
                                     context={"max_tokens": 64})
    assert out["response"] == "ok" and calls[-1]["max_tokens"] == 64


def test_a_paused_request_on_a_reused_thread_shows_nothing_of_the_last_one(selection):
    """It showed the last request's cost and latency, and a stop_reason of ''."""
    config = {"configurable": {"thread_id": f"reused-{uuid.uuid4().hex}"}}
    settings = RunSettings(mock_responses={"*": "ok"})
    served = selection.invoke({"context": QUERY_OPTIMIZER, "prompt": "x"}, config,
                              context=settings)
    assert served["stop_reason"] == "served" and served["cost_usd"] > 0  # claude's prices
    paused = selection.invoke({"context": PORT_HEALER, "prompt": "y"}, config, context=settings,
                              interrupt_before=["call_model"])
    assert (paused["success"], paused["stop_reason"], paused["cost_usd"],
            paused["latency_ms"], paused["response"]) == (False, None, 0.0, 0, None)
