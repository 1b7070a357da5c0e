"""Spans leave the process over OTLP when the standard variables say where (CLI, service)."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from graph import telemetry
from tests.integration.test_cli import cli, env  # noqa: F401  # env is a fixture
from tests.integration.test_service import REQUEST

RUN = ["run", "--task-type", "code_fix", "--domain", "self_heal", "--complexity", "simple",
       "--priority", "critical", "--prompt", "free port 8080", "--mock-response", "ok"]


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A local OTLP/HTTP collector: records each POST's path and body, answers 200."""
    posts: list[tuple[str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  # http.server's naming
            posts.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", posts
    server.shutdown()


def _span_names(posts: list[tuple[str, bytes]]) -> list[str]:
    names = []
    for _, body in posts:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert service["service.name"] == "model-selector"
            names += [s.name for scope in resource.scope_spans for s in scope.spans]
    return names


def test_cli_run_exports_its_spans_to_the_endpoint(env, collector):  # noqa: F811
    endpoint, posts = collector
    out = cli({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, *RUN)
    assert out.returncode == 0, out.stderr
    assert {path for path, _ in posts} == {"/v1/traces"}  # appended, as OpenTelemetry says
    names = _span_names(posts)
    assert {"model_selector.decision", "gen_ai.chat", "model_selector.outcome"} <= set(names)


@pytest.mark.parametrize("env_vars", [{}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                                           "OTEL_SDK_DISABLED": "true"}])
def test_nothing_is_set_up_without_an_endpoint_or_when_disabled(monkeypatch, env_vars):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    assert telemetry.setup_telemetry() is False


def test_a_bad_protocol_is_one_line_naming_the_variable(env, collector):  # noqa: F811
    endpoint, _ = collector
    out = cli({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, *RUN)
    assert out.returncode == 2
    assert out.stderr.strip() == ("model-selector: error: OTEL_EXPORTER_OTLP_PROTOCOL="
                                  "'http/json': expected one of http/protobuf, grpc")


def test_a_missing_exporter_names_the_package(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                        None)  # what an uninstalled package looks like to import
    with pytest.raises(ValueError, match="needs opentelemetry-exporter-otlp-proto-http: pip"):
        telemetry.setup_telemetry()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(port: int, server: subprocess.Popen, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "service never ready"
        time.sleep(0.2)


def test_service_exports_its_last_spans_when_stopped(env, collector):  # noqa: F811
    """uvicorn re-raises SIGTERM after its shutdown, so the SDK's exit hook never flushed
    the batch: every rollout lost the spans of the requests just before it."""
    endpoint, posts = collector
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "graph.service:app", "--port", str(port)],
        env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "HEALTH_PROBE_INTERVAL_S": "0",
             "OTEL_BSP_SCHEDULE_DELAY": "600000"},  # the batch leaves only when flushed
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _ready(port, server, time.monotonic() + 90)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/select", data=json.dumps(REQUEST).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200
        assert posts == []
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert "Application shutdown complete" in stderr
    names = _span_names(posts)  # FastAPI's own server spans; /v1/select runs no graph node
    assert any("/v1/select" in name for name in names), names
