"""The selection graph end to end: real LangGraph, real LiteLLM call path (mock_response),
real Redis for state, usage and checkpoints."""

from __future__ import annotations

import json
import time

import litellm
import pytest

from graph.state import RunSettings
from tests.conftest import PORT_HEALER, QUERY_OPTIMIZER, Clock

PROMPT = "Port 8080 is occupied by 'api'. Output only a bash script that frees it."
NO_DEADLINE = {**PORT_HEALER, "max_latency_ms": None}  # retries must not race a loaded machine
PRIMARY, SECOND, THIRD = ("llama-3.3-70b-versatile", "gpt-4o-mini-self-heal",
                          "deepseek-coder-33b-instruct")


def run(graph, mocks, context=PORT_HEALER, **settings):
    request = {"context": context, "prompt": PROMPT, "system_prompt": "You are a DevOps engineer."}
    return graph.invoke(request, context=RunSettings(mock_responses=mocks, **settings))


def feedback(services):
    return [json.loads(line) for line in services.feedback.path.read_text().splitlines()]


def err(cls, msg="boom", **kw):
    return cls(msg, model="m", llm_provider="openai", **kw)


def test_success_on_the_primary(selection, services):
    out = run(selection, {"*": "fuser -k 8080/tcp"})
    assert out["success"] and out["model_used"] == PRIMARY
    assert out["response"] == "fuser -k 8080/tcp"
    assert out["fallback_triggered"] is False and out["stop_reason"] == "served"
    assert [c["model_id"] for c in out["chain"]] == [PRIMARY, SECOND, THIRD]
    assert out["candidates"][0]["score"]["total"] > out["candidates"][1]["score"]["total"]
    assert out["prompt_tokens"] > 20
    [record] = feedback(services)
    assert record["model_id"] == PRIMARY and record["success"] and record["agent_id"] == (
        "PortCollisionHealer")
    assert services.store.usage(PRIMARY)[0]["success"] is True


def test_an_unwritable_feedback_log_keeps_the_answer_the_usage_and_the_record(
        selection, services, tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log's folder should be")
    services.feedback.path = blocker / "fb.jsonl"  # as after a bad FEEDBACK_LOG_PATH
    out = run(selection, {"*": "fuser -k 8080/tcp"})
    assert out["success"] and out["response"] == "fuser -k 8080/tcp"  # paid for: returned
    assert services.store.usage(PRIMARY)[0]["success"] is True
    assert services.feedback.queued == 1
    blocker.unlink()
    run(selection, {"*": "ok"})
    assert [r["success"] for r in feedback(services)] == [True, True]


@pytest.mark.parametrize(("retry_after", "cooled_s"), [("0", 1.0), ("1e12", 3600.0)])
def test_a_429s_retry_after_cools_within_bounds(selection, services, monkeypatch, retry_after,
                                                cooled_s):
    """A Retry-After of 0 raised out of invoke; 1e12 benched the model for 31,000 years,
    and every later request that reached it then failed formatting the date."""
    import httpx

    from graph.circuit import RedisCircuits

    cooled: list[tuple[str, float]] = []
    real = RedisCircuits.cool_down
    monkeypatch.setattr(RedisCircuits, "cool_down", lambda self, model_id, seconds: (
        cooled.append((model_id, seconds)) or real(self, model_id, seconds)))
    response = httpx.Response(429, headers={"retry-after": retry_after},
                              request=httpx.Request("POST", "https://provider"))
    out = run(selection, {PRIMARY: err(litellm.RateLimitError, response=response), "*": "ok"})
    assert out["success"] and out["model_used"] == SECOND
    assert cooled == [(PRIMARY, cooled_s)]
    if cooled_s > 60:  # (a 1 s cooldown may be over by then on a loaded machine)
        nxt = run(selection, {"*": "ok"})
        assert nxt["excluded"][PRIMARY].startswith("cooling down (rate limited) until 20")


def test_failed_primary_ends_on_a_fallback_with_feedback_usage_and_history(selection, services):
    out = run(selection, {PRIMARY: "litellm.RateLimitError", "*": "ok from fallback"})
    assert out["success"] and out["model_used"] == SECOND
    assert out["fallback_triggered"] is True
    assert [(a["model_id"], a["error_class"]) for a in out["attempts"]] == [
        (PRIMARY, "rate_limit"), (SECOND, None)]
    [record] = feedback(services)
    assert record["model_id"] == SECOND and record["fallback_triggered"]
    assert record["failed_models"] == [PRIMARY]
    assert services.store.usage(SECOND)[0]["success"] is True
    assert services.store.usage(PRIMARY)[0]["success"] is False
    # the 429 cooled the primary down: the next request is excluded from it, with the reason
    nxt = run(selection, {"*": "ok"})
    assert nxt["model_used"] == SECOND
    assert nxt["excluded"][PRIMARY].startswith("cooling down")
    history = list(selection.get_state_history({"configurable": {"thread_id": out["thread_id"]}}))
    steps = [h.next[0] for h in reversed(history) if h.next]
    assert steps == ["__start__", "analyze_context", "query_registry", "score", "call_model",
                     "next_fallback", "call_model", "record_feedback"]
    assert history[0].values["model_used"] == SECOND


def test_transient_errors_retry_the_same_model_with_backoff_then_move_on(selection, services):
    out = run(selection, {PRIMARY: err(litellm.Timeout), "*": "ok"}, context=NO_DEADLINE)
    assert [a["model_id"] for a in out["attempts"]] == [PRIMARY] * 3 + [SECOND]
    assert [a["try_no"] for a in out["attempts"]] == [1, 2, 3, 1]
    # the action taken: the third timeout moved on (it said "retry", as the first two)
    assert [a["action"] for a in out["attempts"]] == ["retry", "retry", "next", None]
    assert len(services.slept) == 2  # two backoffs, injected: nothing slept for real
    assert 0 <= services.slept[0] <= 0.5 and 0 <= services.slept[1] <= 1.0
    snap = services.store.circuits.snapshot([PRIMARY])[PRIMARY]
    assert snap.failures == 3 and snap.state == "closed"  # self_heal opens at 5
    assert services.store.statuses({PRIMARY: "alive"})[PRIMARY] == "degraded"


def test_breaker_opens_at_threshold_and_excludes_the_model(selection, services):
    run(selection, {PRIMARY: err(litellm.InternalServerError), "*": "ok"}, context=NO_DEADLINE)
    out = run(selection, {PRIMARY: err(litellm.APIConnectionError), "*": "ok"}, context=NO_DEADLINE)
    # 3 + 2 failures reach self_heal's threshold of 5 mid-retry: it moves on at once
    assert [a["model_id"] for a in out["attempts"]] == [PRIMARY, PRIMARY, SECOND]
    out = run(selection, {"*": "ok"})
    assert out["excluded"][PRIMARY].startswith("circuit open until")
    assert out["model_used"] == SECOND


@pytest.mark.parametrize(("answer", "after"), [
    (litellm.RateLimitError, "closed"), (litellm.ContentPolicyViolationError, "closed"),
    (litellm.UnsupportedParamsError, "half_open"),  # LiteLLM's own check: nothing was sent
])
def test_a_probe_the_provider_answers_closes_the_circuit(services, redis_client, prefix,
                                                         checkpointer, answer, after):
    """A 429 or a refusal is no sign of an unwell model. The probe gave no verdict: the
    circuit stayed half-open, the model excluded as "probe in flight" for the lease."""
    import dataclasses

    from graph.builder import compile_graph
    from graph.store import Store

    clock = Clock(time.time())
    services = dataclasses.replace(services, clock=clock,
                                   store=Store(redis_client, prefix=prefix, clock=clock))
    selection = compile_graph(services, checkpointer)
    run(selection, {PRIMARY: err(litellm.InternalServerError), "*": "ok"}, context=NO_DEADLINE)
    run(selection, {PRIMARY: err(litellm.APIConnectionError), "*": "ok"}, context=NO_DEADLINE)

    def circuit() -> str:
        return services.store.with_circuits(lambda c: c.snapshot([PRIMARY]))[PRIMARY].state

    assert circuit() == "open"
    clock.now += 3600  # past any open timeout: the next call is the probe
    out = run(selection, {PRIMARY: err(answer), "*": "ok"}, context=NO_DEADLINE)
    assert out["attempts"][0]["model_id"] == PRIMARY and out["model_used"] == SECOND
    assert circuit() == after


def test_a_retry_the_circuit_declines_is_named_in_the_error(selection, services):
    run(selection, {PRIMARY: err(litellm.InternalServerError), "*": "ok"}, context=NO_DEADLINE)
    out = run(selection, {"*": err(litellm.APIConnectionError)}, context=NO_DEADLINE)
    assert [a["try_no"] for a in out["attempts"]] == [1, 2, 1, 2, 3, 1, 2, 3]
    assert out["stop_reason"] == "exhausted"
    assert out["error"].endswith(f"; no retry of {PRIMARY}: its circuit is open")
    # the attempt says what was done: the declined retry is amended to "next", not logged twice
    assert [a["action"] for a in out["attempts"][:2]] == ["retry", "next"]
    assert feedback(services)[-1]["error"] == out["error"]


def test_a_retry_past_the_deadline_is_declined_and_the_deadline_stops_the_request(
        selection, services):
    services.clock = Clock()  # frozen: the deadline is 0.4 s away at every decision
    services.rng.uniform = lambda lo, hi: hi  # type: ignore[method-assign]  # 0.5 s backoff
    out = run(selection, {"*": err(litellm.Timeout)}, context={**PORT_HEALER, "max_latency_ms": 400})
    assert [(a["model_id"], a["try_no"]) for a in out["attempts"]] == [
        (PRIMARY, 1), (SECOND, 1), (THIRD, 1)]
    assert services.slept == []  # no backoff slept past the deadline
    assert [a["action"] for a in out["attempts"]] == ["next"] * 3
    assert out["stop_reason"] == "deadline"
    assert out["error"].endswith("".join(  # each declined retry, not only the last
        f"; no retry of {m}: its 0.50 s backoff would pass the request's deadline"
        for m in (PRIMARY, SECOND, THIRD)))
    assert feedback(services)[-1]["error"] == out["error"]


def test_a_request_stopped_before_any_call_blames_no_model(selection, services):
    """Its record named the skipped model, listed it in failed_models, and the replay
    converter graded it 0.0 on the prompt, though it was never called."""
    ticks = iter(range(1_800_000_000, 1_800_001_000))
    services.clock = lambda: float(next(ticks))  # a second per reading: the 400 ms pass at once
    out = run(selection, {"*": "ok"}, context={**PORT_HEALER, "max_latency_ms": 400})
    assert [(a["error_class"], a["action"]) for a in out["attempts"]] == [("deadline", "stop")]
    record = feedback(services)[-1]
    assert (record["model_id"], record["failed_models"], record["stop_reason"]) == (
        None, [], "deadline")


def test_context_window_error_skips_to_a_larger_window_without_penalty(selection, services):
    # QueryOptimizer chain: claude (200k) -> qwen (32k) -> gpt-4o-mini (128k)
    out = run(selection, {"claude-3.5-sonnet": err(litellm.ContextWindowExceededError),
                          "*": "ok"}, context=QUERY_OPTIMIZER)
    assert out["model_used"] is None or out["model_used"] != "qwen-2.5-coder-32b-instruct"
    assert [a["model_id"] for a in out["attempts"]] == ["claude-3.5-sonnet"]
    assert out["stop_reason"] == "exhausted"  # no later model has a larger window than 200k
    assert services.store.circuits.snapshot(["claude-3.5-sonnet"])["claude-3.5-sonnet"].failures == 0


def test_context_window_error_moves_to_a_larger_one(selection, services):
    out = run(selection, {PRIMARY: err(litellm.ContextWindowExceededError), "*": "ok"})
    # llama (32k) -> gpt-4o-mini (128k); deepseek (16k) would not fit either
    assert out["model_used"] == SECOND


def test_content_policy_moves_to_another_provider(selection, services):
    out = run(selection, {"claude-3.5-sonnet": err(litellm.ContentPolicyViolationError),
                          "*": "ok"}, context=QUERY_OPTIMIZER)
    assert out["model_used"] == "qwen-2.5-coder-32b-instruct"
    assert services.store.statuses({"claude-3.5-sonnet": "alive"})["claude-3.5-sonnet"] == "alive"


def test_auth_failure_marks_the_model_unusable(selection, services):
    out = run(selection, {PRIMARY: err(litellm.AuthenticationError), "*": "ok"})
    assert out["model_used"] == SECOND
    nxt = run(selection, {"*": "ok"})
    assert nxt["excluded"][PRIMARY] == "unusable: auth"


def test_callers_bad_request_stops_at_once_and_blames_no_model(selection, services):
    out = run(selection, {PRIMARY: err(litellm.BadRequestError, "messages: invalid"), "*": "ok"})
    assert out["success"] is False and out["stop_reason"] == "bad_request"
    assert len(out["attempts"]) == 1
    snap = services.store.circuits.snapshot([PRIMARY])[PRIMARY]
    assert snap.failures == 0 and snap.cooling_until is None and snap.unusable is None
    assert services.store.statuses({PRIMARY: "alive"})[PRIMARY] == "alive"


def test_exhausted_chain_returns_one_error_listing_every_attempt(selection, services):
    out = run(selection, {"*": "litellm.RateLimitError"})
    assert out["success"] is False and out["stop_reason"] == "exhausted"
    assert out["response"] is None and out["model_used"] is None
    assert out["error"].startswith("all 3 attempts failed")
    for model in (PRIMARY, SECOND, THIRD):
        assert model in out["error"]
    [record] = feedback(services)
    assert record["success"] is False and record["failed_models"] == sorted([PRIMARY, SECOND, THIRD])


def test_the_error_stays_one_line_when_a_provider_message_spans_several(selection):
    out = run(selection, {"*": err(litellm.BadRequestError, "1 validation error\n  messages: bad")})
    assert out["stop_reason"] == "bad_request"
    assert "\n" not in out["error"] and "1 validation error messages: bad" in out["error"]


def test_missing_keys_exclude_hosted_models_naming_the_variable(selection, services):
    out = run(selection, {THIRD: "local answer"}, require_keys=True)
    assert out["excluded"][PRIMARY] == "missing API key: set GROQ_API_KEY"
    assert out["excluded"][SECOND] == "missing API key: set OPENAI_API_KEY"
    assert out["model_used"] == THIRD  # the local server needs no key


def test_cost_comes_from_real_usage_and_prices(selection, services):
    out = run(selection, {PRIMARY: "litellm.RateLimitError", "*": "ok"})
    # gpt-4o-mini at 0.15 / 0.60 per 1M; LiteLLM's mock reports 10 prompt + 20 output tokens
    assert out["cost_usd"] == pytest.approx((10 * 0.15 + 20 * 0.60) / 1e6)


def test_bad_input_is_rejected_naming_the_field(selection):
    with pytest.raises(Exception, match="priority"):
        selection.invoke({"context": {**PORT_HEALER, "priority": "asap"}, "prompt": PROMPT})
    with pytest.raises(ValueError, match="prompt"):
        selection.invoke({"context": PORT_HEALER, "prompt": "  "})


REFUSED_REQUESTS = [
    {"context": PORT_HEALER, "messages": [{"role": "robot", "content": "sk-pasted-key-123"}]},
    {"context": {**PORT_HEALER, "priority": "asap"}, "prompt": "sk-pasted-key-123"},
]


def _refuse(selection, request, config=None, durability="exit", asynchronous=False) -> None:
    import asyncio

    from pydantic import ValidationError

    from nodes.conversation import BadRequest

    with pytest.raises((BadRequest, ValidationError)):
        if asynchronous:
            asyncio.run(selection.ainvoke(request, config, durability=durability))
        else:
            selection.invoke(request, config, durability=durability)


@pytest.mark.parametrize("durability", ["exit", "sync", "async"])
@pytest.mark.parametrize("refused", REFUSED_REQUESTS)
@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_refused_request_leaves_no_checkpoint(selection, prefix, durability, refused,
                                                asynchronous):
    """Its thread id is never returned, and the checkpoint kept the refused input. Only
    that thread goes: another request's stays."""
    selection.invoke({"context": PORT_HEALER, "prompt": "sk-served-key-456"},
                     context=RunSettings(mock_responses={"*": "ok"}), durability=durability)
    _refuse(selection, refused, durability=durability, asynchronous=asynchronous)
    assert _keys_holding("pasted", f"{prefix}lg") == []
    assert _keys_holding("served", f"{prefix}lg")  # the check can see a checkpoint


@pytest.mark.parametrize("forged", [False, True])
def test_a_refusal_on_a_chosen_thread_stays_in_its_history(selection, prefix, forged):
    """Even with the graph's private "minted" flag copied into the caller's config."""
    from graph.checkpoint import NEW_THREAD

    config = {"configurable": {"thread_id": "mine", **({NEW_THREAD: True} if forged else {})}}
    selection.invoke({"context": PORT_HEALER, "prompt": "sk-served-key-456"}, config,
                     context=RunSettings(mock_responses={"*": "ok"}))
    _refuse(selection, REFUSED_REQUESTS[0], config)
    assert _keys_holding("served", f"{prefix}lg")
    assert _keys_holding("pasted", f"{prefix}lg")
    assert len(list(selection.get_state_history(config))) > 1


def test_a_refusal_while_redis_rests_asks_nothing_of_it(selection, monkeypatch):
    """The clean-up is a write like any other: skipped while Redis is left alone after a
    failure, not a socket timeout for every refused request."""
    import redis

    asked = []
    monkeypatch.setattr(selection.checkpointer.sync, "forget_minted", asked.append)
    _refuse(selection, REFUSED_REQUESTS[0])
    assert len(asked) == 1  # Redis answering: this thread's keys are deleted
    selection.checkpointer.outage.failed(redis.ConnectionError("gone"))
    _refuse(selection, REFUSED_REQUESTS[0])
    assert len(asked) == 1


def _keys_holding(text: str, prefix: str) -> list[bytes]:
    """Keys whose value holds `text`, blobs decoded (the saver stores base64 msgpack)."""
    import base64

    import redis

    from tests.conftest import REDIS_URL

    binary = redis.Redis.from_url(REDIS_URL)
    found = []
    for key in binary.scan_iter(match=f"{prefix}*"):
        kind = binary.type(key)
        values = ([binary.get(key)] if kind == b"string" else
                  list(binary.hgetall(key).values()) if kind == b"hash" else [])
        for value in filter(None, values):
            try:
                value += base64.b64decode(json.loads(value).get("d") or "")
            except (ValueError, AttributeError):
                pass  # not a blob
            if text.encode() in value:
                found.append(key)
    binary.close()
    return found


@pytest.mark.parametrize(("policy", "message"), [
    ("bogus", "policy: unknown policy 'bogus' (known: spec, cheapest, random, learned, learned-quality, model:<id>)"),
    ("model:nope", "policy: 'model:nope' pins a model the registry does not have"),
])
def test_a_bad_policy_is_rejected_before_anything_runs(selection, services, policy, message):
    from nodes.conversation import BadRequest

    with pytest.raises(BadRequest) as caught:
        run(selection, {"*": "ok"}, policy=policy)
    assert str(caught.value) == message
    assert not services.feedback.path.exists()  # not a request that was routed


def test_taskcontext_object_is_accepted_and_checkpointed_as_plain_json(selection):
    from graph.context import TaskContext

    out = selection.invoke({"context": TaskContext(**PORT_HEALER), "prompt": PROMPT},
                           context=RunSettings(mock_responses={"*": "ok"}))
    assert out["model_used"] == PRIMARY
    state = selection.get_state({"configurable": {"thread_id": out["thread_id"]}})
    assert type(state.values["context"]) is dict  # no pydantic object in the checkpoint
    assert state.values["context"]["agent_id"] == "PortCollisionHealer"


def test_a_reused_thread_id_starts_each_request_afresh(selection, services):
    thread = {"configurable": {"thread_id": "agent-7-conversation"}}
    refuse = litellm.ContentPolicyViolationError("no", model="m", llm_provider="groq")
    first = selection.invoke(
        {"context": PORT_HEALER, "prompt": "first", "system_prompt": "INTERNAL NOTES"}, thread,
        context=RunSettings(mock_responses={PRIMARY: refuse, "*": "ok"}))
    assert first["fallback_triggered"] is True
    bad = err(litellm.BadRequestError)  # the caller's fault: only the primary is tried
    second = selection.invoke({"context": PORT_HEALER, "prompt": "second"}, thread,
                              context=RunSettings(mock_responses={"*": bad}))
    assert second["stop_reason"] == "bad_request" and len(second["attempts"]) == 1
    assert second["fallback_triggered"] is False
    assert feedback(services)[-1]["fallback_triggered"] is False
    values = selection.get_state(thread).values
    assert values["messages"] == [{"role": "user", "content": "second"}]  # no stale system


def test_without_a_checkpointer_each_request_still_has_an_id(services):
    from graph.builder import compile_graph

    graph = compile_graph(services, checkpointer=None)
    ids = [graph.invoke({"context": PORT_HEALER, "prompt": PROMPT},
                        context=RunSettings(mock_responses={"*": "ok"}))["thread_id"]
           for _ in range(2)]
    assert all(ids) and ids[0] != ids[1]
    assert [r["request_id"] for r in feedback(services)] == ids
    assert {u["request_id"] for u in services.store.usage(PRIMARY)} == set(ids)


@pytest.mark.parametrize(("chosen", "named"), [(123, "123"), (0, "0")])
def test_a_numeric_thread_id_names_the_request_as_a_string(selection, services, chosen, named):
    """0 was taken for no thread id: the result named a fresh one no checkpoint was under."""
    out = selection.invoke({"context": PORT_HEALER, "prompt": PROMPT},
                           {"configurable": {"thread_id": chosen}},
                           context=RunSettings(mock_responses={"*": "ok"}))
    assert out["thread_id"] == named
    assert feedback(services)[-1]["request_id"] == named
    state = selection.get_state({"configurable": {"thread_id": out["thread_id"]}})
    assert state.values["model_used"] == PRIMARY
    selection.checkpointer.delete_thread(chosen)  # as given: an int (raised TypeError)
    assert selection.get_state({"configurable": {"thread_id": named}}).values == {}


async def test_ainvoke_has_the_same_semantics(selection, services):
    request = {"context": NO_DEADLINE, "prompt": PROMPT}
    out = await selection.ainvoke(request, context=RunSettings(
        mock_responses={PRIMARY: err(litellm.Timeout), "*": "async ok"}))
    assert out["response"] == "async ok" and out["model_used"] == SECOND
    assert [a["try_no"] for a in out["attempts"]] == [1, 2, 3, 1]
    assert len(services.slept) == 2  # awaited through services.asleep, not slept for real
    history = [s async for s in selection.aget_state_history(
        {"configurable": {"thread_id": out["thread_id"]}})]
    assert history[0].values["model_used"] == SECOND
    assert len(feedback(services)) == 1


def test_a_request_no_model_may_try_raises_and_still_leaves_its_feedback_record(selection, services):
    from nodes.selection import NoEligibleModel

    with pytest.raises(NoEligibleModel, match="llama-3.3-70b-versatile: not local"):
        run(selection, {"*": "ok"}, context={**PORT_HEALER, "require_local": True,
                                              "max_cost_usd": 0.0})
    [record] = feedback(services)
    assert record["success"] is False and record["stop_reason"] == "no_eligible_model"
    assert record["error"].startswith("no model can serve task_type='code_fix'")
    assert "prompt" not in record
    services.include_prompt = True  # FEEDBACK_INCLUDE_PROMPT=1: kept on a rejection too
    with pytest.raises(NoEligibleModel):
        selection.invoke({"context": {**PORT_HEALER, "require_local": True}, "prompt": "x"},
                         context=RunSettings(mock_responses={"*": "ok"}))
    assert feedback(services)[-1]["prompt"] == "x"


def test_a_clean_primary_is_called_without_an_admit_round_trip(selection, services, monkeypatch):
    from graph.circuit import RedisCircuits
    from graph.registry import CircuitBreakerPolicy

    sent: list[str] = []  # models whose admit script went to Redis
    real_run = RedisCircuits._run
    monkeypatch.setattr(RedisCircuits, "_run", lambda self, script, m, *a: (
        sent.append(m) if script is self._admit else None) or real_run(self, script, m, *a))
    assert run(selection, {"*": "ok"})["model_used"] == PRIMARY
    assert sent == []  # query_registry's reading, fractions of a ms old, answered it

    # a failure on record: Redis is asked (it answers "closed"), and the success resets it
    services.store.with_circuits(lambda c: c.record_failure(PRIMARY, CircuitBreakerPolicy()))
    assert run(selection, {"*": "ok"})["model_used"] == PRIMARY
    assert sent == [PRIMARY]
    assert services.store.circuits.snapshot([PRIMARY])[PRIMARY].failures == 0


def test_an_exception_mock_is_raised_as_a_fresh_copy_on_every_call(selection):
    """Raising one instance again and again would grow its traceback call after call."""
    refusal = err(litellm.ContentPolicyViolationError, "refused")
    outs = [run(selection, {PRIMARY: refusal, "*": "ok"}) for _ in range(3)]
    assert refusal.__traceback__ is None and refusal.__context__ is None  # never raised itself
    assert [o["model_used"] for o in outs] == [SECOND] * 3
    assert {o["attempts"][0]["error_class"] for o in outs} == {"content_policy"}
    assert len({o["attempts"][0]["error"] for o in outs}) == 1


def test_the_copy_keeps_type_message_and_attributes():
    timeout = err(litellm.Timeout, "slow")
    copy = RunSettings(mock_responses={"*": timeout}).mock_for("any")
    assert copy is not timeout and type(copy) is litellm.Timeout
    assert str(copy) == str(timeout) and copy.llm_provider == "openai" and copy.model == "m"
    assert RunSettings(mock_responses={"*": "text"}).mock_for("any") == "text"
    settings = RunSettings(mock_responses={"*": timeout, "real": None})
    assert settings.is_mocked("any") and not settings.is_mocked("real")


def test_closing_a_stream_early_closes_langgraphs_own(selection, monkeypatch):
    """`aclose()` on the minted thread's stream reached LangGraph's loop only later, in a
    finaliser nobody awaited (its model call uncancelled, its errors unseen)."""
    import asyncio

    from langgraph.graph.state import CompiledStateGraph

    inner = []
    astream = CompiledStateGraph.astream

    def kept(self, *args, **kwargs):
        inner.append(astream(self, *args, **kwargs))
        return inner[-1]

    monkeypatch.setattr(CompiledStateGraph, "astream", kept)

    async def first_step_only() -> None:
        stream = selection.astream({"context": PORT_HEALER, "prompt": PROMPT},
                                   context=RunSettings(mock_responses={"*": "ok"}))
        await anext(stream)
        await stream.aclose()
        assert inner[0].ag_frame is None  # closed, not merely unreferenced

    asyncio.run(first_step_only())


def test_another_checkpointer_forgets_a_refused_request_through_delete_thread(services):
    from langgraph.checkpoint.memory import InMemorySaver

    from graph.builder import compile_graph

    saver = InMemorySaver()
    selection = compile_graph(services, saver)
    selection.invoke({"context": PORT_HEALER, "prompt": PROMPT},
                     context=RunSettings(mock_responses={"*": "ok"}))
    kept = set(saver.storage)
    _refuse(selection, REFUSED_REQUESTS[0])
    assert set(saver.storage) == kept and len(kept) == 1


def test_a_fork_leaves_the_original_branch_as_it_was(selection):
    """Blob keys hold the channel's version; with 1, 2, 3 the fork from an older checkpoint
    minted the same versions and wrote over the original's values (InMemorySaver's are
    unique to their branch)."""
    config = {"configurable": {"thread_id": "forked"}}
    first = selection.invoke({"context": PORT_HEALER, "prompt": PROMPT}, config,
                             context=RunSettings(mock_responses={"*": "FIRST"}))
    original = selection.get_state(config).config
    before_call = next(s for s in selection.get_state_history(config)
                       if s.next == ("call_model",))
    fork = selection.invoke(None, before_call.config,
                            context=RunSettings(mock_responses={"*": "SECOND"}))
    assert (first["response"], fork["response"]) == ("FIRST", "SECOND")
    assert selection.get_state(original).values["response"] == "FIRST"
    assert selection.get_state(config).values["response"] == "SECOND"  # the latest: the fork


def test_versions_rise_past_those_of_threads_saved_before(checkpointer):
    """Plain 1, 2, 3 were stored before: a resumed thread must still see later ones as new."""
    versions = [checkpointer.get_next_version(None, None)]
    for _ in range(3):
        versions.append(checkpointer.get_next_version(versions[-1], None))
    assert versions == sorted(set(versions)) and versions[0] > 7
    assert checkpointer.get_next_version(7, None) > 7
    assert checkpointer.get_next_version(versions[0], None) != versions[1]  # a fork's differs


def test_ainvoke_works_from_one_event_loop_after_another(selection):
    """`asyncio.run(graph.ainvoke(...))` twice: the async Redis client belonged to the first
    loop, and every later run failed with "Event loop is closed"."""
    import asyncio

    config = {"configurable": {"thread_id": "two-loops"}}
    for _ in range(3):
        out = asyncio.run(selection.ainvoke({"context": PORT_HEALER, "prompt": PROMPT}, config,
                                            context=RunSettings(mock_responses={"*": "ok"})))
        assert out["success"]
    history = asyncio.run(_history(selection, config))
    assert len(history) > 3  # every run's checkpoints, read from yet another loop


async def _history(selection, config) -> list:
    return [s async for s in selection.aget_state_history(config)]


def test_a_configured_copy_still_takes_ratings(selection, services):
    """`with_config` and `copy` rebuilt the graph without `services`: `rate` raised."""
    paused = selection.copy({"interrupt_before_nodes": ["call_model"]})
    tagged = selection.with_config({"tags": ["agent-7"]})
    assert paused.services is services and tagged.services is services
    out = tagged.invoke({"context": PORT_HEALER, "prompt": PROMPT},
                        context=RunSettings(mock_responses={"*": "ok"}))
    assert tagged.rate(out["thread_id"], 0.9)["model_id"] == out["model_used"]


def test_a_loops_client_is_let_go_when_the_loop_closes(checkpointer):
    """Each `asyncio.run` left its loop, a client and a socket alive: the saver kept for
    the loop pointed back at it."""
    import asyncio
    import gc

    async def read() -> None:
        await checkpointer.aget_tuple({"configurable": {"thread_id": "none"}})

    for _ in range(5):
        asyncio.run(read())
    gc.collect()
    assert len(checkpointer._by_loop) <= 1  # noqa: SLF001  # the last loop's, at most
