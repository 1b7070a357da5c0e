"""OpenTelemetry spans for the decision, every call and the outcome; no secret in them."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from graph.state import RunSettings
from tests.conftest import PORT_HEALER

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans():
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def test_spans_describe_the_decision_each_attempt_and_the_outcome(selection, spans, monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk_secretsecretsecret123")
    out = selection.invoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                           context=RunSettings(mock_responses={
                               "llama-3.3-70b-versatile": "litellm.RateLimitError", "*": "ok"}))
    by_name = {}
    statuses = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(dict(span.attributes))
        statuses.setdefault(span.name, []).append(span.status)
    [decision] = by_name["model_selector.decision"]
    assert decision["model_selector.primary"] == "llama-3.3-70b-versatile"
    assert list(decision["model_selector.chain"]) == [c["model_id"] for c in out["chain"]]
    assert decision["model_selector.excluded"] == len(out["excluded"])
    calls = by_name["gen_ai.chat"]
    assert [c["model.id"] for c in calls] == ["llama-3.3-70b-versatile", "gpt-4o-mini-self-heal"]
    assert calls[0]["error.type"] == "rate_limit"
    failed, served = statuses["gen_ai.chat"]  # a backend filtering on errors finds the first
    assert (failed.status_code, failed.description) == (StatusCode.ERROR, "rate_limit")
    assert served.status_code == StatusCode.UNSET
    assert calls[1]["gen_ai.system"] == "openai" and calls[1]["gen_ai.request.max_tokens"] == 4096
    assert calls[1]["gen_ai.usage.output_tokens"] == 20
    [outcome] = by_name["model_selector.outcome"]
    assert outcome["model_selector.stop_reason"] == "served"
    assert outcome["cost.usd"] == pytest.approx(out["cost_usd"])
    assert outcome["model_selector.success"] is True
    assert outcome["model_selector.request_id"] == out["thread_id"]  # joins the feedback log
    assert statuses["model_selector.outcome"][0].status_code == StatusCode.UNSET
    assert "gsk_secret" not in str(by_name)


def test_an_unserved_request_has_an_error_outcome(selection, spans):
    out = selection.invoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                           context=RunSettings(mock_responses={"*": Exception("down")}))
    assert out["success"] is False
    [outcome] = [s for s in spans.get_finished_spans() if s.name == "model_selector.outcome"]
    assert outcome.attributes["model_selector.success"] is False
    assert outcome.status.status_code == StatusCode.ERROR
    assert outcome.status.description == out["stop_reason"]
