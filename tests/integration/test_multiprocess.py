"""Three router processes share one Redis: a circuit opened by one is honoured by the others,
and usage and feedback are counted exactly across processes.

Each process (multiprocessing spawn) builds its own Services, Store and Redis client with the
same key prefix and its own compiled graph (`compile_graph(services, checkpointer=None)`).
Process A's calls to the self_heal primary fail (5xx / connection, alternating) until the
circuit opens (threshold 5) and stays open for a while; B and C loop requests in which the
primary would succeed and record, per request, whether it called the primary (its attempts)
and when. A success of B or C on the primary resets the consecutive-failure count (and a
success admitted just before the circuit opened closes it again), so A fails in bursts of
concurrent requests and takes as the opening time the one of the circuit it finally watched
stay open.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from nodes.record_feedback import CALLED
from tests.conftest import PORT_HEALER, REDIS_URL

PRIMARY, SECOND = "llama-3.3-70b-versatile", "gpt-4o-mini-self-heal"
PROMPT = "Port 8080 is occupied by 'api'. Output only a bash script that frees it."
STOP_WITHIN_S = 1.0
WATCH_S = 1.5
"""How long A watches the open circuit before reporting (B and C keep requesting)."""
BURST = 5
"""A's concurrent failing requests: the self_heal threshold is 5 consecutive failures."""
PACE_S = 0.1
"""B and C's pause between requests."""


def _router(role: str, prefix: str, url: str, feedback_path: str, ready: Any, stop: Any,
            results: Any) -> None:
    """One router process. A: fail the primary until its circuit opens and stays open.
    B, C: request (primary healthy) until told to stop. Every request is recorded."""
    try:
        import litellm

        from graph.builder import compile_graph
        from graph.feedback import FeedbackLog
        from graph.registry import load_registry
        from graph.services import Services
        from graph.state import RunSettings
        from graph.store import Store

        registry = load_registry()
        store = Store(redis.Redis.from_url(url, decode_responses=True), prefix=prefix)
        services = Services(registry=registry, store=store, feedback=FeedbackLog(feedback_path),
                            sleep=lambda _s: None)  # backoff recorded as nothing; decisions real
        graph = compile_graph(services, checkpointer=None)
        records: list[dict[str, Any]] = []
        numbers = itertools.count()

        def request(mocks: dict[str, Any]) -> dict[str, Any]:
            n = next(numbers)
            started = time.time()
            out = graph.invoke({"context": PORT_HEALER, "prompt": PROMPT},
                               config={"configurable": {"thread_id": f"{role}-{n}"}},
                               context=RunSettings(mock_responses=mocks))
            records.append({
                "id": f"{role}-{n}", "start": started, "end": time.time(),
                "success": out["success"], "model_used": out["model_used"],
                "attempts": [(a["model_id"], a["try_no"], a["error_class"])
                             for a in out["attempts"]],
                "excluded_primary": out["excluded"].get(PRIMARY),
            })
            return out

        request({"*": "ok"})  # the first request pays the imports; it counts like any other
        ready.wait(180)
        extra: dict[str, Any] = {}
        if role == "A":
            time.sleep(0.3)  # B and C are calling the primary by now
            timeout = registry.breaker_policy("self_heal").timeout_seconds
            openings, t_open, deadline = 0, None, time.time() + 15
            errors = (litellm.InternalServerError, litellm.APIConnectionError)
            # B and C's successes on the primary reset its consecutive-failure count, so A
            # fails in bursts of concurrent requests: five first tries land within a few ms
            pool = ThreadPoolExecutor(BURST)
            while time.time() < deadline:
                a = store.circuits.snapshot([PRIMARY])[PRIMARY]
                if a.state == "open":
                    if t_open != a.open_until - timeout:
                        openings += 1
                        t_open = a.open_until - timeout  # the moment it opened (ms precision)
                        watch_until = time.time() + WATCH_S
                    if time.time() >= watch_until:
                        break
                    time.sleep(0.02)
                    continue
                mocks = [{PRIMARY: errors[n % 2]("injected", "groq", PRIMARY), "*": "ok"}
                         for n in range(BURST)]
                list(pool.map(request, mocks))
            pool.shutdown()
            extra = {"t_open": t_open, "openings": openings,
                     "final": store.circuits.snapshot([PRIMARY])[PRIMARY].state}
        else:
            while not stop.is_set():
                request({"*": "ok"})
                time.sleep(PACE_S)
        results.put({"role": role, "records": records, **extra})
    except BaseException as exc:  # the parent must hear of it rather than time out
        results.put({"role": role, "crash": f"{type(exc).__name__}: {exc}"})
        raise
    results.close()
    results.join_thread()
    os._exit(0)  # skip ~2 s of interpreter teardown (litellm); the results are delivered


def _called(record: dict[str, Any], model_id: str) -> bool:
    return any(m == model_id and t > 0 and e in CALLED for m, t, e in record["attempts"])


@pytest.mark.slow
def test_circuit_opened_in_one_process_stops_the_others_and_counts_are_exact(
    prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    feedback = tmp_path / "feedback.jsonl"
    ctx = multiprocessing.get_context("spawn")
    ready, stop, results = ctx.Barrier(4), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_router, args=(role, prefix, REDIS_URL, str(feedback), ready,
                                               stop, results), daemon=True)
             for role in "ABC"]
    for proc in procs:
        proc.start()
    try:
        ready.wait(180)
        got = {}
        first = results.get(timeout=60)  # A reports once the circuit has stayed open
        got[first["role"]] = first
        stop.set()
        for _ in range(2):
            r = results.get(timeout=60)
            got[r["role"]] = r
    finally:
        stop.set()
        for proc in procs:
            proc.join(20)
            if proc.is_alive():
                proc.kill()
    crashed = {role: r["crash"] for role, r in got.items() if "crash" in r}
    assert not crashed, crashed
    a = got["A"]
    assert a["t_open"] is not None, "A never opened the primary's circuit"
    assert a["final"] == "open"
    t_open = a["t_open"]
    # A: at least five failures opened it (more if a success of B or C reset the streak)
    failed_a = [r for r in a["records"] if any(m == PRIMARY and e for m, _, e in r["attempts"])]
    assert sum(1 for r in failed_a for m, _, e in r["attempts"] if m == PRIMARY and e) >= 5
    assert all(r["success"] and r["model_used"] == SECOND for r in failed_a)

    for role in "BC":
        recs = got[role]["records"]
        before = [r for r in recs if r["end"] < t_open and _called(r, PRIMARY)]
        assert before, f"{role} never called the primary before the circuit opened"
        late = [r for r in recs if r["end"] >= t_open and _called(r, PRIMARY)]
        last_call = max((r["end"] for r in late), default=t_open)
        assert last_call - t_open <= STOP_WITHIN_S, (role, last_call - t_open, late)
        after = [r for r in recs if r["start"] >= t_open + STOP_WITHIN_S]
        assert after, f"{role} made no request a second after the circuit opened"
        # the only call allowed on an open circuit is the half-open probe, not due before
        # open_until (60 s after t_open): none of these requests may call the primary
        for r in after:
            assert not _called(r, PRIMARY) or r["start"] >= t_open + 60, r
            assert r["excluded_primary"] and r["excluded_primary"].startswith("circuit open"), r
            assert r["success"] and r["model_used"] == SECOND, r

    # exact usage and feedback across the three processes
    records = [r for role in "ABC" for r in got[role]["records"]]
    successes = [r for r in records if r["success"]]
    assert len(successes) == len(records)
    served = Counter(r["model_used"] for r in successes)
    calls = Counter(m for r in records for m, t, e in r["attempts"] if t > 0 and e in CALLED)
    models = set(calls) | set(served)
    usage = {m: [json.loads(x) for x in redis_client.lrange(f"{prefix}model:usage:{m}", 0, -1)]
             for m in models}
    assert sum(1 for m in models for e in usage[m] if e["success"]) == len(successes)
    for m in models:
        assert sum(1 for e in usage[m] if e["success"]) == served[m], m
        assert len(usage[m]) == calls[m], m  # failed attempts are usage entries too
    all_usage_keys = list(redis_client.scan_iter(match=f"{prefix}model:usage:*", count=1000))
    assert sum(redis_client.llen(k) for k in all_usage_keys) == sum(calls.values())
    lines = feedback.read_text().splitlines()
    assert len(lines) == len(records)
    assert sorted(json.loads(line)["request_id"] for line in lines) == sorted(
        r["id"] for r in records)
