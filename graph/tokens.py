"""Prompt token counts with the tokenizer LiteLLM bundles, without importing litellm.

LiteLLM's `token_counter` loads tiktoken from files it ships (offline) for OpenAI models,
but for most other model names it fetches a tokenizer from the Hugging Face hub, which
this router must never do, and `import litellm` costs seconds on the dry-run path. So the
count is taken once per request with the same bundled `o200k_base` encoding and the same
per-message framing as `litellm.token_counter(model="gpt-4o")` (a test holds the two
equal). For other vendors' models it is an estimate within a few percent.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMING = 3


def _use_litellm_bundled_encodings() -> None:
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations)))
        os.environ.setdefault(
            "TIKTOKEN_CACHE_DIR", str(bundled / "litellm_core_utils" / "tokenizers")
        )


@functools.cache
def _encoding() -> Any:
    _use_litellm_bundled_encodings()
    import tiktoken

    return tiktoken.get_encoding("o200k_base")


def count_text(text: str) -> int:
    """Tokens in a plain string."""
    return len(_encoding().encode(text, disallowed_special=()))


def count_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    """Tokens a chat request's messages take, framing included.

    Text parts of a list `content` count as text, and `tool_calls` as their JSON; images
    and other parts are not counted (an estimate, like the other vendors' counts).
    """
    total = _REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += count_text(value)
            elif key == "content" and isinstance(value, list):
                total += sum(count_text(part["text"]) for part in value
                             if isinstance(part, Mapping) and isinstance(part.get("text"), str))
            elif key == "tool_calls" and value:
                total += count_text(json.dumps(value, default=str))
            if key == "name":
                total += 1
    return total


def count_tools(tools: Iterable[Mapping[str, Any]] | None) -> int:
    """Tokens the tool specs take (their JSON: providers render them into the prompt)."""
    return count_text(json.dumps(list(tools), default=str)) if tools else 0
