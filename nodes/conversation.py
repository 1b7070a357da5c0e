"""What the caller asks the model: a prompt, or a conversation so far and a prompt.

An agent keeps its history (LangGraph's `messages`); the router sends it whole, in the chat
format LiteLLM takes, so the model answers in context. Pure, and free of LangGraph and
LiteLLM imports: the dry run (`select`, `/v1/select`) counts the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")


class BadRequest(ValueError):
    """The caller's request is unusable; the message names the field."""


def build_messages(prompt: str | None, system_prompt: str | None,
                   history: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Chat messages: the system prompt, the history, then the prompt as the last user turn.

    `history` items are chat dicts (`role`, `content`, and for tool use `tool_calls` or
    `tool_call_id`) or LangChain messages; each is checked, and a bad one is named by its
    index. Either a prompt or a non-empty history is required.
    """
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise BadRequest("prompt: must be a non-empty string (or absent, with messages)")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise BadRequest("system_prompt: must be a string or None")
    if history is not None and (isinstance(history, str | bytes | Mapping)
                                or not isinstance(history, Sequence)):
        raise BadRequest("messages: must be a list of chat messages")
    turns = [_checked(item, i) for i, item in enumerate(history or ())]
    if prompt is None and not turns:
        raise BadRequest("prompt: required, a non-empty string (or messages: a non-empty "
                         "list of chat messages)")
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    user = [{"role": "user", "content": prompt}] if prompt is not None else []
    return [*system, *turns, *user]


def _checked(item: Any, i: int) -> dict[str, Any]:
    """One history message as a chat dict; a LangChain message (or a `(role, text)` pair)
    goes through LangChain's own converter."""
    if not isinstance(item, Mapping):
        from langchain_core.messages import convert_to_openai_messages

        try:
            [item] = convert_to_openai_messages([item])
        except (ValueError, TypeError, NotImplementedError) as exc:
            reason = str(exc).splitlines()[0]  # LangChain adds a troubleshooting link
            raise BadRequest(f"messages[{i}]: not a chat message ({reason})") from None
    item = {**item, "content": item.get("content")}  # OpenAI lets tool calls omit it
    role, content = item.get("role"), item["content"]
    if role not in ROLES:
        raise BadRequest(f"messages[{i}].role: must be one of {', '.join(ROLES)}")
    if isinstance(content, str):
        # a tool may return nothing, and a model may answer "" (agent loops send both back);
        # LiteLLM fills empty turns in for providers that refuse them. A blank user or
        # system (or developer) turn is a caller's slip.
        if not content.strip() and role in ("user", "system", "developer"):
            raise BadRequest(f"messages[{i}].content: empty")
    elif isinstance(content, list):
        if not content:
            raise BadRequest(f"messages[{i}].content: an empty list of parts")
    elif not (content is None and item.get("tool_calls")):
        raise BadRequest(f"messages[{i}].content: must be a string or a list of content "
                         "parts (None only beside tool_calls)")
    _check_shape(item, i)
    return item


USER_PART_TYPES = ("text", "image_url", "input_audio", "audio_url", "document", "guarded_text",
                   "grounding_source", "query", "video_url", "file")
"""Content part types LiteLLM accepts in a user message (its `ValidUserMessageContentTypes`,
copied so the dry run need not import LiteLLM; a test keeps the two equal)."""


def _check_shape(item: Mapping[str, Any], i: int) -> None:
    """Refuse here what would fail at every model in the chain: a message the call path
    cannot convert would count as each model's failure and open the domain's circuits."""
    role, content = item["role"], item.get("content")
    if role == "tool" and not (isinstance(item.get("tool_call_id"), str)
                               and item["tool_call_id"].strip()):
        raise BadRequest(f"messages[{i}].tool_call_id: required on a tool message, the id of "
                         "the tool call it answers")
    if "name" in item and item["name"] is not None and not isinstance(item["name"], str):
        raise BadRequest(f"messages[{i}].name: must be a string")
    calls = item.get("tool_calls")
    if calls is not None and (role != "assistant" or not isinstance(calls, list)
                              or not all(isinstance(c, Mapping) for c in calls)):
        raise BadRequest(f"messages[{i}].tool_calls: a list of tool calls, on an assistant "
                         "message only")
    from langchain_core.messages import convert_to_messages, is_data_content_block
    from pydantic import ValidationError

    if role == "user" and isinstance(content, list):
        for j, part in enumerate(content):
            if (isinstance(part, Mapping) and part.get("type") not in USER_PART_TYPES
                    and not is_data_content_block(dict(part))):  # LangChain converts those
                raise BadRequest(f"messages[{i}].content[{j}].type: must be one of "
                                 f"{', '.join(USER_PART_TYPES)}, or a LangChain data block")
            if isinstance(part, Mapping) and part.get("type") == "text" \
                    and not isinstance(part.get("text"), str):
                raise BadRequest(f"messages[{i}].content[{j}].text: required on a text part, "
                                 "a string")

    try:  # the conversion each call makes, so what passes here converts there
        convert_to_messages([item])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest(f"messages[{i}].{where}: {first['msg']}") from None
    except KeyError as exc:
        raise BadRequest(f"messages[{i}]: missing {exc}") from None
    except (ValueError, TypeError, AttributeError, NotImplementedError) as exc:
        reason = str(exc).splitlines()[0]
        raise BadRequest(f"messages[{i}]: not a chat message LangChain can convert "
                         f"({type(exc).__name__}: {reason})") from None


def check_tools(tools: Sequence[Any] | None) -> list[dict[str, Any]] | None:
    """The tools the model may call, as OpenAI tool specs (what LiteLLM takes).

    Items are tool spec dicts (`{"type": "function", "function": {"name": ...}}`) or
    anything LangChain's `convert_to_openai_tool` takes (a LangChain tool, a pydantic
    model, a typed function). None or an empty list: no tools.
    """
    if tools is None:
        return None
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise BadRequest("tools: must be a list of tool specs")
    specs = [_tool(item, i) for i, item in enumerate(tools)]
    names = [spec["function"]["name"] for spec in specs]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise BadRequest(f"tools: duplicate name(s) {', '.join(dupes)}")
    return specs or None


def _tool(item: Any, i: int) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        from langchain_core.utils.function_calling import convert_to_openai_tool

        try:
            item = convert_to_openai_tool(item)
        except (ValueError, TypeError, NotImplementedError) as exc:
            reason = str(exc).splitlines()[0]
            raise BadRequest(f"tools[{i}]: not a tool ({reason})") from None
    function = item.get("function")
    if item.get("type") != "function" or not isinstance(function, Mapping):
        raise BadRequest(f'tools[{i}]: must be {{"type": "function", "function": {{...}}}}')
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise BadRequest(f"tools[{i}].function.name: required, 1-64 letters, digits, _ or - "
                         "(what providers accept)")
    if "parameters" in function and not isinstance(function["parameters"], Mapping | None):
        raise BadRequest(f"tools[{i}].function.parameters: must be a JSON schema object")
    return dict(item)


TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""OpenAI's rule for function names (Anthropic's is the same); a name outside it was
refused by every model of the chain."""


TOOL_CHOICES = ("auto", "none", "required")


def check_tool_choice(choice: Any, tools: list[dict[str, Any]] | None) -> Any:
    """`auto`, `none`, `required`, or `{"type": "function", "function": {"name": <a tool>}}`;
    only beside tools."""
    if choice is None:
        return None
    if not tools:
        raise BadRequest("tool_choice: given without tools")
    if choice in TOOL_CHOICES:
        return choice
    names = {spec["function"]["name"] for spec in tools}
    function = choice.get("function") if isinstance(choice, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str) or name not in names or choice.get("type") != "function":
        raise BadRequest(f"tool_choice: must be one of {', '.join(TOOL_CHOICES)} or "
                         f'{{"type": "function", "function": {{"name": <one of the tools>}}}}')
    return dict(choice)


def text_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """The conversation's text, one turn a line (a stable seed for the random policy)."""
    return "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in messages)
