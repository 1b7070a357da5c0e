"""Tool calling through the graph: the tools reach the model, only models that can call them
are chained, the calls come back, and an agent loop finishes on the tool's result."""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest
from langchain_core.tools import tool

from graph.state import RunSettings
from nodes.conversation import BadRequest
from tests.conftest import PORT_HEALER, QUERY_OPTIMIZER


@tool
def lsof(port: int) -> str:
    """Which process holds a TCP port."""
    return "api (pid 4242)"


CALL = {"id": "call_1", "type": "function",
        "function": {"name": "lsof", "arguments": json.dumps({"port": 8080})}}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every call that reached LiteLLM."""
    calls: list[dict[str, Any]] = []
    real = litellm.completion

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(litellm, "completion", spy)
    return calls


def test_the_tools_reach_the_model_and_its_calls_come_back(selection, sent):
    settings = RunSettings(mock_responses={"*": {"content": "", "tool_calls": [CALL]}})
    out = selection.invoke({"context": PORT_HEALER, "prompt": "who holds port 8080?",
                            "tools": [lsof], "tool_choice": "required"}, context=settings)
    assert out["success"] and out["response"] == "" and out["tool_calls"] == [CALL]
    [kwargs] = sent
    assert [t["function"]["name"] for t in kwargs["tools"]] == ["lsof"]
    assert kwargs["tool_choice"] == "required"
    plain = selection.invoke({"context": PORT_HEALER, "prompt": "who holds port 8080?"},
                             context=RunSettings(mock_responses={"*": "api"}))
    assert plain["tool_calls"] is None and "tools" not in sent[-1]
    assert out["prompt_tokens"] > plain["prompt_tokens"]  # the specs were counted


def test_only_models_that_can_call_tools_are_chained(selection):
    out = selection.invoke({"context": QUERY_OPTIMIZER, "prompt": "index this query",
                            "tools": [lsof]}, context=RunSettings(mock_responses={"*": "ok"}))
    chain = [c["model_id"] for c in out["chain"]]
    assert chain[0] == "claude-3.5-sonnet" and "qwen-2.5-coder-32b-instruct" not in chain
    assert out["excluded"]["qwen-2.5-coder-32b-instruct"].startswith("cannot call tools")


def test_an_agent_loop_runs_the_tool_and_finishes_on_its_result(selection, sent):
    request = {"context": PORT_HEALER, "prompt": "free port 8080", "tools": [lsof]}
    first = selection.invoke(request, context=RunSettings(
        mock_responses={"*": {"content": "", "tool_calls": [CALL]}}))
    [call] = first["tool_calls"]
    result = lsof.invoke(json.loads(call["function"]["arguments"]))
    history = [{"role": "user", "content": "free port 8080"},
               {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
               {"role": "tool", "tool_call_id": call["id"], "content": result}]
    final = selection.invoke({"context": PORT_HEALER, "messages": history, "tools": [lsof]},
                             context=RunSettings(mock_responses={"*": "kill 4242"}))
    assert final["success"] and final["response"] == "kill 4242" and final["tool_calls"] is None
    assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "tool"]
    assert sent[-1]["messages"][1]["tool_calls"][0]["function"]["name"] == "lsof"


def test_a_bad_tool_fails_before_any_call_naming_it(selection, sent):
    with pytest.raises(BadRequest, match=r"tools\[0\]: must be"):
        selection.invoke({"context": PORT_HEALER, "prompt": "x",
                          "tools": [{"type": "web_search"}]},
                         context=RunSettings(mock_responses={"*": "ok"}))
    assert sent == []
