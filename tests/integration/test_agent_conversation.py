"""An agent's conversation through the graph: the whole history reaches the model, as a
plain request, as a subgraph of an agent whose state holds `messages`, and over HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, TypedDict

import litellm
import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from graph.builder import compile_graph
from graph.state import RunSettings
from nodes.conversation import BadRequest
from tests.conftest import PORT_HEALER

HISTORY = [{"role": "user", "content": "port 8080 is busy"},
           {"role": "assistant", "content": "which service holds it?"}]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """The messages of every call that reached LiteLLM (its real entry point, spied on)."""
    calls: list[list[dict[str, Any]]] = []
    real = litellm.completion

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["messages"])
        return real(*args, **kwargs)

    monkeypatch.setattr(litellm, "completion", spy)
    return calls


def test_the_history_and_the_prompt_reach_the_model_in_order(selection, sent):
    out = selection.invoke({"context": PORT_HEALER, "messages": HISTORY, "prompt": "the api",
                            "system_prompt": "be brief"},
                           context=RunSettings(mock_responses={"*": "fuser -k 8080/tcp"}))
    assert out["success"] and out["response"] == "fuser -k 8080/tcp"
    assert [(m["role"], m["content"]) for m in sent[-1]] == [
        ("system", "be brief"), ("user", "port 8080 is busy"),
        ("assistant", "which service holds it?"), ("user", "the api")]
    alone = selection.invoke({"context": PORT_HEALER, "prompt": "the api"},
                             context=RunSettings(mock_responses={"*": "ok"}))
    assert out["prompt_tokens"] > alone["prompt_tokens"] + 10  # the history was counted


def test_a_reused_thread_does_not_resend_the_last_requests_history(selection, sent):
    config = {"configurable": {"thread_id": f"agent-{uuid.uuid4().hex}"}}
    settings = RunSettings(mock_responses={"*": "ok"})
    selection.invoke({"context": PORT_HEALER, "messages": HISTORY, "prompt": "the api"},
                     config, context=settings)
    selection.invoke({"context": PORT_HEALER, "prompt": "and port 9090?"}, config,
                     context=settings)
    assert sent[-1] == [{"role": "user", "content": "and port 9090?"}]


@pytest.mark.parametrize(("bad", "named"), [
    ({"role": "robot", "content": "beep"}, r"messages\[1\]\.role"),
    ({"role": "tool", "content": "api 4242"}, r"messages\[1\]\.tool_call_id"),
    ({"role": "user", "content": [{"type": "weird"}]}, r"messages\[1\]\.content\[0\]\.type"),
])
def test_a_bad_message_fails_before_any_call_naming_it(selection, services, sent, bad, named):
    """Once, such a message failed at every model in turn, opening the domain's circuits."""
    for _ in range(4):  # more than the domain's failure threshold
        with pytest.raises(BadRequest, match=named):
            selection.invoke({"context": PORT_HEALER, "messages": [HISTORY[0], bad]},
                             context=RunSettings(mock_responses={"*": "ok"}))
    assert sent == []
    live = services.store.live({m: "alive" for m in services.registry.models})
    assert {(a.state, a.failures) for a in live.availability.values()} == {("closed", 0)}


class Agent(TypedDict, total=False):
    context: dict[str, Any]
    messages: Annotated[list[AnyMessage], add_messages]
    response: str | None
    model_used: str | None


def answer(state: Agent) -> dict[str, Any]:
    return {"messages": [AIMessage(state["response"])]}


def test_an_agent_with_messages_state_embeds_it_and_keeps_talking(services, sent):
    builder = StateGraph(Agent)
    builder.add_node("route_and_call", compile_graph(services, checkpointer=None))
    builder.add_node("answer", answer)
    builder.add_edge(START, "route_and_call")
    builder.add_edge("route_and_call", "answer")
    builder.add_edge("answer", END)
    agent = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "agent-chat"}}
    settings = RunSettings(mock_responses={"*": "which service?"})
    first = agent.invoke({"context": PORT_HEALER, "messages": [HumanMessage("port 8080")]},
                         config, context=settings)
    assert [m.content for m in first["messages"]] == ["port 8080", "which service?"]
    agent.invoke({"messages": [HumanMessage("the api")]}, config, context=settings)
    assert [(m["role"], m["content"]) for m in sent[-1]] == [
        ("user", "port 8080"), ("assistant", "which service?"), ("user", "the api")]


def test_the_feedback_record_keeps_the_conversation_only_when_asked(selection, services):
    request = {"context": PORT_HEALER, "messages": HISTORY, "prompt": "the api"}
    selection.invoke(request, context=RunSettings(mock_responses={"*": "ok"}))
    services.include_prompt = True  # FEEDBACK_INCLUDE_PROMPT=1
    selection.invoke(request, context=RunSettings(mock_responses={"*": "ok"}))
    secret = {**request, "prompt": "my key is sk-proj-abcdefghijklmnop, use it"}
    selection.invoke(secret, context=RunSettings(mock_responses={"*": "ok"}))
    plain, kept, redacted = (json.loads(line)
                             for line in services.feedback.path.read_text().splitlines())
    assert "messages" not in plain and "prompt" not in plain
    assert kept["prompt"] == "the api"
    assert kept["messages"] == [*HISTORY, {"role": "user", "content": "the api"}]
    assert redacted["prompt"] == "my key is [REDACTED], use it"  # keys stay out of records
    assert redacted["messages"][-1] == {"role": "user", "content": "my key is [REDACTED], use it"}


def test_an_empty_tool_result_and_the_graphs_own_empty_answer_go_back_as_history(selection,
                                                                                 sent):
    """Both were refused as `content: empty`, stopping an agent loop whose tool printed
    nothing, or which sent back an empty answer the graph itself had served."""
    settings = RunSettings(mock_responses={"*": ""})
    first = selection.invoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                             context=settings)
    assert first["success"] and first["response"] == ""
    history = [HumanMessage("free port 8080"), AIMessage(first["response"]),
               HumanMessage("run lsof"),
               AIMessage("", tool_calls=[{"name": "lsof", "args": {}, "id": "call_1"}]),
               {"role": "tool", "content": "", "tool_call_id": "call_1"}]
    out = selection.invoke({"context": PORT_HEALER, "messages": history},
                           context=RunSettings(mock_responses={"*": "nothing holds it"}))
    assert out["success"] and out["response"] == "nothing holds it"
    assert [(m["role"], m["content"] or "") for m in sent[-1]] == [
        ("user", "free port 8080"), ("assistant", ""), ("user", "run lsof"),
        ("assistant", ""), ("tool", "")]
