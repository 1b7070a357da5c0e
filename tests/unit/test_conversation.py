"""The conversation sent to the model: prompt, system prompt and an agent's history."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from graph.tokens import count_messages
from nodes.conversation import BadRequest, build_messages, check_tool_choice, check_tools

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
    ("x", [{"role": "user", "content": [{"type": "text"}]}],
     "messages[0].content[0].text: required on a text part"),
    ("x", [{"role": "assistant", "content": None}], "messages[0].content: must be a string"),
    ("x", [{"role": "user", "content": 7}], "messages[0].content: must be a string"),
    ("x", [42], "messages[0]: not a chat message"),
    # each of these passed, then failed at every model of the chain, opening their circuits
    ("x", [{"role": "tool", "content": "api 4242"}], "messages[0].tool_call_id: required"),
    ("x", [{"role": "tool", "content": "api 4242", "tool_call_id": " "}],
     "messages[0].tool_call_id: required"),
    ("x", [{"role": "assistant", "content": None, "tool_calls": "lsof"}],
     "messages[0].tool_calls: a list of tool calls"),
    ("x", [{"role": "user", "content": "a", "tool_calls": [CALL]}],
     "messages[0].tool_calls: a list of tool calls, on an assistant message only"),
    ("x", [{"role": "assistant", "content": None, "tool_calls": [{"foo": 1}]}],
     "messages[0]: not a chat message LangChain can convert (TypeError: "),
    ("x", [{"role": "user", "content": "a", "name": 5}], "messages[0].name: must be a string"),
    ("x", [{"role": "user", "content": [{"type": "weird"}]}],
     "messages[0].content[0].type: must be one of text, image_url"),
    ("x", [{"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}],
     "messages[0].content[1].type: must be one of"),
])
def test_a_bad_request_names_what_is_wrong(prompt, history, named):
    with pytest.raises(BadRequest, match=re.escape(named)) as err:
        build_messages(prompt, None, history)
    assert "\n" not in str(err.value)


def test_tool_calls_and_text_parts_are_counted():
    plain = count_messages([{"role": "assistant", "content": ""}])
    assert count_messages([{"role": "assistant", "content": None, "tool_calls": [CALL]}]) > plain
    parts = [{"type": "text", "text": "port 8080 is busy"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert count_messages([{"role": "user", "content": parts}]) == count_messages(
        [{"role": "user", "content": "port 8080 is busy"}])


LSOF = {"type": "function", "function": {"name": "lsof", "description": "who holds a port",
                                         "parameters": {"type": "object", "properties": {
                                             "port": {"type": "integer"}}}}}


def test_tools_are_openai_specs_and_langchain_tools_are_converted():
    from langchain_core.tools import tool

    @tool
    def restart(service: str) -> str:
        """Restart a systemd service."""
        return "ok"

    specs = check_tools([LSOF, restart])
    assert specs[0] == LSOF
    assert specs[1]["type"] == "function" and specs[1]["function"]["name"] == "restart"
    assert specs[1]["function"]["parameters"]["properties"]["service"]["type"] == "string"
    assert check_tools(None) is None and check_tools([]) is None  # no tools: every model
    assert check_tool_choice("required", specs) == "required"
    named = {"type": "function", "function": {"name": "restart"}}
    assert check_tool_choice(named, specs) == named


@pytest.mark.parametrize(("tools", "choice", "named"), [
    ({"type": "function"}, None, "tools: must be a list"),
    ([{"type": "web_search"}], None, "tools[0]: must be"),
    ([{"type": "function", "function": {"name": " "}}], None, "tools[0].function.name"),
    ([LSOF, LSOF], None, "tools: duplicate name(s) lsof"),
    ([42], None, "tools[0]: not a tool"),
    (None, "auto", "tool_choice: given without tools"),
    ([LSOF], "sometimes", "tool_choice: must be one of auto, none, required"),
    ([LSOF], {"type": "function", "function": {"name": "kill"}}, "tool_choice: must be one of"),
    ([LSOF], {"type": "function", "function": "lsof"}, "tool_choice: must be one of"),
    # each of these was sent on, and refused by every model of the chain
    ([{"type": "function", "function": {"name": "get weather!"}}], None,
     "tools[0].function.name: required, 1-64 letters, digits, _ or -"),
    ([{"type": "function", "function": {"name": "f", "parameters": "abc"}}], None,
     "tools[0].function.parameters: must be a JSON schema object"),
    ([LSOF], {"function": {"name": "lsof"}}, "tool_choice: must be one of"),
])
def test_bad_tools_are_named(tools, choice, named):
    with pytest.raises(BadRequest, match=re.escape(named)) as err:
        check_tool_choice(choice, check_tools(tools))
    assert "\n" not in str(err.value)


def test_tool_specs_count_toward_the_prompt():
    from graph.tokens import count_tools

    assert count_tools(None) == 0 and count_tools([LSOF]) > 10


def test_user_part_types_are_the_ones_litellm_accepts():
    from litellm.types.llms.openai import ValidUserMessageContentTypes

    from nodes.conversation import USER_PART_TYPES

    assert sorted(USER_PART_TYPES) == sorted(ValidUserMessageContentTypes)


def test_tool_calls_without_content_and_langchain_data_blocks_pass():
    """Both were refused: OpenAI lets an assistant's tool calls omit `content`, and
    langchain-litellm converts LangChain's standard data blocks for LiteLLM."""
    history = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                            {"type": "image", "url": "https://x/y.png"}]},
               {"role": "assistant", "tool_calls": [CALL]},
               {"role": "tool", "content": "api 4242", "tool_call_id": "call_1"}]
    sent = build_messages(None, None, history)
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert sent[0] == history[0] and sent[2] == history[2]


@pytest.mark.parametrize("turn", [
    {"role": "tool", "content": "", "tool_call_id": "call_1"},  # a command that printed nothing
    ToolMessage("", tool_call_id="call_1"),
    {"role": "assistant", "content": ""},  # an empty answer, sent back by an agent loop
    AIMessage(""),
])
def test_an_empty_tool_result_or_answer_passes(turn):
    sent = build_messages("go on", None, [{"role": "user", "content": "free port 8080"}, turn])
    assert sent[1]["content"] == "" and sent[2] == {"role": "user", "content": "go on"}


def test_well_formed_tool_use_in_either_format_still_passes():
    langchain_call = {"name": "lsof", "args": {"port": 8080}, "id": "call_1"}
    for call in (CALL, langchain_call):
        history = [{"role": "user", "content": "port 8080 is busy", "name": "ops"},
                   {"role": "assistant", "content": None, "tool_calls": [call]},
                   {"role": "tool", "content": "api 4242", "tool_call_id": "call_1"},
                   {"role": "user", "content": [{"type": "text", "text": "kill it"}, "now"]}]
        assert build_messages(None, None, history) == history
