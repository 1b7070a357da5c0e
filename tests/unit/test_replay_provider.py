"""The `replay/` LiteLLM provider, end to end through litellm and ChatLiteLLM, offline."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import socket
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import litellm
import pytest
from langchain_litellm import ChatLiteLLM

from graph import tokens
from graph.registry import load_registry
from graph.replay.convert import assumed_output_tokens
from graph.replay.provider import (
    KEY_LATENCY,
    KEY_RECORD,
    KEY_SCORE,
    KEY_TASK,
    PROVIDER,
    Fault,
    Outage,
    ReplayPromptNotFoundError,
    install,
    registry_latencies,
    uninstall,
)
from graph.replay.records import Record, ReplayDataset, fleet_dir

RB_PROMPT = "Write a function to add two numbers."
RECORDS = [
    Record(
        id="mbpp/1",
        prompt=RB_PROMPT,
        task="mbpp",
        scores={"big/model": 1.0, "small": 0.0},
        cost_usd={"big/model": 0.0123, "small": 0.0004},
        responses={"big/model": "def add(a, b):\n    return a + b", "small": "add = sum"},
    ),
    Record(
        id="arc/2",
        prompt="Pick A or B.",
        task="arc-challenge",
        scores={"small": 1.0},
        cost_usd={"small": 0.0001, "big/model": 0.002},
    ),
] + [
    Record(
        id=f"bulk/{i}",
        prompt=f"bulk prompt {i}",
        task="mmlu",
        scores={"small": 0.8},
        cost_usd={"small": 0.00001 * i},
    )
    for i in range(300)
]
DATA = ReplayDataset(RECORDS)
LATENCY = {"big/model": 2000.0, "small": 400.0}


def ask(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the replay provider must not open a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    uninstall()


def test_recorded_response_usage_cost_and_score_through_litellm() -> None:
    install(DATA, LATENCY)
    messages = ask(RB_PROMPT, system="You write Python.")
    resp = litellm.completion(model="replay/big/model", messages=messages)
    text = "def add(a, b):\n    return a + b"
    assert resp.choices[0].message.content == text
    assert resp.model == "replay/big/model"
    assert resp.usage.prompt_tokens == tokens.count_messages(messages)
    assert resp.usage.completion_tokens == tokens.count_text(text)
    assert resp._hidden_params["response_cost"] == 0.0123
    assert resp._hidden_params[KEY_SCORE] == 1.0
    assert resp._hidden_params[KEY_RECORD] == "mbpp/1"
    assert resp._hidden_params[KEY_TASK] == "mbpp"
    assert resp._hidden_params[KEY_LATENCY] > 0


def test_recorded_cost_reaches_chatlitellm_response_metadata() -> None:
    install(DATA, LATENCY)
    msg = ChatLiteLLM(model="replay/small").invoke([("system", "Be brief."), ("user", RB_PROMPT)])
    assert msg.content == "add = sum"
    assert msg.response_metadata["response_cost"] == 0.0004
    fields = msg.response_metadata["provider_specific_fields"]
    assert fields[KEY_SCORE] == 0.0 and fields[KEY_RECORD] == "mbpp/1"
    assert fields[KEY_LATENCY] > 0
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["output_tokens"] == tokens.count_text("add = sum")


async def test_async_paths_report_the_same() -> None:
    install(DATA, LATENCY)
    resp = await litellm.acompletion(model="replay/small", messages=ask("Pick A or B."))
    assert resp._hidden_params["response_cost"] == 0.0001
    msg = await ChatLiteLLM(model="replay/big/model").ainvoke("Pick A or B.")
    assert msg.response_metadata["response_cost"] == 0.002
    assert msg.response_metadata["provider_specific_fields"][KEY_SCORE] is None  # ungraded
    assert "ungraded" in str(msg.content)


def test_recorded_cost_wins_over_a_price_litellm_knows() -> None:
    install(DATA, LATENCY)
    litellm.register_model(
        {
            "replay/small": {
                "input_cost_per_token": 1.0,
                "output_cost_per_token": 1.0,
                "litellm_provider": PROVIDER,
                "mode": "chat",
            }
        }
    )
    try:
        msg = ChatLiteLLM(model="replay/small").invoke(RB_PROMPT)
        assert msg.response_metadata["response_cost"] == 0.0004
    finally:
        litellm.model_cost.pop("replay/small", None)


def test_llmrouter_stand_in_text_and_cost_consistent_with_usage() -> None:
    data = ReplayDataset.load(fleet_dir("llmrouter") / "test.jsonl.gz")
    registry = load_registry(fleet_dir("llmrouter") / "model_registry.yaml")
    install(data, registry_latencies(registry))
    entry = registry.models["llama-3.1-nemotron-51b-instruct"]
    for record in (data.records[0], data.records[250], data.records[-1]):
        resp = litellm.completion(model=entry.model, messages=ask(record.prompt))
        score = record.scores["llama-3.1-nemotron-51b-instruct"]
        assert resp.choices[0].message.content == (
            f"[replay] llama-3.1-nemotron-51b-instruct on {record.task} {record.id}: "
            f"score {score:.2f}"
        )
        assert resp.usage.completion_tokens == assumed_output_tokens(record.task)
        cost = resp._hidden_params["response_cost"]
        assert cost == record.cost_usd["llama-3.1-nemotron-51b-instruct"]
        assert cost == pytest.approx(
            entry.cost_usd(resp.usage.prompt_tokens, resp.usage.completion_tokens)
        )


def test_unknown_prompt_names_model_and_prompt_start() -> None:
    install(DATA, LATENCY)
    prompt = "0123456789" * 6 + "THIS PART IS CUT"
    with pytest.raises(ReplayPromptNotFoundError) as err:
        litellm.completion(model="replay/small", messages=ask(prompt))
    assert isinstance(err.value, litellm.BadRequestError)
    assert "'small'" in str(err.value) and "0123456789" * 6 in str(err.value)
    assert "THIS PART" not in str(err.value)


@pytest.mark.parametrize("model", ["replay/unknown-model", "replay/big/model"])
def test_model_without_a_result_is_not_found(model: str) -> None:
    install(DATA, LATENCY)
    with pytest.raises(litellm.NotFoundError):
        litellm.completion(model=model, messages=ask("bulk prompt 1"))


def test_streaming_is_refused_clearly() -> None:
    install(DATA, LATENCY)
    with pytest.raises(litellm.BadRequestError, match="streaming is not supported"):
        litellm.completion(model="replay/small", messages=ask(RB_PROMPT), stream=True)


# ---------------------------------------------------------------- latency


def latency(model: str, prompt: str) -> float:
    resp = litellm.completion(model=f"replay/{model}", messages=ask(prompt))
    return float(resp._hidden_params[KEY_LATENCY])


def test_latency_is_seeded_reproducible_and_centred_on_the_mean() -> None:
    install(DATA, LATENCY, seed=7)
    first = [latency("small", f"bulk prompt {i}") for i in range(300)]
    assert latency("small", "bulk prompt 3") == first[3]  # same call, same draw
    install(DATA, LATENCY, seed=7)
    assert [latency("small", f"bulk prompt {i}") for i in range(300)] == first
    install(DATA, LATENCY, seed=8)
    assert [latency("small", f"bulk prompt {i}") for i in range(300)] != first
    assert statistics.mean(first) == pytest.approx(400, rel=0.05)
    spread = statistics.stdev(first) / statistics.mean(first)
    assert 0.18 < spread < 0.32  # lognormal sigma 0.25


def test_latency_is_reported_not_slept_unless_asked() -> None:
    install(DATA, LATENCY)
    start = time.monotonic()
    total = sum(latency("big/model", RB_PROMPT) for _ in range(5))
    assert total > 5000 and time.monotonic() - start < 2.0
    install(DATA, LATENCY, sleep=True, time_scale=0.0001)
    start = time.monotonic()
    reported = latency("big/model", RB_PROMPT)
    assert time.monotonic() - start >= reported / 1000 * 0.0001


def test_recorded_latency_is_reported_as_is() -> None:
    rec = Record(
        id="x", prompt="p", task="t", scores={"m": 1}, cost_usd={"m": 0.1}, latency_ms={"m": 1234.5}
    )
    install(ReplayDataset([rec]), {"m": 50.0})
    assert latency("m", "p") == 1234.5


# ---------------------------------------------------------------- faults

ERRORS = {
    "rate_limit": litellm.RateLimitError,
    "timeout": litellm.Timeout,
    "connection": litellm.APIConnectionError,
    "server_error": litellm.InternalServerError,
    "context_window": litellm.ContextWindowExceededError,
    "content_policy": litellm.ContentPolicyViolationError,
    "auth": litellm.AuthenticationError,
    "not_found": litellm.NotFoundError,
    "bad_request": litellm.BadRequestError,
}


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_each_fault_class_raises_its_litellm_exception(kind: Any) -> None:
    install(DATA, LATENCY, faults={"small": Fault(error_rate=1.0, error=kind)})
    with pytest.raises(ERRORS[kind]) as err:
        litellm.completion(model="replay/small", messages=ask(RB_PROMPT))
    assert err.value.llm_provider == PROVIDER  # type: ignore[attr-defined]
    with pytest.raises(ERRORS[kind]):
        ChatLiteLLM(model="replay/small").invoke(RB_PROMPT)
    assert litellm.completion(model="replay/big/model", messages=ask(RB_PROMPT))  # others fine


def test_server_error_is_5xx_and_rate_limit_carries_retry_after() -> None:
    install(DATA, LATENCY, faults={"small": Fault(error_rate=1.0, error="server_error")})
    with pytest.raises(litellm.InternalServerError) as err:
        litellm.completion(model="replay/small", messages=ask(RB_PROMPT))
    assert 500 <= err.value.status_code < 600
    install(
        DATA, LATENCY, faults={"small": Fault(error_rate=1, error="rate_limit", retry_after_s=7)}
    )
    with pytest.raises(litellm.RateLimitError) as rl:
        litellm.completion(model="replay/small", messages=ask(RB_PROMPT))
    assert rl.value.status_code == 429
    assert rl.value.response.headers["retry-after"] == "7"
    assert litellm.utils._get_retry_after_from_exception_header(rl.value.response.headers) == 7


def outcomes(model: str, prompts: list[str]) -> list[str]:
    out = []
    for prompt in prompts:
        try:
            litellm.completion(model=f"replay/{model}", messages=ask(prompt))
            out.append("ok")
        except Exception as exc:  # noqa: BLE001 - the class name is the outcome
            out.append(type(exc).__name__)
    return out


def test_error_rate_is_seeded_and_about_right() -> None:
    prompts = [f"bulk prompt {i}" for i in range(200)]
    install(DATA, LATENCY, faults={"small": Fault(error_rate=0.3)}, seed=3)
    first = outcomes("small", prompts)
    assert 0.2 < first.count("InternalServerError") / len(first) < 0.4
    install(DATA, LATENCY, faults={"small": Fault(error_rate=0.3)}, seed=3)
    assert outcomes("small", prompts) == first
    retried = outcomes("small", prompts)  # second attempts draw afresh
    assert retried != first and "ok" in retried


def test_outage_window_by_call_index() -> None:
    outage = Outage(start=2, end=4, unit="calls", error="connection")
    provider = install(DATA, LATENCY, faults={"small": Fault(outages=(outage,))})
    results = outcomes("small", [f"bulk prompt {i}" for i in range(6)])
    assert results == ["ok", "ok", "APIConnectionError", "APIConnectionError", "ok", "ok"]
    assert provider.calls("small") == 6
    provider.reset()
    assert outcomes("small", ["bulk prompt 0"] * 3)[2] == "APIConnectionError"


def test_outage_window_by_seconds_since_install() -> None:
    now = Outage(start=0, end=3600, unit="seconds", error="timeout")
    later = Outage(start=3600, end=7200, unit="seconds", error="timeout")
    install(DATA, LATENCY, faults={"small": Fault(outages=(now,))})
    with pytest.raises(litellm.Timeout):
        litellm.completion(model="replay/small", messages=ask(RB_PROMPT))
    install(DATA, LATENCY, faults={"small": Fault(outages=(later,))})
    assert litellm.completion(model="replay/small", messages=ask(RB_PROMPT))


def test_faults_change_at_run_time() -> None:
    provider = install(DATA, LATENCY, faults={"small": Fault(error_rate=1.0, error="auth")})
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(model="replay/small", messages=ask(RB_PROMPT))
    provider.set_faults(None)
    assert litellm.completion(model="replay/small", messages=ask(RB_PROMPT))
    provider.set_fault("big/model", Fault(error_rate=1.0, error="timeout"))
    with pytest.raises(litellm.Timeout):
        litellm.completion(model="replay/big/model", messages=ask(RB_PROMPT))
    provider.set_fault("big/model", None)
    assert litellm.completion(model="replay/big/model", messages=ask(RB_PROMPT))


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        Fault(error_rate=1.5)
    with pytest.raises(ValueError, match="unknown error class"):
        Fault(error="meltdown")  # type: ignore[arg-type]


# ---------------------------------------------------------------- install, concurrency


def test_install_is_idempotent_and_replaces_the_handler() -> None:
    install(DATA, LATENCY)
    other = Record(
        id="o",
        prompt=RB_PROMPT,
        task="t",
        scores={"small": 1.0},
        cost_usd={"small": 9.0},
        responses={"small": "second"},
    )
    provider = install(ReplayDataset([other]), LATENCY)
    entries = [e for e in litellm.custom_provider_map if e["provider"] == PROVIDER]
    assert len(entries) == 1 and entries[0]["custom_handler"] is provider
    resp = litellm.completion(model="replay/small", messages=ask(RB_PROMPT))
    assert resp.choices[0].message.content == "second"
    uninstall()
    assert all(e["provider"] != PROVIDER for e in litellm.custom_provider_map)


def test_concurrent_calls_from_threads_and_asyncio() -> None:
    provider = install(DATA, LATENCY, faults={"small": Fault(error_rate=0.2)}, seed=1)
    prompts = [f"bulk prompt {i}" for i in range(200)]
    expected = outcomes("small", prompts)
    provider.reset()
    with ThreadPoolExecutor(max_workers=16) as pool:
        threaded = list(pool.map(lambda p: outcomes("small", [p])[0], prompts))
    assert threaded == expected  # per-(model, prompt) seeding: order does not matter
    assert provider.calls("small") == 200

    async def many() -> list[float]:
        calls = [
            litellm.acompletion(model="replay/big/model", messages=ask(RB_PROMPT))
            for _ in range(40)
        ]
        return [r._hidden_params["response_cost"] for r in await asyncio.gather(*calls)]

    assert asyncio.run(many()) == [0.0123] * 40
    assert provider.calls("big/model") == 40
