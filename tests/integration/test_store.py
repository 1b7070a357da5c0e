"""Health cache, usage log and health probes on a real Redis."""

from __future__ import annotations

import http.server
import json
import threading

from graph.health import health_report, probe_all
from graph.store import Store


def test_health_cache_ttl_and_update(redis_client, prefix):
    store = Store(redis_client, prefix=prefix)
    assert store.statuses({"m1": "alive", "m2": "degraded"}) == {"m1": "alive", "m2": "degraded"}
    assert 55 <= redis_client.ttl(f"{prefix}model:health:m1") <= 60  # the spec's 60 s
    store.update_health("m1", "degraded")
    assert store.statuses({"m1": "alive"})["m1"] == "degraded"
    redis_client.delete(f"{prefix}model:health:m1")  # expired: back to the YAML status
    assert store.statuses({"m1": "alive"})["m1"] == "alive"


def test_usage_is_json_newest_first_and_keeps_the_last_1000(redis_client, prefix):
    store = Store(redis_client, prefix=prefix)
    for i in range(1005):
        store.log_usage("m", {"latency_ms": i, "success": i % 2 == 0})
    key = f"{prefix}model:usage:m"
    assert redis_client.llen(key) == 1000
    assert json.loads(redis_client.lindex(key, 0)) == {"latency_ms": 1004, "success": True}
    assert store.usage("m", last=2) == [{"latency_ms": 1004, "success": True},
                                        {"latency_ms": 1003, "success": False}]


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_probes_cache_alive_and_dead_and_the_report_shows_circuits(services, redis_client, prefix):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    reg = services.registry
    models = dict(reg.models)
    models["deepseek-coder-33b-instruct"] = models["deepseek-coder-33b-instruct"].model_copy(
        update={"health_check_url": f"http://127.0.0.1:{port}/health"})
    models["qwen-2.5-coder-32b-instruct"] = models["qwen-2.5-coder-32b-instruct"].model_copy(
        update={"health_check_url": f"http://127.0.0.1:{port}/down"})
    reg = reg.model_copy(update={"models": models})
    try:
        results = probe_all(reg, services.store, timeout_s=0.5)
    finally:
        server.shutdown()
    assert results["deepseek-coder-33b-instruct"] == "alive"
    assert results["qwen-2.5-coder-32b-instruct"] == "dead"
    assert results["codellama-70b-instruct"] == "dead"  # nothing listens on :8003 here
    services.store.with_circuits(lambda c: c.cool_down("gpt-4o-mini-self-heal", 30))
    rows = {r["model_id"]: r for r in health_report(reg, services.store)}
    assert rows["qwen-2.5-coder-32b-instruct"]["health"] == "dead"
    assert rows["gpt-4o-mini-self-heal"]["cooling_until"] is not None
    assert rows["gpt-4o-mini-self-heal"]["circuit"] == "closed"
    assert len(rows) == 58


def test_in_memory_store_keeps_state_in_process():
    from graph.registry import CircuitBreakerPolicy

    store = Store.in_memory()
    assert not store.online
    store.update_health("m", "degraded")
    assert store.statuses({"m": "alive", "n": "alive"}) == {"m": "degraded", "n": "alive"}
    for i in range(1003):
        store.log_usage("m", {"i": i})
    assert store.usage("m", last=2) == [{"i": 1002}, {"i": 1001}]
    assert len(store.usage("m", last=5000)) == 1000
    for _ in range(3):
        store.with_circuits(lambda c: c.record_failure("m", CircuitBreakerPolicy(failure_threshold=3)))
    assert store.with_circuits(lambda c: c.snapshot(["m"]))["m"].state == "open"


def test_the_graph_runs_without_redis(tmp_path):
    from graph.builder import compile_graph
    from graph.services import Services
    from graph.state import RunSettings
    from tests.conftest import PORT_HEALER

    services = Services.in_memory(str(tmp_path / "fb.jsonl"))
    out = compile_graph(services).invoke({"context": PORT_HEALER, "prompt": "hi"},
                                         context=RunSettings(mock_responses={"*": "ok"}))
    assert out["success"] and out["model_used"] == "llama-3.3-70b-versatile"
    assert services.store.usage("llama-3.3-70b-versatile")[0]["success"] is True


def _count_round_trips(monkeypatch) -> list[str]:
    """Every command sent alone and every pipeline sent, by name."""
    import redis

    sent: list[str] = []
    execute, command = redis.client.Pipeline.execute, redis.Redis.execute_command

    def pipeline_execute(self, *args, **kwargs):
        sent.append("pipeline:" + ",".join(str(c[0][0]) for c in self.command_stack))
        return execute(self, *args, **kwargs)

    def execute_command(self, *args, **kwargs):
        sent.append(str(args[0]))
        return command(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", pipeline_execute)
    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    return sent


def test_live_reads_health_and_circuits_in_one_round_trip(redis_client, prefix, monkeypatch):
    from graph.registry import CircuitBreakerPolicy

    store = Store(redis_client, prefix=prefix)
    store.update_health("m", "degraded")
    store.with_circuits(lambda c: c.record_failure("n", CircuitBreakerPolicy(failure_threshold=1)))
    store.live({"m": "alive", "n": "alive", "o": "alive"})  # caches o's default (SET NX)
    sent = _count_round_trips(monkeypatch)
    live = store.live({"m": "alive", "n": "alive", "o": "alive"})
    assert sent == ["pipeline:MGET,EVALSHA"]
    assert live.health == store.statuses({"m": "alive", "n": "alive", "o": "alive"})
    assert live.health == {"m": "degraded", "n": "alive", "o": "alive"}
    assert live.availability == store.circuits.snapshot(["m", "n", "o"])
    assert live.availability["n"].state == "open" and live.availability["m"].state == "closed"


def test_live_survives_a_redis_that_forgot_its_scripts(redis_client, prefix):
    from graph.registry import CircuitBreakerPolicy

    store = Store(redis_client, prefix=prefix)
    store.with_circuits(lambda c: c.record_failure("n", CircuitBreakerPolicy(failure_threshold=1)))
    store.live({"n": "alive"})
    redis_client.script_flush()  # what a restarted Redis looks like to a running router
    live = store.live({"n": "alive"})
    assert live.availability["n"].state == "open"
    assert store.online  # answered from Redis, not from the in-process stand-in


def test_live_without_redis_reads_the_in_process_state():
    from graph.registry import CircuitBreakerPolicy

    store = Store.in_memory()
    store.update_health("m", "dead")
    store.with_circuits(lambda c: c.record_failure("n", CircuitBreakerPolicy(failure_threshold=1)))
    live = store.live({"m": "alive", "n": "alive"})
    assert live.health == {"m": "dead", "n": "alive"}
    assert live.availability["n"].state == "open"


def test_the_report_shows_a_circuit_as_routing_treats_it(redis_client, prefix):
    """An open circuit past its timeout lets the next call through as the probe: the
    report says half-open, not open (the stored state changes only when a call is admitted)."""
    from graph.circuit import exclusion_reason
    from graph.registry import CircuitBreakerPolicy, load_registry

    reg = load_registry()
    now = [1_000_000.0]
    store = Store(redis_client, prefix=prefix, clock=lambda: now[0])
    model = "gpt-4o-mini-self-heal"
    policy = CircuitBreakerPolicy(failure_threshold=1, timeout_seconds=60)
    store.with_circuits(lambda c: c.record_failure(model, policy))

    def row() -> dict:
        return next(r for r in health_report(reg, store) if r["model_id"] == model)

    assert row()["circuit"] == "open"
    assert row()["detail"].startswith("open until ")
    now[0] += 61
    stored = store.live({model: "alive"}).availability[model]
    assert stored.state == "open" and exclusion_reason(stored, "", now[0]) is None
    assert row()["circuit"] == "half_open"
    assert "the next call is the probe" in row()["detail"]
    assert store.with_circuits(lambda c: c.admit(model)) == "probe"
    assert row()["circuit"] == "half_open"
    assert "probe in flight until" in row()["detail"]


def test_a_queued_request_is_ratable_later_only_if_its_latest_mark_served(redis_client, prefix):
    """A reused id whose latest request served nothing still read as 'queued, retry'."""
    from graph.store import Served

    store = Store(redis_client, prefix=prefix)
    served = Served("gpt-4o-mini-self-heal", "self_heal", "code_fix")
    store._queue_pending(("gpt-4o-mini-self-heal", "{}", ("r-1", served)))
    assert store.queued_request("r-1") and not store.queued_request("r-2")
    store._queue_pending(("gpt-4o-mini-self-heal", "{}", ("r-1", None)))  # served nothing
    assert not store.queued_request("r-1")
    store._pending.clear()


def test_redis_py_still_says_an_exhausted_pool_in_the_words_outage_reads():
    """`graph.outage.pool_exhausted` matches redis-py's message, which has no class."""
    import redis

    from graph.outage import pool_exhausted
    from tests.conftest import REDIS_URL

    pool = redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=1, timeout=0.05)
    held = pool.get_connection()
    try:
        redis.Redis(connection_pool=pool).get("x")
    except redis.ConnectionError as exc:
        assert pool_exhausted(exc), exc
    else:
        raise AssertionError("a pool with no free connection answered")
    finally:
        pool.release(held)
        pool.disconnect()
