"""Ratings end to end: a served request rated after the fact, credited in Redis to the model
that served it, read back by the learned policies on the next request (real graph, real
LiteLLM call path, real Redis)."""

from __future__ import annotations

import json
import math
import random
from concurrent.futures import ThreadPoolExecutor

import litellm
import pytest
import redis

from graph.builder import compile_graph
from graph.ratings import RatingError, rate
from graph.state import RunSettings
from graph.store import Served, Store
from tests.conftest import PORT_HEALER, Clock, rounded

PROMPT = "Port 8080 is occupied by 'api'. Output only a bash script that frees it."
PRIMARY, SECOND = "llama-3.3-70b-versatile", "gpt-4o-mini-self-heal"


def serve(graph, policy="spec", mocks=None):
    return graph.invoke({"context": PORT_HEALER, "prompt": PROMPT},
                        context=RunSettings(policy=policy, mock_responses=mocks or {"*": "ok"}))


def log(services):
    return [json.loads(line) for line in services.feedback.path.read_text().splitlines()]


def test_a_rating_is_credited_to_the_serving_model_and_logged(selection, services, redis_client,
                                                               prefix):
    out = serve(selection, mocks={PRIMARY: litellm.RateLimitError("slow down", "groq", "m"),
                                  "*": "ok"})
    assert out["model_used"] == SECOND  # the primary failed: the fallback is the one rated
    record = rate(services, out["thread_id"], 0.25, comment="missed the pid")
    assert (record["model_id"], record["user_feedback"], record["replaces"]) == (SECOND, 0.25, None)
    assert rounded(services.store.ratings("self_heal", "code_fix")) == {SECOND: (1, 0.25)}
    assert log(services)[-1] == record and record["type"] == "rating"
    window = redis_client.ttl(f"{prefix}model:request:{out['thread_id']}")
    assert 7 * 24 * 3600 - 60 < window <= 7 * 24 * 3600


def test_a_key_in_a_comment_never_reaches_the_log(selection, services):
    rid = serve(selection)["thread_id"]
    record = rate(services, rid, 0.5, comment="it printed sk-live1234567890abcdef to stdout")
    assert "sk-live" not in services.feedback.path.read_text()
    assert record["comment"] == "it printed [REDACTED] to stdout"


def test_rating_again_replaces_the_first_rating(selection, services):
    rid = serve(selection)["thread_id"]
    rate(services, rid, 0.2)
    again = rate(services, rid, 0.9)
    assert again["replaces"] == 0.2
    assert rounded(services.store.ratings("self_heal", "code_fix")) == {PRIMARY: (1, 0.9)}


def test_a_reused_thread_id_served_again_is_rated_afresh(selection, services):
    config = {"configurable": {"thread_id": "agent-7-thread"}}
    request = {"context": PORT_HEALER, "prompt": PROMPT}
    selection.invoke(request, config, context=RunSettings(mock_responses={"*": "ok"}))
    rate(services, "agent-7-thread", 1.0)
    mocks = {PRIMARY: litellm.RateLimitError("slow down", "groq", "m"), "*": "ok"}
    selection.invoke(request, config, context=RunSettings(mock_responses=mocks))
    assert rate(services, "agent-7-thread", 0.0)["replaces"] is None  # a new answer, a new vote
    assert rounded(services.store.ratings("self_heal", "code_fix")) == {PRIMARY: (1, 1.0),
                                                                         SECOND: (1, 0.0)}


@pytest.mark.parametrize("in_process", [False, True])
def test_a_reused_thread_whose_latest_request_failed_has_nothing_to_rate(
        selection, services, tmp_path, in_process):
    if in_process:
        from graph.feedback import FeedbackLog
        from graph.services import Services

        services = Services(registry=services.registry, store=Store.in_memory(),
                            feedback=FeedbackLog(tmp_path / "fb.jsonl"))
        selection = compile_graph(services)
    config = {"configurable": {"thread_id": "agent-8-thread"}}
    request = {"context": PORT_HEALER, "prompt": PROMPT}
    selection.invoke(request, config, context=RunSettings(mock_responses={"*": "ok"}))
    failed = selection.invoke(request, config, context=RunSettings(
        mock_responses={"*": Exception("provider exploded")}, max_tries_per_model=1))
    assert failed["success"] is False
    with pytest.raises(RatingError, match="not ratable"):  # not the first request's answer
        rate(services, "agent-8-thread", 0.1)


def test_rating_with_a_comment_that_is_not_text_records_nothing(selection, services):
    rid = serve(selection)["thread_id"]
    with pytest.raises(RatingError, match="comment: must be a string"):
        rate(services, rid, 0.5, comment=123)
    # the service's bound, for every way of rating (the CLI took 5,000 characters)
    with pytest.raises(RatingError, match="comment: at most 2000 characters, not 2001"):
        rate(services, rid, 0.5, comment="x" * 2001)
    assert services.store.ratings("self_heal", "code_fix") == {}
    assert [r.get("type") for r in log(services)] == [None]  # the request's record alone
    assert math.copysign(1, rate(services, rid, -0.0)["user_feedback"]) == 1  # 0, not -0


def test_concurrent_ratings_of_different_requests_all_count(selection, services):
    ids = [serve(selection)["thread_id"] for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda rid: rate(services, rid, 0.5), ids))
    assert rounded(services.store.ratings("self_heal", "code_fix")) == {PRIMARY: (8, 4.0)}


@pytest.mark.parametrize("request_id, quality, message", [
    ("no-such-request", 0.5, "not ratable: no served request has that id"),
    ("x", 1.5, "quality 1.5: must be in [0, 1]"),
    ("x", float("nan"), "must be in [0, 1]"),
    ("x", "0.5", "must be a number"),
    ("x", True, "must be a number"),
    ("", 0.5, "request_id '': must be a non-empty string"),
])
def test_a_bad_rating_names_the_problem_and_records_nothing(services, request_id, quality,
                                                            message):
    with pytest.raises(RatingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rate(services, request_id, quality)
    assert not services.feedback.path.exists()


def test_an_unserved_request_cannot_be_rated(selection, services):
    exc = litellm.BadRequestError("bad", model="m", llm_provider="openai")
    out = serve(selection, mocks={"*": exc})
    assert not out["success"]
    with pytest.raises(RatingError, match="unserved requests have no answer to rate"):
        rate(services, out["thread_id"], 1.0)


def test_redis_down_means_a_clear_error_and_no_half_record(services, prefix):
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True)
    services.store = Store(dead, prefix=prefix)
    with pytest.raises(redis.RedisError, match="the rating was not recorded"):
        rate(services, "some-id", 0.5)
    assert not services.feedback.path.exists()


def test_ratings_are_off_with_a_zero_window(services, redis_client, prefix):
    services.store = Store(redis_client, prefix=prefix, rating_window_s=0)
    graph = compile_graph(services)
    rid = serve(graph)["thread_id"]
    assert not redis_client.exists(f"{prefix}model:request:{rid}")
    with pytest.raises(RatingError, match="RATING_WINDOW_S=0"):
        rate(services, rid, 0.5)


def test_the_learned_policy_moves_off_a_poorly_rated_primary(selection, services):
    """The spec's primary is rated poorly; the learned policies leave it, the spec stays."""
    for _ in range(6):
        selection.rate(serve(selection)["thread_id"], 0.0)  # the compiled graph's own door
    assert serve(selection)["model_used"] == PRIMARY
    for policy in ("learned", "learned-quality"):
        out = serve(selection, policy)
        assert out["model_used"] != PRIMARY
        [primary] = [c for c in out["candidates"] if c["model_id"] == PRIMARY]
        assert primary["score"]["ratings"] == pytest.approx(6, rel=1e-4)  # faded a little
        assert primary["score"]["learned_quality"] == pytest.approx(5 / 11, rel=1e-4)


def test_in_memory_services_rate_in_process(tmp_path):
    from graph.feedback import FeedbackLog
    from graph.registry import load_registry
    from graph.services import Services

    services = Services(registry=load_registry(), store=Store.in_memory(),
                        feedback=FeedbackLog(tmp_path / "fb.jsonl"))
    graph = compile_graph(services)
    rid = serve(graph)["thread_id"]
    rate(services, rid, 0.5)
    rate(services, rid, 0.75)
    assert rounded(services.store.ratings("self_heal", "code_fix")) == {PRIMARY: (1, 0.75)}
    assert services.store.forget_ratings() == 1 and services.store.ratings(
        "self_heal", "code_fix") == {}


def test_forget_ratings_clears_this_prefix_only(services, redis_client, prefix):
    services.store.log_usage("m", {}, ("r1", Served("m", "optimize", "sql")))
    services.store.rate("r1", 1.0)
    redis_client.hset("other:model:quality:optimize:sql", "n:m", 1)
    try:
        assert services.store.forget_ratings() == 1
        assert services.store.ratings("optimize", "sql") == {}
        assert redis_client.exists("other:model:quality:optimize:sql")
    finally:
        redis_client.delete("other:model:quality:optimize:sql")


def test_the_script_credits_nobody_on_a_stale_read(services, redis_client, prefix):
    """Between reading who served a request and crediting them, another model may serve a
    reused thread id: the script then refuses (-2) and Store.rate reads again."""
    from graph.ratings import RATE

    services.store.log_usage("a", {}, ("r", Served("a", "optimize", "sql")))
    key, tally = f"{prefix}model:request:r", services.store.tally_key("optimize", "sql")
    assert redis_client.eval(RATE, 2, key, tally, "0.5", "b") == -2
    assert redis_client.hgetall(tally) == {}
    services.store.log_usage("b", {}, ("r", Served("b", "optimize", "sql")))
    assert services.store.rate("r", 0.5) == (Served("b", "optimize", "sql"), None)


DAY = 24 * 3600.0


def _decaying_stores(redis_client, prefix, clock, half_life_s=10 * DAY):
    """The same half-life and clock on Redis and in-process."""
    local = Store.in_memory(clock=clock)
    local.rating_half_life_s = half_life_s
    return Store(redis_client, prefix=prefix, clock=clock, rating_half_life_s=half_life_s), local


@pytest.mark.parametrize("where", ["redis", "in-process"])
def test_a_rating_counts_half_after_a_half_life_and_a_new_one_counts_whole(
        redis_client, prefix, where):
    clock = Clock()
    on_redis, local = _decaying_stores(redis_client, prefix, clock)
    store = on_redis if where == "redis" else local
    for rid, model in (("old", "m1"), ("new", "m2")):
        store.log_usage(model, {}, (rid, Served(model, "optimize", "sql")))
    store.rate("old", 0.2)
    clock.now += 10 * DAY
    assert rounded(store.ratings("optimize", "sql")) == {"m1": (0.5, 0.1)}
    store.rate("new", 1.0)
    clock.now += 10 * DAY
    assert rounded(store.ratings("optimize", "sql")) == {"m1": (0.25, 0.05), "m2": (0.5, 0.5)}
    # a correction takes the old rating out at the weight it has left, and counts whole now
    store.rate("old", 0.6)
    assert rounded(store.ratings("optimize", "sql")) == {"m1": (1.0, 0.6), "m2": (0.5, 0.5)}
    clock.now -= 5 * DAY  # a replica whose clock is behind: a rating "from the future"
    assert rounded(store.ratings("optimize", "sql"), 4) == {"m1": (1.0, 0.6),  # counts whole
                                                            "m2": (0.7071, 0.7071)}


def test_the_lua_script_and_the_python_credit_agree(redis_client, prefix):
    """The same ratings, corrections and clock on Redis and in-process give one tally."""
    clock, rng = Clock(), random.Random(7)
    stores = _decaying_stores(redis_client, prefix, clock, half_life_s=3 * DAY)
    ids = [f"r{i}" for i in range(30)]
    for i, rid in enumerate(ids):
        for store in stores:
            store.log_usage(f"m{i % 3}", {}, (rid, Served(f"m{i % 3}", "optimize", "sql")))
    for _ in range(120):
        rid, quality = rng.choice(ids), round(rng.random(), 3)
        assert stores[0].rate(rid, quality) == stores[1].rate(rid, quality)
        clock.now += rng.uniform(0, DAY)
    remote, local = (s.ratings("optimize", "sql") for s in stores)
    assert remote.keys() == local.keys() == {"m0", "m1", "m2"}
    for m in remote:
        assert remote[m] == pytest.approx(local[m], rel=1e-9)


def test_without_a_half_life_ratings_never_fade(redis_client, prefix):
    clock = Clock()
    store = Store(redis_client, prefix=prefix, clock=clock, rating_half_life_s=0)
    store.log_usage("m", {}, ("r", Served("m", "optimize", "sql")))
    store.rate("r", 0.4)
    clock.now += 3650 * DAY
    assert store.ratings("optimize", "sql") == {"m": (1.0, 0.4)}


def test_a_tally_written_before_ratings_decayed_is_read_as_of_now(redis_client, prefix):
    store = Store(redis_client, prefix=prefix, clock=Clock(), rating_half_life_s=DAY)
    redis_client.hset(store.tally_key("optimize", "sql"), mapping={"n:m": 3, "q:m": "2.1"})
    assert store.ratings("optimize", "sql") == {"m": (3.0, 2.1)}
    store.log_usage("m", {}, ("r", Served("m", "optimize", "sql")))
    store.rate("r", 0.9)
    assert rounded(store.ratings("optimize", "sql")) == {"m": (4.0, 3.0)}
