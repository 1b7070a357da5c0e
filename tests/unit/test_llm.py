"""The model call layer: LiteLLM learns the registry's prices; one attempt, no tenacity."""

from __future__ import annotations

import litellm
import pytest

from graph.registry import ModelEntry
from nodes import llm


def entry(model: str, **extra) -> ModelEntry:
    return ModelEntry.model_validate({
        "id": model.replace("/", "-"), "provider": "acme", "model": model, "group": "optimize",
        "capabilities": ["x"], "domains": ["optimize"], "avg_latency_ms": 100,
        "context_window": 32_000, "input_cost_per_1m": 0.4, "output_cost_per_1m": 1.6, **extra,
    })


def test_models_outside_litellms_map_get_the_registry_prices():
    unknown = entry("hosted_vllm/acme/unpriced-coder-7b")
    known = entry("openai/gpt-4o-mini", input_cost_per_1m=99.0)
    replayed = entry("hosted_vllm/acme/replayed-7b", cost_source="provider")
    assert llm.register_prices([unknown, known, replayed]) == 1
    assert llm.register_prices([unknown]) == 0  # already there: nothing to do

    reply = litellm.completion(model=unknown.model, mock_response="ok",
                               messages=[{"role": "user", "content": "hi"}])
    usage = reply.usage
    assert reply._hidden_params["response_cost"] == pytest.approx(
        unknown.cost_usd(usage.prompt_tokens, usage.completion_tokens))
    assert litellm.get_model_info(unknown.model)["max_input_tokens"] == 32_000
    assert litellm.model_cost["gpt-4o-mini"]["input_cost_per_token"] != 99.0 / 1e6  # untouched
    assert replayed.model not in litellm.model_cost


def test_changed_prices_are_registered_again():
    first = entry("hosted_vllm/acme/repriced-7b")
    assert llm.register_prices([first]) == 1
    assert llm.register_prices([entry("hosted_vllm/acme/repriced-7b", output_cost_per_1m=3.2)]) == 1
    assert litellm.model_cost[first.model]["output_cost_per_token"] == pytest.approx(3.2e-6)


def test_the_chat_model_makes_one_attempt_without_langchains_retry(monkeypatch):
    import langchain_litellm.chat_models.litellm as lc

    def no_tenacity(*args, **kwargs):
        raise AssertionError("LangChain's retry decorator was built")

    monkeypatch.setattr(lc, "_create_retry_decorator", no_tenacity)
    model = entry("openai/gpt-4o-mini")
    reply = llm.call(model, [{"role": "user", "content": "hi"}], max_tokens=10,
                     temperature=0.0, timeout_s=5, mock_response="ok")
    assert reply.text == "ok" and reply.output_tokens > 0
    assert isinstance(llm.chat_model(model.model, None), lc.ChatLiteLLM)

    calls = []
    monkeypatch.setattr(litellm, "completion",
                        lambda **kw: calls.append(kw) or (_ for _ in ()).throw(
                            litellm.Timeout("slow", model="m", llm_provider="openai")))
    with pytest.raises(litellm.Timeout):
        llm.call(model, [{"role": "user", "content": "hi"}], max_tokens=10,
                 temperature=0.0, timeout_s=5)
    assert len(calls) == 1  # the graph decides about retries, not LangChain


async def test_the_async_call_makes_one_attempt_too(monkeypatch):
    import langchain_litellm.chat_models.litellm as lc

    monkeypatch.setattr(lc, "_create_retry_decorator",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("tenacity")))
    reply = await llm.acall(entry("openai/gpt-4o-mini"), [{"role": "user", "content": "hi"}],
                            max_tokens=10, temperature=0.0, timeout_s=5, mock_response="ok")
    assert reply.text == "ok"


def test_a_key_variable_the_registry_names_is_sent_with_the_call(monkeypatch):
    """api_key_env was checked (the model counted as eligible) but never sent: LiteLLM
    looked for the provider's own variable and every call failed."""
    monkeypatch.setenv("ACME_GATEWAY_KEY", "acme-key-0123456789")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    calls = []
    real = litellm.completion
    monkeypatch.setattr(litellm, "completion", lambda **kw: calls.append(kw) or real(**kw))
    named = entry("openai/gpt-4o-mini", api_key_env="ACME_GATEWAY_KEY")
    plain = entry("openai/gpt-4o-mini")
    for model in (named, plain):
        llm.call(model, [{"role": "user", "content": "hi"}], max_tokens=10, temperature=0.0,
                 timeout_s=5, mock_response="ok")
    assert calls[0]["api_key"] == "acme-key-0123456789"
    assert calls[1].get("api_key") is None  # LiteLLM reads the provider's own variable
    assert "acme-key" not in repr(llm.chat_model(named.model, None, "acme-key-0123456789"))
    # one instance per model however it is asked for (the bench sets its delay on it)
    assert llm.chat_for(plain) is llm.chat_model(plain.model, None)


def test_after_warm_up_a_first_real_call_loads_nothing_heavy():
    """The first real call of a process loaded LiteLLM's tokenizer, the HTTP client and
    FastAPI (its error mapping imports it) inside the request: 0.3-0.45 s past the
    deadline. A call to a port that refuses it shows what is still loaded lazily."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import socket, sys
        from graph.registry import ModelEntry
        from nodes import llm
        llm.warm_up()
        before = set(sys.modules)
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            model = ModelEntry.model_validate({
                "id": "m", "provider": "acme", "model": "hosted_vllm/acme/coder-7b",
                "group": "optimize", "capabilities": ["x"], "domains": ["optimize"],
                "avg_latency_ms": 100, "context_window": 32000, "input_cost_per_1m": 0.4,
                "output_cost_per_1m": 1.6,
                "api_base": f"http://127.0.0.1:{held.getsockname()[1]}/v1"})
            try:
                llm.call(model, [{"role": "user", "content": "hi"}], max_tokens=5,
                         temperature=0.0, timeout_s=2)
            except Exception as exc:
                print("raised", type(exc).__name__, file=sys.stderr)
        print("\\n".join(sorted(set(sys.modules) - before)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "raised" in done.stderr  # the call was made, and refused
    loaded = done.stdout.split()
    heavy = [m for m in loaded if m.split(".")[0] in ("fastapi", "h2", "tiktoken")
             or m == "litellm.litellm_core_utils.default_encoding"]
    assert heavy == [], heavy
    assert len(loaded) < 10, loaded


def test_the_warm_up_call_is_not_sent_through_a_proxy(monkeypatch):
    """Its refused local call went to an HTTP_PROXY (2.5 s against one that hung)."""
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not llm._proxied("127.0.0.1")
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    assert llm._proxied("127.0.0.1")
    calls = []
    monkeypatch.setattr(litellm, "completion", lambda **kw: calls.append(kw))
    llm._refused_call(litellm)
    assert calls == []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert not llm._proxied("127.0.0.1")
