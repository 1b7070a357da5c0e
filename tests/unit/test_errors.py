import httpx
import litellm
import pytest
import redis

from nodes.errors import classify

KW = dict(model="m", llm_provider="openai")


def _resp(code, headers=None):
    return httpx.Response(code, headers=headers or {}, request=httpx.Request("POST", "http://x"))


@pytest.mark.parametrize(("exc", "error_class", "action"), [
    (litellm.RateLimitError("slow down", **KW), "rate_limit", "cool_down_next"),
    (litellm.Timeout("t", **KW), "timeout", "retry"),
    (litellm.APIConnectionError("c", **KW), "connection", "retry"),
    (litellm.InternalServerError("500", **KW), "server_error", "retry"),
    (litellm.ServiceUnavailableError("503", **KW), "server_error", "retry"),
    (litellm.BadGatewayError("502", **KW), "server_error", "retry"),
    (litellm.ContextWindowExceededError("too long", **KW), "context_window", "next_larger_context"),
    (litellm.ContentPolicyViolationError("no", **KW), "content_policy", "next_other_provider"),
    (litellm.AuthenticationError("bad key", **KW), "auth", "mark_unusable_next"),
    (litellm.NotFoundError("no model", **KW), "not_found", "mark_unusable_next"),
    (litellm.BadRequestError("bad", **KW), "bad_request", "stop"),
    (litellm.UnsupportedParamsError("no temp", **KW), "unsupported", "next"),
    (ValueError("our bug?"), "unknown", "next"),
])
def test_each_litellm_error_class_maps_to_its_action(exc, error_class, action):
    failure = classify(exc)
    assert (failure.error_class, failure.action) == (error_class, action)


def test_breaker_counts_only_signs_of_an_unwell_model():
    assert classify(litellm.Timeout("t", **KW)).feeds_breaker
    assert not classify(litellm.RateLimitError("r", **KW)).feeds_breaker
    assert not classify(litellm.BadRequestError("b", **KW)).feeds_breaker
    assert not classify(litellm.ContextWindowExceededError("c", **KW)).feeds_breaker


def test_retry_after_is_honoured_when_given():
    exc = litellm.RateLimitError("r", **KW, response=_resp(429, {"retry-after": "7"}))
    assert classify(exc).retry_after_s == 7.0
    assert classify(litellm.RateLimitError("r", **KW)).retry_after_s is None


def test_retry_after_is_read_where_litellm_reads_it():
    """From `headers=` as LiteLLM's own exceptions carry it (ignored: the default 5 s), and
    from the response when the other headers lack one (ignored too)."""
    given = litellm.RateLimitError("r", **KW, headers={"Retry-After": "30"})
    assert classify(given).retry_after_s == 30.0
    response = _resp(429, {"retry-after": "12"})
    without = litellm.RateLimitError("r", **KW, response=response, headers={"x-other": "1"})
    without.litellm_response_headers = {"x-request-id": "abc"}
    assert classify(without).retry_after_s == 12.0


def _after(value: str) -> float | None:
    exc = litellm.RateLimitError("r", **KW, response=_resp(429, {"retry-after": value}))
    return classify(exc).retry_after_s


@pytest.mark.parametrize(("value", "seconds"), [
    ("0", 1.0), ("-5", 1.0),  # cooled for a second: a zero cooldown was a crash
    ("1e12", 3600.0),  # an hour at most: this one benched a model for 31,000 years
    ("inf", None), ("nan", None), ("soon", None),  # unreadable: the default cooldown
    ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0),  # a date in the past
])
def test_retry_after_is_held_within_bounds(value, seconds):
    assert _after(value) == seconds


def test_retry_after_as_an_http_date():
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < _after(when) <= 120


@pytest.mark.parametrize(("exc", "outage"), [
    (redis.ConnectionError("refused"), True),
    (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), True),
    (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
     True),
    (redis.ResponseError("Command # 1 (LPUSH k v) of pipeline caused error: MISCONF Redis is "
                         "configured to save RDB snapshots, but it's currently unable"), True),
    (redis.ResponseError("Error running script (call to f_4f2d): @user_script:2: "
                         "-READONLY You can't write against a read only replica."), True),
    (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
     False),
    (redis.ResponseError("ERR unknown command 'OOMKILL'"), False),
])
def test_what_counts_as_redis_refusing_service(exc, outage):
    """A refusal in a pipeline (MISCONF) escaped as an error after the model was paid."""
    from graph.outage import is_outage

    assert is_outage(exc) is outage


def test_an_answer_to_a_call_begun_before_a_failure_ends_no_outage(caplog):
    """Under concurrency, an in-flight call that succeeded after another one failed reset
    the outage, so every later failure warned again and Redis was not left alone."""
    from graph.outage import Outage

    now = [100.0]
    outage = Outage(retry_interval_s=5.0, clock=lambda: now[0])

    def slow_call_meanwhile_another_fails():
        now[0] += 0.5
        outage.failed(redis.ConnectionError("refused"))  # another thread, mid-call
        return "ok"

    with caplog.at_level("INFO", logger="graph.outage"):
        assert outage.guard(slow_call_meanwhile_another_fails, lambda: "local") == "ok"
        assert outage.down and outage.resting
        assert outage.guard(lambda: "remote", lambda: "local") == "local"
        now[0] += 5.0  # the rest is over: a call begun now that answers ends the outage
        assert outage.guard(lambda: "remote", lambda: "local") == "remote"
    assert not outage.down
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "redis unavailable", "redis answers again"]


def test_an_exhausted_connection_pool_sheds_calls_for_a_second_not_five(caplog):
    """Under a burst, the pool's "No connection available." was taken for an outage: the
    whole process served from its own state for 5 s, skipping checkpoints."""
    from graph.outage import Outage

    now = [100.0]
    outage = Outage(retry_interval_s=5.0, clock=lambda: now[0])

    def exhausted():
        raise redis.ConnectionError("No connection available.")

    with caplog.at_level("WARNING", logger="graph.outage"):
        assert outage.guard(exhausted, lambda: "local") == "local"
        assert not outage.down and not outage.resting  # Redis is not taken for down
        # the next second's calls do not wait on the pool again (5 s each, several a request)
        assert outage.guard(lambda: "remote", lambda: "local") == "local"
        now[0] += 1.0
        assert outage.guard(exhausted, lambda: "local") == "local"
        now[0] += 1.0
        assert outage.guard(lambda: "remote", lambda: "local") == "remote"
        now[0] += 1.0

        async def aexhausted():
            raise redis.ConnectionError("No connection available.")

        import asyncio

        assert asyncio.run(outage.aguard(aexhausted, "local")) == "local"  # the checkpointer's
        assert not outage.down
    [warning] = caplog.records  # said once per interval
    assert "connection pool exhausted" in warning.getMessage()
    now[0] += 1.0
    with pytest.raises(redis.ResponseError):  # a refusal of this call still propagates
        outage.guard(lambda: (_ for _ in ()).throw(redis.ResponseError("WRONGTYPE x")),
                     lambda: "local")
