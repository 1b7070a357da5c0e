"""The conversation sent to the model: prompt, system prompt and an agent's history."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from graph.tokens import count_messages
from nodes.conversation import BadRequest, build_messages

CALL = {"id": "call_1", "type": "function",
        "function": {"name": "lsof", "arguments": '{"port": 8080}'}}


def test_a_prompt_alone_is_one_user_turn_after_the_system_prompt():
    assert build_messages("free port 8080", None) == [
        {"role": "user", "content": "free port 8080"}]
    assert build_messages("free port 8080", "be brief") == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "free port 8080"}]


def test_the_history_goes_between_the_system_prompt_and_the_prompt():
    history = [{"role": "user", "content": "port 8080 is busy"},
               {"role": "assistant", "content": "which service holds it?"}]
    assert build_messages("the api", "be brief", history) == [
        {"role": "system", "content": "be brief"}, *history,
        {"role": "user", "content": "the api"}]
    assert build_messages(None, None, history) == history  # the history alone: its last turn


def test_langchain_messages_and_pairs_become_chat_dicts_with_tool_use_kept():
    history = [SystemMessage("you fix ports"), HumanMessage("port 8080 is busy"),
               AIMessage("", tool_calls=[{"name": "lsof", "args": {"port": 8080},
                                          "id": "call_1"}]),
               ToolMessage("api 4242", tool_call_id="call_1"), ("assistant", "pid 4242")]
    sent = build_messages(None, None, history)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant"]
    assert sent[2]["tool_calls"][0]["function"]["name"] == "lsof"
    assert sent[3] == {"role": "tool", "content": "api 4242", "tool_call_id": "call_1"}
    assert sent[4] == {"role": "assistant", "content": "pid 4242"}


@pytest.mark.parametrize(("prompt", "history", "named"), [
    (None, None, "prompt: required"),
    (None, [], "prompt: required"),
    ("  ", None, "prompt: must be a non-empty string"),
    (42, None, "prompt: must be a non-empty string"),
    (None, "hi", "messages: must be a list"),
    (None, {"role": "user", "content": "hi"}, "messages: must be a list"),
    ("x", [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}],
     "messages[1].role: must be one of"),
    ("x", [{"content": "a"}], "messages[0].role"),
    ("x", [{"role": "user", "content": " "}], "messages[0].content: empty"),
    ("x", [{"role": "user", "content": []}], "messages[0].content: an empty list"),
    ("x", [{"role": "assistant", "content": None}], "messages[0].content: must be a string"),
    ("x", [{"role": "user", "content": 7}], "messages[0].content: must be a string"),
    ("x", [42], "messages[0]: not a chat message"),
])
def test_a_bad_request_names_what_is_wrong(prompt, history, named):
    with pytest.raises(BadRequest, match=named.replace("[", r"\[").replace("]", r"\]")) as err:
        build_messages(prompt, None, history)
    assert "\n" not in str(err.value)


def test_tool_calls_and_text_parts_are_counted():
    plain = count_messages([{"role": "assistant", "content": ""}])
    assert count_messages([{"role": "assistant", "content": None, "tool_calls": [CALL]}]) > plain
    parts = [{"type": "text", "text": "port 8080 is busy"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert count_messages([{"role": "user", "content": parts}]) == count_messages(
        [{"role": "user", "content": "port 8080 is busy"}])
