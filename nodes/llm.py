"""One chat call through langchain-litellm, and what it cost.

`litellm` is imported here and only here (and lazily), so paths that never call a model
(the dry-run `select`, `--help`) never pay its import.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graph import prices
from graph.registry import ModelEntry

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass(frozen=True, slots=True)
class Reply:
    """What a successful call returned."""

    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: int
    tool_calls: list[dict[str, Any]] | None = None
    """The tool calls asked for, in the OpenAI format the request's tools came in."""


@functools.cache
def warm_up() -> None:
    """Pay litellm's one-off costs now, not inside the first request's deadline.

    The import takes seconds, and the first call builds clients and loads more lazily
    (about 0.6 s); a mocked call and a refused one (`_refused_call`) do the latter without
    touching the network.

    LiteLLM counts a streamed reply's tokens itself when the provider sends no usage
    (mocks, some local servers), and for Llama, DeepSeek, Claude and Cohere names it
    fetches a tokenizer from the Hugging Face hub to do it: a download inside a request,
    and offline 20-30 s of retries per stream (measured, `stream_mode="messages"`). Its
    bundled tiktoken counts instead, as `graph.tokens` does, unless the process chose
    otherwise (`litellm.disable_hf_tokenizer_download = False` before the graph is built).
    """
    import langchain_litellm  # noqa: F401
    import litellm

    litellm.suppress_debug_info = True  # its "Give Feedback" banner would corrupt stdout
    if litellm.disable_hf_tokenizer_download is None:
        litellm.disable_hf_tokenizer_download = True
    litellm.completion(model="openai/gpt-4o-mini", mock_response="warm",
                       messages=[{"role": "user", "content": "warm up"}])
    _refused_call(litellm)
    from graph.tokens import count_text

    count_text("warm up")  # loads the tokenizer (about 0.4 s)


def _refused_call(litellm: Any) -> None:
    """One real call to a local port that refuses it: the first real call of a process
    loads what a mocked one skips (LiteLLM's tokenizer, the HTTP client, its error
    mapping, which imports FastAPI), 0.3-0.45 s that overran the first request's deadline
    by as much (measured on a local model whose server never answered). No network: the
    port is ours, bound and not listening. The async path needs nothing more (measured).
    """
    from litellm.main import encoding  # noqa: F401  # loaded lazily by real calls only

    if _proxied("127.0.0.1"):  # the call would go to the proxy: not ours to send there
        return
    with socket.socket() as held:
        try:
            held.bind(("127.0.0.1", 0))
            litellm.completion(
                model="openai/warm-up", api_key="warm-up", max_retries=0, timeout=2,
                api_base=f"http://127.0.0.1:{held.getsockname()[1]}/v1",
                messages=[{"role": "user", "content": "warm up"}])
        except Exception:  # noqa: BLE001, S110  # refused, as meant (or no loopback: cold)
            pass


def _proxied(host: str) -> bool:
    """Whether an HTTP client that reads the environment (httpx does) would send a request
    for `host` through a proxy."""
    import urllib.request

    return "http" in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


_registered: dict[str, dict[str, Any]] = {}


def register_prices(models: Iterable[ModelEntry]) -> int:
    """Give LiteLLM the registry's prices and window for models its bundled map lacks.

    For a model outside its map LiteLLM looks the model up again, and fails, several times
    per call (supported parameters, cost, a zero-cost diagnostic), through regex
    generalisation rules: about 1 ms of Python a call, measured. Registered, every lookup
    hits LiteLLM's cache, and the cost LiteLLM reports to its callbacks and to LangSmith is
    the registry's. This is what LiteLLM's Router does for a deployment priced in its config.
    Models in the map keep LiteLLM's entry (never overwritten); `provider`-priced ones
    (replays) report their own cost. Cache reads and writes are priced as input, as
    `ModelEntry.cost_usd` bills them. Returns how many entries were (re)registered.
    """
    import litellm

    rows: dict[str, dict[str, Any]] = {}
    for model in models:
        if model.cost_source != "registry" or prices.lookup(model.model) is not None:
            continue
        per_token = model.input_cost_per_1m / 1_000_000
        row = {"input_cost_per_token": per_token,
               "output_cost_per_token": model.output_cost_per_1m / 1_000_000,
               "cache_read_input_token_cost": per_token,
               "cache_creation_input_token_cost": per_token,
               "max_input_tokens": model.context_window,
               "litellm_provider": model.model.split("/", 1)[0], "mode": "chat"}
        if _registered.get(model.model) != row:
            rows[model.model] = row
    if rows:
        litellm.register_model(rows)
        _registered.update(rows)
    return len(rows)


@functools.cache
def _chat_class() -> type:
    """ChatLiteLLM making one attempt, without LangChain's tenacity wrapper.

    The graph retries (error-aware, across models). LangChain's retry at `max_retries=1`
    runs once but builds its tenacity decorator on every call (about 0.3 ms); langchain-
    litellm's request and response handling is unchanged. Defined on first use because
    importing langchain_litellm imports litellm.
    """
    from langchain_litellm import ChatLiteLLM

    class OneTryChatLiteLLM(ChatLiteLLM):
        def completion_with_retry(self, run_manager: Any = None, **kwargs: Any) -> Any:
            return self.client.completion(**kwargs)

        async def acompletion_with_retry(self, run_manager: Any = None, **kwargs: Any) -> Any:
            return await self.client.acompletion(**kwargs)

    return OneTryChatLiteLLM


def chat_model(model_string: str, api_base: str | None, api_key: str | None = None) -> Any:
    """A ChatLiteLLM per model, reused: construction costs more than the call overhead.

    `api_key` only for a registry entry that names its key's variable (`api_key_env`);
    otherwise LiteLLM reads the provider's own. The field is kept out of the model's repr,
    and so out of LangChain's traces.
    """
    return _cached_chat(model_string, api_base, api_key)  # one cache key however called


@functools.cache
def _cached_chat(model_string: str, api_base: str | None, api_key: str | None) -> Any:
    warm_up()
    return _chat_class()(model=model_string, api_base=api_base, api_key=api_key,
                         max_retries=1)


def chat_for(model: ModelEntry) -> Any:
    """The chat model a call to this registry entry goes through (with its key, if named)."""
    key = os.environ.get(model.api_key_env) if model.api_key_env else None
    return chat_model(model.model, model.api_base, key or None)


def _kwargs(max_tokens: int, temperature: float, timeout_s: float, mock_response: Any,
            tools: list[dict[str, Any]] | None, tool_choice: Any) -> dict[str, Any]:
    # max_retries 0: the graph's tries are the only ones. Otherwise the OpenAI SDK under
    # LiteLLM retried each 429, 5xx and timeout twice more on its own (3 requests a try, a
    # deadline overrun by two timeouts); LiteLLM's Router passes 0 for the same reason.
    kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature,
                              "timeout": timeout_s, "max_retries": 0}
    if tools:
        kwargs["tools"] = tools
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
    if isinstance(mock_response, Mapping):  # a reply that calls tools (LiteLLM's own mock)
        kwargs["mock_response"] = mock_response.get("content") or ""
        kwargs["mock_tool_calls"] = list(mock_response.get("tool_calls") or ())
    elif mock_response is not None:
        kwargs["mock_response"] = mock_response
    return kwargs


def listening() -> bool:
    """Whether anyone observes LangChain runs here: callback handlers, or LangSmith tracing.

    Only then is a call made through `ChatLiteLLM.invoke`. Otherwise its `_generate` is
    called directly: the same langchain-litellm request and response handling without
    LangChain's per-call callback and tracing set-up, which nobody would receive and which
    cost more than LiteLLM Router's whole overhead (about 1.3 ms a call, measured).
    """
    from langchain_core.runnables.config import var_child_runnable_config
    from langsmith.utils import tracing_is_enabled

    callbacks = (var_child_runnable_config.get() or {}).get("callbacks")
    handlers = getattr(callbacks, "handlers", callbacks)
    return bool(handlers) or tracing_is_enabled()


def call(
    model: ModelEntry,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    temperature: float,
    timeout_s: float,
    mock_response: Any = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
) -> Reply:
    """Call the model once; raises LiteLLM's exception types on failure.

    `mock_response` is LiteLLM's (text, an exception, "litellm.RateLimitError"), or
    `{"content": ..., "tool_calls": [OpenAI tool calls]}` for a reply that calls tools.
    """
    kwargs = _kwargs(max_tokens, temperature, timeout_s, mock_response, tools, tool_choice)
    chat = chat_for(model)
    started = time.perf_counter()
    if listening():
        message = chat.invoke(messages, **kwargs)
    else:
        message = chat._generate(_as_messages(messages), **kwargs).generations[0].message
    return _reply(model, message, started)


async def acall(
    model: ModelEntry,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    temperature: float,
    timeout_s: float,
    mock_response: Any = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
) -> Reply:
    """The asyncio twin of `call`."""
    kwargs = _kwargs(max_tokens, temperature, timeout_s, mock_response, tools, tool_choice)
    chat = chat_for(model)
    started = time.perf_counter()
    if listening():
        message = await chat.ainvoke(messages, **kwargs)
    else:
        result = await chat._agenerate(_as_messages(messages), **kwargs)
        message = result.generations[0].message
    return _reply(model, message, started)


def _as_messages(messages: list[dict[str, str]]) -> list[Any]:
    from langchain_core.messages import convert_to_messages

    return convert_to_messages(messages)


def _reply(model: ModelEntry, message: Any, started: float) -> Reply:
    usage = message.usage_metadata or {}
    input_tokens = int(usage.get("input_tokens", 0))
    output_tokens = int(usage.get("output_tokens", 0))
    meta = message.response_metadata or {}
    reported = meta.get("response_cost")
    if model.cost_source == "provider" and reported is not None:
        cost = float(reported)
    else:
        cost = model.cost_usd(input_tokens, output_tokens)
    latency = (time.perf_counter() - started) * 1000
    text = message.content if isinstance(message.content, str) else str(message.content)
    calls = None
    if getattr(message, "tool_calls", None):
        from langchain_core.messages import convert_to_openai_messages

        calls = convert_to_openai_messages(message).get("tool_calls")
    return Reply(text, input_tokens, output_tokens, round(cost, 8), int(latency), calls)
