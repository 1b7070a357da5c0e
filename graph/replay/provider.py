"""A LiteLLM provider (`replay/<model>`) that answers from recorded results, offline.

Calls go through LiteLLM's real call path (and ChatLiteLLM's), so the router under test
sees real response objects, real exception types and real cost fields. The answer to a
request is looked up by the text of its last user message; faults (error rates, outages)
are injected per model, seeded so that a run can be repeated exactly.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import litellm
from litellm import CustomLLM
from litellm.types.utils import Choices, Message, ModelResponse, Usage

from graph import tokens
from graph.registry import Registry
from graph.replay.convert import assumed_output_tokens
from graph.replay.records import Record, ReplayDataset

PROVIDER = "replay"
LATENCY_SIGMA = 0.25
"""Lognormal sigma of simulated latency: about +-25 % around the model's mean."""
DEFAULT_LATENCY_MS = 1000.0
"""Mean latency for a model `install` was given none for."""
KEY_SCORE, KEY_LATENCY = "replay_score", "replay_latency_ms"
KEY_RECORD, KEY_TASK = "replay_record_id", "replay_task"

ErrorClass = Literal[
    "rate_limit", "timeout", "connection", "server_error", "context_window",
    "content_policy", "auth", "not_found", "bad_request",
]  # fmt: skip


_ERRORS: dict[str, Callable[..., Exception]] = {
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


class ReplayPromptNotFoundError(litellm.BadRequestError):
    """The request's prompt is in no record: a harness mistake, not a model failure."""


@dataclass(frozen=True, kw_only=True)
class Outage:
    """A window in which a model fails: its own call index, or seconds since install."""

    start: float
    end: float
    """Exclusive."""
    unit: Literal["calls", "seconds"] = "calls"
    error: ErrorClass = "server_error"

    def covers(self, call_index: int, elapsed_s: float) -> bool:
        """Whether a call with this index (0-based) or this elapsed time falls inside."""
        at = call_index if self.unit == "calls" else elapsed_s
        return self.start <= at < self.end


@dataclass(frozen=True, kw_only=True)
class Fault:
    """Injected failures of one model: a seeded error rate plus outage windows."""

    error_rate: float = 0.0
    error: ErrorClass = "server_error"
    retry_after_s: int | None = None
    """Sent as a `retry-after` header on rate-limit errors."""
    outages: tuple[Outage, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate {self.error_rate} outside [0, 1]")
        for kind in (self.error, *(o.error for o in self.outages)):
            if kind not in _ERRORS:
                raise ValueError(f"unknown error class {kind!r}")


def make_error(kind: ErrorClass, model: str, retry_after_s: int | None = None) -> Exception:
    """The LiteLLM exception a real provider would raise (`model` as the caller named it)."""
    args: dict[str, Any] = {"message": f"replay fault injected: {kind}", "model": model}
    if kind == "rate_limit" and retry_after_s is not None:
        headers = {"retry-after": str(retry_after_s)}
        req = httpx.Request("POST", "https://replay.invalid/v1/chat/completions")
        args |= {"headers": headers, "response": httpx.Response(429, headers=headers, request=req)}
    return _ERRORS[kind](llm_provider=PROVIDER, **args)


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts
                return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
            return str(content or "")
    return ""


class ReplayProvider(CustomLLM):
    """Answers `replay/<model>` calls from a ReplayDataset; safe across threads and loops."""

    def __init__(
        self,
        dataset: ReplayDataset,
        latency_ms: Mapping[str, float],
        faults: Mapping[str, Fault] | None = None,
        seed: int = 0,
        sleep: bool = False,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.dataset, self.seed, self.sleep, self.time_scale = dataset, seed, sleep, time_scale
        self.latency_ms = dict(latency_ms)
        self._faults: dict[str, Fault] = dict(faults or {})
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._t0 = time.monotonic()

    def set_faults(self, faults: Mapping[str, Fault] | None) -> None:
        """Replace every model's faults (None or {} clears them); takes effect at once."""
        with self._lock:
            self._faults = dict(faults or {})

    def set_fault(self, model: str, fault: Fault | None) -> None:
        """Set or clear one model's faults."""
        with self._lock:
            faults = {m: f for m, f in self._faults.items() if m != model}
            self._faults = {**faults, model: fault} if fault else faults

    def reset(self) -> None:
        """Restart call counts and the outage clock, so a run can be repeated exactly."""
        with self._lock:
            self._calls.clear()
            self._attempts.clear()
            self._t0 = time.monotonic()

    def calls(self, model: str) -> int:
        """How many calls to this model matched a record since install or reset."""
        with self._lock:
            return self._calls[model]

    def simulated_latency_ms(self, model: str, record: Record) -> float:
        """Recorded latency if any, else lognormal around the model's mean (seeded)."""
        if model in record.latency_ms:
            return record.latency_ms[model]
        mean = self.latency_ms.get(model, DEFAULT_LATENCY_MS)
        rng = random.Random(f"{self.seed}:latency:{model}:{record.id}")
        return rng.lognormvariate(math.log(mean) - LATENCY_SIGMA**2 / 2, LATENCY_SIGMA)

    def _lookup(self, model: str, messages: Sequence[Mapping[str, Any]]) -> Record:
        prompt = _last_user_text(messages)
        record = self.dataset.by_prompt(prompt)
        name = f"{PROVIDER}/{model}"
        if record is None:
            msg = f"replay: no record for model {model!r} and prompt {prompt[:60]!r}"
            raise ReplayPromptNotFoundError(msg, name, PROVIDER)
        if model not in record.cost_usd:
            msg = f"replay: model {model!r} has no result for record {record.id!r}"
            raise litellm.NotFoundError(msg, name, PROVIDER)
        return record

    def _inject(self, model: str, record: Record) -> None:
        with self._lock:
            index = self._calls[model]
            self._calls[model] += 1
            attempt = self._attempts[(model, record.id)]
            self._attempts[(model, record.id)] += 1
            fault = self._faults.get(model)
            elapsed = time.monotonic() - self._t0
        if fault is None:
            return
        for outage in fault.outages:
            if outage.covers(index, elapsed):
                raise make_error(outage.error, f"{PROVIDER}/{model}", fault.retry_after_s)
        rng = random.Random(f"{self.seed}:fault:{model}:{record.id}:{attempt}")
        if rng.random() < fault.error_rate:
            raise make_error(fault.error, f"{PROVIDER}/{model}", fault.retry_after_s)

    def _answer(
        self, model: str, messages: Sequence[Mapping[str, Any]], response: ModelResponse | None
    ) -> tuple[ModelResponse, float]:
        response = response if response is not None else ModelResponse()
        record = self._lookup(model, messages)
        self._inject(model, record)
        score = record.scores.get(model)
        text = record.responses.get(model)
        if text is None:
            shown = "ungraded" if score is None else f"score {score:.2f}"
            text = f"[replay] {model} on {record.task} {record.id}: {shown}"
            completion = assumed_output_tokens(record.task)
        else:
            completion = tokens.count_text(text)
        prompt = tokens.count_messages(messages)
        cost = record.cost_usd[model]
        latency = self.simulated_latency_ms(model, record)
        response.model = f"{PROVIDER}/{model}"
        message = Message(role="assistant", content=text)
        response.choices = [Choices(index=0, finish_reason="stop", message=message)]
        total = prompt + completion
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
        usage.cost = cost  # a second source ChatLiteLLM reads the cost from
        response.usage = usage  # type: ignore[attr-defined]
        extra = {
            KEY_SCORE: score,
            KEY_LATENCY: latency,
            KEY_RECORD: record.id,
            KEY_TASK: record.task,
        }
        response._hidden_params.update({"response_cost": cost, **extra})
        response.provider_specific_fields = extra  # type: ignore[attr-defined]  # -> response_metadata
        return response, latency

    # LiteLLM passes every argument by keyword; only `model_response` is used here.
    def completion(self, model: str, messages: list, *_: Any, **kw: Any) -> ModelResponse:
        """Answer a call from the record of its prompt (LiteLLM's sync entry point)."""
        response, latency = self._answer(model, messages, kw.get("model_response"))
        if self.sleep:
            time.sleep(latency / 1000 * self.time_scale)
        return response

    async def acompletion(self, model: str, messages: list, *_: Any, **kw: Any) -> ModelResponse:
        """Answer a call from the record of its prompt (LiteLLM's async entry point)."""
        response, latency = self._answer(model, messages, kw.get("model_response"))
        if self.sleep:
            await asyncio.sleep(latency / 1000 * self.time_scale)
        return response

    def streaming(self, model: str, *_: Any, **__: Any) -> Any:
        """Refuse streaming with a clear 400 (a stream's usage chunk cannot carry the cost)."""
        raise litellm.BadRequestError("replay: streaming is not supported", model, PROVIDER)

    astreaming = streaming


def registry_latencies(registry: Registry) -> dict[str, float]:
    """Dataset model name -> avg_latency_ms of the registry's `replay/` entries."""
    return {
        entry.model.removeprefix(f"{PROVIDER}/"): float(entry.avg_latency_ms)
        for entry in registry.models.values()
        if entry.model.startswith(f"{PROVIDER}/")
    }


def install(
    dataset: ReplayDataset | str | Path,
    latency_ms: Mapping[str, float],
    faults: Mapping[str, Fault] | None = None,
    seed: int = 0,
    sleep: bool = False,
    time_scale: float = 1.0,
) -> ReplayProvider:
    """Register a ReplayProvider as LiteLLM's `replay` provider, replacing any earlier one."""
    data = dataset if isinstance(dataset, ReplayDataset) else ReplayDataset.load(dataset)
    provider = ReplayProvider(data, latency_ms, faults, seed, sleep, time_scale)
    others = [e for e in litellm.custom_provider_map if e["provider"] != PROVIDER]
    litellm.custom_provider_map[:] = [*others, {"provider": PROVIDER, "custom_handler": provider}]
    return provider


def uninstall() -> None:
    """Remove the `replay` provider from LiteLLM."""
    litellm.custom_provider_map[:] = [
        e for e in litellm.custom_provider_map if e["provider"] != PROVIDER
    ]
