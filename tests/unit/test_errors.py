import httpx
import litellm
import pytest

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
