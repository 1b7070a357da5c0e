"""What every benchmark section shares: the request, the run settings, services on Redis.

Importing this module forces LiteLLM's bundled price map (no network) and turns LangSmith
tracing off, so every figure is taken offline on mocked calls.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch prices: no network here
for _var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
    os.environ.pop(_var, None)  # a tracer would try the network on every run

import uuid
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

import redis

from graph.feedback import FeedbackLog
from graph.registry import Registry
from graph.services import Services
from graph.state import RunSettings
from graph.store import Store

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"

CONTEXT: dict[str, Any] = {
    "task_type": "code_fix",
    "domain": "self_heal",
    "complexity": "simple",
    "priority": "critical",
    "max_cost_usd": 0.01,
    "max_latency_ms": 2000,
}
PROMPT = "Fix the failing import in service.py: ModuleNotFoundError: No module named 'requests'"
SETTINGS = RunSettings(mock_responses={"*": "ok"}, require_keys=False)
MOCK_TEXT = "ok"


def redis_url() -> str:
    """`BENCH_REDIS_URL`, else `TEST_REDIS_URL` (the test suite's), else local db 15."""
    return (os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
            or DEFAULT_REDIS_URL)


def new_prefix() -> str:
    """A key prefix unique to this run (under `MODEL_SELECTOR_KEY_PREFIX` when set)."""
    return f"{os.environ.get('MODEL_SELECTOR_KEY_PREFIX', '')}bench:{uuid.uuid4().hex[:10]}:"


def graph_input() -> dict[str, Any]:
    """The request every section sends."""
    return {"context": dict(CONTEXT), "prompt": PROMPT, "system_prompt": None}


def messages() -> list[dict[str, str]]:
    """The chat messages the graph builds for `graph_input()` (no system prompt)."""
    from nodes.conversation import build_messages

    return build_messages(PROMPT, None)


def make_services(registry: Registry, url: str, prefix: str, feedback_path: Path) -> Services:
    """Services on a real Redis, under the run's prefix, feedback to a temp file."""
    client = redis.Redis.from_url(url, decode_responses=True)
    return Services(registry=registry, store=Store(client, prefix=prefix),
                    feedback=FeedbackLog(feedback_path))


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix`; returns how many."""
    client = redis.Redis.from_url(url)
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    client.close()
    return deleted


_background: list[Future[Any]] = []


def track_litellm_background() -> None:
    """Keep the futures of the tasks LiteLLM hands its logging thread pool (idempotent).

    After a call returns, LiteLLM builds its logging payload in that pool (about 0.3-0.5 ms
    of CPU per call): the work runs when the caller next releases the GIL, so in a loop of
    interleaved cases it lands on whichever case waits first (the graph's token count or
    Redis read), not on the case that caused it. LiteLLM offers no hook for "done", hence
    this wrapper on the pool's `submit` (benchmarks only).
    """
    from litellm.litellm_core_utils.thread_pool_executor import executor

    if getattr(executor.submit, "tracked", False):
        return
    submit = executor.submit

    def tracked(fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = submit(fn, *args, **kwargs)
        _background.append(future)
        return future

    tracked.tracked = True  # type: ignore[attr-defined]
    executor.submit = tracked  # type: ignore[method-assign]


def settle_litellm_background() -> None:
    """Wait until every tracked LiteLLM background task has finished."""
    while _background:
        wait([_background.pop() for _ in range(len(_background))])


def rss_kb() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB, read from /proc/self/status."""
    rss = hwm = 0
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm
