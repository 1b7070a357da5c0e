"""One graph try is one request to the provider: no SDK retries underneath the graph's."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from graph.state import RunSettings
from tests.conftest import PORT_HEALER

SERVED_BY_SERVER = "gpt-4o-mini-self-heal"  # openai/gpt-4o-mini: LiteLLM's OpenAI SDK path


@pytest.fixture
def failing_openai(monkeypatch) -> Iterator[list[str]]:
    """A loopback stand-in for OpenAI's API that answers every request with a 500."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  # http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hits.append(self.path)
            body = json.dumps({"error": {"message": "boom", "type": "server_error"}}).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{server.server_port}/v1")
    yield hits
    server.shutdown()


def test_each_try_is_one_provider_request(selection, services, failing_openai):
    """The OpenAI SDK retried each 500 twice more on its own: 9 requests for 3 tries."""
    out = selection.invoke({"context": {**PORT_HEALER, "max_latency_ms": None},
                            "prompt": "free port 8080"},
                           context=RunSettings(require_keys=False, mock_responses={
                               SERVED_BY_SERVER: None, "*": "litellm.RateLimitError"}))
    tries = [a for a in out["attempts"] if a["model_id"] == SERVED_BY_SERVER]
    assert [a["error_class"] for a in tries] == ["server_error"] * 3
    assert len(failing_openai) == len(tries)
