"""OpenTelemetry: attribute names in one place, and a tracer.

The `gen_ai.*` names follow OpenTelemetry's GenAI semantic conventions; they are kept here
as constants because the semantic-conventions package marks them deprecated (moved out).
Without a configured SDK the API's no-op tracer is used, at near zero cost. LangSmith needs
no code: LangGraph traces every run when `LANGSMITH_TRACING=true` and a key are set.
"""

from __future__ import annotations

import os

from opentelemetry import trace

GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ERROR_TYPE = "error.type"

# The spec's own names.
MODEL_ID = "model.id"
ATTEMPT = "attempt"
TASK_TYPE = "task.type"
COST_USD = "cost.usd"
LATENCY_MS = "latency.ms"

SELECTOR_DOMAIN = "model_selector.domain"
SELECTOR_AGENT = "model_selector.agent_id"
SELECTOR_PRIMARY = "model_selector.primary"
SELECTOR_CHAIN = "model_selector.chain"
SELECTOR_CANDIDATES = "model_selector.candidates"
SELECTOR_EXCLUDED = "model_selector.excluded"
SELECTOR_ACTION = "model_selector.action"
SELECTOR_STOP = "model_selector.stop_reason"

tracer = trace.get_tracer("model_selector")


def setup_telemetry(endpoint: str | None = None) -> None:
    """Export spans over OTLP (gRPC or HTTP exporter, whichever is installed).

    `endpoint` defaults to `OTEL_EXPORTER_OTLP_ENDPOINT`; nothing is set up without one.
    """
    endpoint = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:  # the HTTP exporter is the lighter install
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore
            OTLPSpanExporter,
        )
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
