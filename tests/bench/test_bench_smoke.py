"""Smoke test of the benchmark suite: every section runs and reports numeric figures.

Tiny iteration counts and a 200-model generated registry; no timing target is checked
(the machine is shared and noisy; targets are for the printed run only). Needs the Redis
at BENCH_REDIS_URL (default redis://127.0.0.1:6379/15); skipped when it does not answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from . import common, run

TINY = run.Plan(
    mem_iters=8, redis_iters=5, large_size=200, throughput=((1, 3), (100, 100)),
    delay_s=0.01, cold_runs=1, memory_requests=40, memory_every=10, quick=True,
)


def _redis_up(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
        return True
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    url = common.redis_url()
    if not _redis_up(url):
        pytest.skip(f"no Redis at {url}")
    out = run.run_suite(TINY, url, log=lambda _msg: None)
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    run.write_json(out, path)
    return json.loads(Path(path).read_text(encoding="utf-8"))


def test_every_section_is_present(result: dict) -> None:
    for section in run.SECTIONS:
        assert result.get(section), f"section {section} missing or empty"


def test_every_figure_is_numeric(result: dict) -> None:
    assert run.missing_figures(result) == []


def test_sizes_and_counts_are_the_plan(result: dict) -> None:
    assert result["selection"]["real"]["models"] == 58
    assert result["selection"]["large"]["models"] == TINY.large_size
    assert result["in_memory"]["graph"]["n"] == TINY.mem_iters
    assert result["checkpointed"]["exit"]["n"] == TINY.redis_iters
    assert [r["concurrency"] for r in result["throughput"]["rows"]] == [1, 100]
    samples = result["memory"]["samples"]
    assert [s["requests"] for s in samples] == list(range(0, 41, 10))
    assert result["memory"]["feedback_lines"] == TINY.memory_requests + 1  # + warm-up


def test_targets_are_evaluated(result: dict) -> None:
    names = [t["target"] for t in result["targets"]]
    assert len(names) == 9  # the two limits in ms judged as written and scaled
    for target in result["targets"]:
        assert target["pass"] in (True, False, None)
        if target["pass"] is not None:
            assert isinstance(target["value"], (int, float))


def test_keys_are_cleaned_up(result: dict) -> None:
    client = redis.Redis.from_url(result["redis_url"])
    try:
        assert next(client.scan_iter(match=result["key_prefix"] + "*"), None) is None
    finally:
        client.close()
    assert result["keys_deleted"] > 0


def test_report_renders(result: dict) -> None:
    text = run.render(result)
    assert "Targets" in text
    for heading in ("1. Selection", "2. Whole request", "3. With the Redis checkpointer",
                    "4. Throughput", "5a. Cold start", "5b. Memory"):
        assert heading in text
