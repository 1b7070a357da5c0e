"""Our checkpointer (plain-Redis savers behind one outage-tolerant wrapper) against LangGraph's
own conformance suite, on the real server the tests use."""

from __future__ import annotations

import uuid

import pytest
import redis
from langgraph.checkpoint.conformance import checkpointer_test, validate

from graph.checkpoint import RedisCheckpointer
from graph.redis_conn import RedisTarget
from tests.conftest import REDIS_URL


@pytest.mark.parametrize("ttl_s", [None, 3600])  # put's script has a path for each
async def test_passes_langgraph_checkpoint_conformance(ttl_s):
    prefixes: list[str] = []

    @checkpointer_test(name="model-selector RedisCheckpointer")
    async def factory():
        prefix = f"conformance-{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        yield RedisCheckpointer.for_target(RedisTarget(url=REDIS_URL, socket_path=None),
                                           prefix=prefix, ttl_s=ttl_s)

    report = await validate(factory)
    try:
        failed = {name: result for name, result in report.results.items()
                  if result.detected and result.passed is not True}
        assert report.passed_all_base(), failed
        assert not failed, failed
        ran = sum(r.tests_passed for r in report.results.values() if r.detected)
        assert ran >= 50, ran  # the suite really ran (58 tests at langgraph-checkpoint 4.3)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
