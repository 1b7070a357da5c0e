"""The graph's input, state and output, and the per-run settings.

State values are plain JSON (dicts, lists, numbers), so checkpoints stay small, portable
and free of live objects; only the caller's `messages` may hold LangChain messages (which
LangGraph's serializer keeps) until analyze_context turns them into chat dicts.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Annotated, Any

# typing_extensions' TypedDict: pydantic builds Studio's input and output schemas from these
# classes and refuses typing's on Python < 3.12.
from typing_extensions import NotRequired, TypedDict

from graph.context import TaskContext


class SelectionInput(TypedDict):
    """What an agent sends: the task context, the prompt, an optional system prompt and an
    optional conversation so far (a prompt, a conversation, or both)."""

    context: TaskContext | Mapping[str, Any]
    prompt: NotRequired[str | None]
    """The new user turn, sent last."""
    system_prompt: NotRequired[str | None]
    messages: NotRequired[Sequence[Any] | None]
    """The conversation so far: chat dicts (`role`, `content`) or LangChain messages, as an
    agent's `messages` state holds them; sent between the system prompt and the prompt."""
    tools: NotRequired[Sequence[Any] | None]
    """Tools the model may call: OpenAI tool specs or LangChain tools; only models that can
    call tools serve the request."""
    tool_choice: NotRequired[Any]
    """`auto`, `none`, `required`, or `{"type": "function", "function": {"name": ...}}`."""


class Attempt(TypedDict):
    """One call (or a skipped one) on one model."""

    model_id: str
    try_no: int
    """1 for the first call on this model, 2 and 3 for retries."""
    ok: bool
    error_class: str | None
    action: str | None
    error: str | None
    latency_ms: int
    cost_usd: float


def log_attempts(existing: list[Attempt] | None, new: list[Attempt] | None) -> list[Attempt]:
    """Reducer of the attempt log: appends; None (sent by analyze_context) starts afresh,
    so a thread id reused for a new request does not inherit the old request's attempts.

    A record of the last attempt again (same model and try) replaces it: next_fallback
    amends the action of a retry it declines, so the log says what was done.
    """
    if new is None:
        return []
    log = list(existing or [])
    for record in new:
        last = log[-1] if log else None
        if last and (last["model_id"], last["try_no"]) == (record["model_id"], record["try_no"]):
            log[-1] = record
        else:
            log.append(record)
    return log


class SelectionOutput(TypedDict, total=False):
    """The spec's result keys plus the decision record."""

    response: str | None
    tool_calls: list[dict[str, Any]] | None
    """The tool calls the model asked for (OpenAI format), when the request offered tools."""
    model_used: str | None
    latency_ms: int
    cost_usd: float
    success: bool
    fallback_triggered: bool
    error: str | None
    stop_reason: str | None
    """served, exhausted, budget, deadline or bad_request."""
    thread_id: str | None
    prompt_tokens: int
    chain: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    excluded: dict[str, str]
    attempts: list[Attempt]


class SelectionState(SelectionOutput, total=False):
    """Everything the nodes share; each field is written by the node named."""

    context: Any
    prompt: str | None
    system_prompt: str | None
    task: dict[str, Any]
    """analyze_context: the validated TaskContext as a dict."""
    messages: Any
    """The caller's conversation so far; analyze_context replaces it by the chat messages
    sent (system prompt, conversation, prompt)."""
    tools: Any
    """The caller's tools; analyze_context replaces them by the OpenAI specs sent."""
    tool_choice: Any
    max_output_tokens: int
    weights: dict[str, float]
    deadline: float | None
    """analyze_context: epoch seconds by which the whole request must be done."""
    started: float
    eligible: list[str]
    """query_registry: models that pass every filter."""
    soft_excluded: dict[str, str]
    """query_registry: hard-eligible models out of domain or capability (policy may use them)."""
    health: dict[str, str]
    """query_registry: live health of the models that may still be chained."""
    position: int
    """call_model: index in `chain` of the model being tried."""
    tries: int
    """call_model: calls made on the current model."""
    spent_usd: float
    retry_declined: list[str]
    """next_fallback: each retry asked for but not made, and why (the backoff would pass
    the deadline, or the model's circuit opened meanwhile)."""
    usage: dict[str, int]
    """call_model: token usage of the serving call."""
    attempts: Annotated[list[Attempt], log_attempts]  # type: ignore[misc]


@dataclass(kw_only=True, frozen=True)
class RunSettings:
    """Per-run settings, passed as `context=` to invoke; LangGraph gives None when absent."""

    timeout_s: float = 30.0
    max_tokens: int = 4096
    temperature: float = 0.1
    top_k: int = 3
    max_tries_per_model: int = 3
    require_keys: bool = True
    """Exclude hosted models whose API key variable is unset (False for dry runs)."""
    policy: str = "spec"
    """How candidates are ordered: spec, learned, learned-quality, cheapest, random,
    model:<id> (nodes/policies.py)."""
    seed: int = 0
    """Seeds the random policy (with the prompt), so runs repeat exactly."""
    mock_responses: Mapping[str, Any] | None = None
    """Model id (or "*") -> LiteLLM `mock_response`: offline runs through the real call path."""

    def __post_init__(self) -> None:
        """The lower bounds of the service's `Options`, for every caller.

        A negative max_tokens made the worst-case cost negative, so over-budget models
        passed the budget filter; top_k < 1 emptied the chain and blamed the models.
        The service's upper bounds (timeout, max_tokens, top_k, tries) guard a shared
        server and are not imposed here; temperature's range is the providers' own.
        """
        for name in ("max_tokens", "top_k", "max_tries_per_model"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        if not (_is_number(self.timeout_s) and 0 < self.timeout_s < math.inf):
            raise ValueError(f"timeout_s={self.timeout_s!r}: must be a finite number > 0")
        if not (_is_number(self.temperature) and 0 <= self.temperature <= 2):
            raise ValueError(f"temperature={self.temperature!r}: must be a number from 0 to 2")
        if type(self.require_keys) is not bool:  # "no" would be truthy: keys required
            raise ValueError(f"require_keys={self.require_keys!r}: must be True or False")
        if type(self.seed) is not int:
            raise ValueError(f"seed={self.seed!r}: must be an integer")
        if not isinstance(self.policy, str) or not self.policy:
            raise ValueError(f"policy={self.policy!r}: must be a policy name (nodes/policies.py)")
        self._check_mocks()

    def _check_mocks(self) -> None:
        """A mapping of model id (or "*") to a mock (None: that model is called for real)."""
        mocks = self.mock_responses
        if mocks is None:
            return
        if not isinstance(mocks, Mapping):
            raise ValueError(f"mock_responses: must be a mapping of model id (or '*') to a "
                             f"mock response, not {type(mocks).__name__}")
        for model_id, mock in mocks.items():
            if not isinstance(model_id, str):
                raise ValueError(f"mock_responses[{model_id!r}]: keys are model ids or '*'")
            problem = _mock_problem(mock)
            if problem:
                raise ValueError(f"mock_responses[{model_id!r}]={mock!r}: {problem}")

    def is_mocked(self, model_id: str) -> bool:
        """Whether calls to this model are answered by a mock (so it needs no API key)."""
        return self._mock(model_id) is not None

    def mock_for(self, model_id: str) -> Any:
        """The mock response for a model, if any; an exception is a fresh copy each call."""
        mock = self._mock(model_id)
        return _unraised_copy(mock) if isinstance(mock, BaseException) else mock

    def _mock(self, model_id: str) -> Any:
        if not self.mock_responses:
            return None
        return self.mock_responses.get(model_id, self.mock_responses.get("*"))


def _mock_problem(mock: object) -> str | None:
    """Why a mock is not one LiteLLM can answer with, or None. A wrong one failed at every
    model of the chain as an unclassified error, which counts against their circuits."""
    if mock is None or isinstance(mock, str | BaseException):
        return None
    if isinstance(mock, type) and issubclass(mock, BaseException):
        return "an exception instance (LiteLLM raises it), not the class"
    if isinstance(mock, Mapping):
        extra = set(mock) - {"content", "tool_calls"}
        return f"a reply mapping has content and tool_calls only, not {sorted(extra)}" \
            if extra else None
    if any(cls.__name__ == "ModelResponse" for cls in type(mock).__mro__):  # LiteLLM's own
        return None
    return ("must be text, an exception instance, a mapping with content and tool_calls, "
            "or a LiteLLM ModelResponse")


def _is_number(value: object) -> bool:
    """An int or float, not a bool (True would pass as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unraised_copy(exc: BaseException) -> BaseException:
    """The exception with its type, args and attributes, but no traceback or context.

    Raising one instance again and again grows its traceback by the frames of every raise,
    and LiteLLM formats that whole traceback on each failure: measured, each failing call
    took about 4 ms longer than the one before, and held every earlier call's frames.
    `copy.copy` cannot be used: LiteLLM's exceptions need arguments their `args` lack.
    """
    clone = type(exc).__new__(type(exc), *exc.args)
    clone.__dict__.update(exc.__dict__)
    return clone


_SETTING_NAMES = frozenset(f.name for f in fields(RunSettings))

DEFAULT_SETTINGS = RunSettings()


def check_setting_names(names: Iterable[Any]) -> None:
    """Refuse the keys of a dict meant as RunSettings that they lack, naming them (a
    misspelt field would leave the rest, mocks included, unapplied)."""
    unknown = [str(k) for k in names if k not in _SETTING_NAMES]
    if unknown:
        raise TypeError(f"context: unknown RunSettings field(s) {', '.join(sorted(unknown))}")


def settings_of(context: object) -> RunSettings:
    """A node's run settings from its runtime context: `context=` of the run; a dict of
    RunSettings fields alone, as a parent graph without a schema passes one on; else the
    defaults (none given, or a parent graph's own context, which may share a name such as
    `temperature`). A dict with a near-miss of a field's name (`max_token`) is refused: a
    misspelt setting would leave the others, mocks included, unapplied."""
    if isinstance(context, RunSettings):
        return context
    if isinstance(context, Mapping) and context:
        if context.keys() <= _SETTING_NAMES:
            return RunSettings(**context)
        misspelt = [k for k in context if isinstance(k, str) and k not in _SETTING_NAMES
                    and difflib.get_close_matches(k, _SETTING_NAMES, n=1, cutoff=0.85)]
        check_setting_names(misspelt)
    return DEFAULT_SETTINGS
