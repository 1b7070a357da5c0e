"""OpenTelemetry: attribute names in one place, and a tracer.

The `gen_ai.*` names follow OpenTelemetry's GenAI semantic conventions; they are kept here
as constants because the semantic-conventions package marks them deprecated (moved out).
Without a configured SDK the API's no-op tracer is used, at near zero cost. LangSmith needs
no code: LangGraph traces every run when `LANGSMITH_TRACING=true` and a key are set.
"""

from __future__ import annotations

import importlib
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
SELECTOR_SUCCESS = "model_selector.success"
SELECTOR_REQUEST = "model_selector.request_id"

tracer = trace.get_tracer("model_selector")


def mark_failed(span: trace.Span, error_class: str) -> None:
    """Error status, so backends that filter on it find the span. No exception event: a
    provider's message may carry a key; its redacted text is in the run's `attempts`."""
    span.set_status(trace.Status(trace.StatusCode.ERROR, error_class))


def flush(timeout_s: float = 5.0) -> None:
    """Export the spans still batched. For a server stopping: uvicorn re-raises SIGTERM
    after its shutdown, so the SDK's exit hook, which would flush them, never runs."""
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:  # the API's no-op provider has none
        force_flush(int(timeout_s * 1000))


_EXPORTERS = {
    "http/protobuf": ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                      "opentelemetry-exporter-otlp-proto-http"),
    "grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
             "opentelemetry-exporter-otlp-proto-grpc"),
}


def setup_telemetry() -> bool:
    """Export spans over OTLP when `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set.

    For the processes this package runs (the HTTP service, the CLI's `run`); a process that
    embeds the graph sets up its own SDK and gets the spans wherever it sends them. The
    exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables itself (endpoint, headers,
    timeout), so they mean what OpenTelemetry says: over HTTP a bare endpoint gets
    `/v1/traces` appended. `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` picks `http/protobuf`
    (the default, in the `service` extra) or `grpc`. Not `opentelemetry-instrument`: that
    would add the distro and auto-instrumentation for one exporter. Returns whether one
    was set up; a bad protocol or a missing exporter package is a ValueError naming the fix.
    """
    endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    variable, protocol = next(
        ((v, p) for v in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
         if (p := os.environ.get(v))), (None, "http/protobuf"))
    if protocol not in _EXPORTERS:
        raise ValueError(f"{variable}={protocol!r}: expected one of {', '.join(_EXPORTERS)}")
    module, package = _EXPORTERS[protocol]
    try:
        exporter = importlib.import_module(module).OTLPSpanExporter
    except ImportError:
        raise ValueError(f"OTLP export over {protocol} needs {package}: pip install "
                         f"{package} (or unset OTEL_EXPORTER_OTLP_ENDPOINT)") from None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True  # set up already (here, or by the process itself): that one stays
    # OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES, when they name the service, win
    named = (os.environ.get("OTEL_SERVICE_NAME")
             or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    resource = Resource.create({} if named else {SERVICE_NAME: "model-selector"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter()))  # flushed at exit, or flush()
    trace.set_tracer_provider(provider)
    return True
