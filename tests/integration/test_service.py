"""The HTTP service on a real Redis (db 15, a unique key prefix), models mocked via LiteLLM.

Each test builds its own app through `create_app`, so it can choose the Redis URL, the
registry and the mock responses; the lifespan runs inside `with TestClient(app)`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from graph.service import create_app
from graph.services import Services
from graph.state import RunSettings
from tests.conftest import rounded

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "sk-test-secret-value-123"
PORT_COLLISION_HEALER = {  # the spec's usage example 1
    "task_type": "code_fix", "domain": "self_heal", "complexity": "simple",
    "priority": "critical", "max_latency_ms": 2000, "max_cost_usd": 0.01,
    "agent_id": "PortCollisionHealer", "agent_category": "self_heal",
    "keywords": ["port", "kill", "restart", "process"],
}
REQUEST = {"context": PORT_COLLISION_HEALER,
           "prompt": "Port 8080 is occupied by service 'api'. Output ONLY a bash script.",
           "system_prompt": "You are an expert DevOps engineer."}
SPEC_CHAIN = ["llama-3.3-70b-versatile", "gpt-4o-mini-self-heal", "deepseek-coder-33b-instruct"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Test Redis, a fresh key prefix, a temporary feedback log and a key that must not leak."""
    prefix = f"test:service:{uuid.uuid4().hex}:"
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("MODEL_SELECTOR_KEY_PREFIX", prefix)
    monkeypatch.setenv("FEEDBACK_LOG_PATH", str(tmp_path / "feedback.jsonl"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("REGISTRY_PATH", raising=False)
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def no_sleep_services() -> Services:
    """Services from the environment whose retry backoff does not sleep for real."""
    async def no_wait(_s: float) -> None:
        return None

    return dataclasses.replace(Services.from_env(), sleep=lambda _s: None, asleep=no_wait)


@pytest.fixture
def make_client(env: str) -> Iterator[Callable[..., TestClient]]:
    """Open a TestClient (lifespan included) on an app built with the given settings."""
    opened: list[TestClient] = []

    def make(mock: Any = "echo ok", **kwargs: Any) -> TestClient:
        settings = RunSettings(mock_responses={"*": mock}, require_keys=False)
        kwargs.setdefault("make_services", no_sleep_services)
        kwargs.setdefault("tune_gc", False)  # the pytest process's collector stays as it is
        client = TestClient(create_app(run_settings=settings, **kwargs))
        opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_select_returns_the_spec_chain_for_port_collision_healer(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    reply = client.post("/v1/select", json=REQUEST)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [body["primary"], *body["fallbacks"]] == SPEC_CHAIN
    assert [r["model_id"] for r in body["chain"]] == SPEC_CHAIN
    assert body["prompt_tokens"] > 0 and body["candidates"] and body["excluded"]
    assert set(body["chain"][0]["score"]) >= {"total", "capability_match"}
    assert body["chain"][0]["missing_key"] == "missing API key: set GROQ_API_KEY"


def test_select_with_keys_required_is_what_this_replica_would_run(
    make_client: Callable[..., TestClient],
) -> None:
    body = make_client().post("/v1/select", json={**REQUEST, "require_keys": True}).json()
    assert body["primary"] != SPEC_CHAIN[0]  # only OPENAI_API_KEY is set here
    assert "GROQ_API_KEY" in body["excluded"][SPEC_CHAIN[0]]


def test_select_calls_no_model(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client()
    assert client.post("/v1/select", json=REQUEST).status_code == 200
    # opened (checked) at start-up; nothing recorded, since nothing was called
    assert (tmp_path / "feedback.jsonl").read_text() == ""


def test_run_serves_with_the_primary(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client(mock="#!/bin/sh\nfuser -k 8080/tcp")
    reply = client.post("/v1/run", json=REQUEST)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    assert body["model_used"] == SPEC_CHAIN[0]
    assert body["response"] == "#!/bin/sh\nfuser -k 8080/tcp"
    assert body["stop_reason"] == "served" and body["fallback_triggered"] is False
    assert body["thread_id"]  # checkpointed in Redis, readable from any replica
    assert (tmp_path / "feedback.jsonl").read_text().count("\n") == 1


def test_run_where_every_model_fails_is_200_with_the_attempts(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(mock=Exception("provider exploded"))
    reply = client.post("/v1/run", json=REQUEST)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is False and body["response"] is None
    assert body["stop_reason"] in {"exhausted", "deadline", "budget"}
    tried = {a["model_id"] for a in body["attempts"]}
    assert tried and tried <= set(SPEC_CHAIN)
    assert all(not a["ok"] for a in body["attempts"])


@pytest.mark.parametrize(("path", "patch", "field"), [
    ("/v1/run", {"context": {**PORT_COLLISION_HEALER, "complexity": "hard"}}, "complexity"),
    ("/v1/select", {"context": {**PORT_COLLISION_HEALER, "max_cost": 1}}, "max_cost"),
    ("/v1/run", {"prompt": "   "}, "prompt"),
    ("/v1/select", {"options": {"top_k": 0}}, "top_k"),
    ("/v1/select", {"options": {"top_k": "3"}}, "top_k"),  # strict: no strings for numbers
    ("/v1/run", {"options": {"max_tokens": True}}, "max_tokens"),
    ("/v1/select", {"require_keys": "yes"}, "require_keys"),
    ("/v1/run", {"mock_responses": {"*": "x"}}, "mock_responses"),
])
def test_bad_field_is_422_naming_it(make_client: Callable[..., TestClient], path: str,
                                     patch: dict[str, Any], field: str) -> None:
    reply = make_client().post(path, json={**REQUEST, **patch})
    assert reply.status_code == 422, reply.text
    assert any(field in e["loc"] for e in reply.json()["detail"]), reply.text


def test_a_conversation_is_sent_whole_and_a_bad_one_is_422_naming_the_message(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    history = [{"role": "user", "content": "port 8080 is busy"},
               {"role": "assistant", "content": "which service holds it?"}]
    only = {"context": PORT_COLLISION_HEALER, "messages": history}
    run = client.post("/v1/run", json=only)
    assert run.status_code == 200 and run.json()["success"] is True, run.text
    select = client.post("/v1/select", json={**REQUEST, "messages": history})
    plain = client.post("/v1/select", json=REQUEST)
    assert select.json()["prompt_tokens"] > plain.json()["prompt_tokens"] + 10
    neither = client.post("/v1/run", json={"context": PORT_COLLISION_HEALER})
    assert neither.status_code == 422 and "prompt or messages" in neither.text
    for path in ("/v1/run", "/v1/select"):
        bad = client.post(path, json={**only, "messages": [*history, {"role": "robot",
                                                                     "content": "beep"}]})
        assert bad.status_code == 422 and bad.json()["error"] == "bad_request", bad.text
        assert "messages[2].role" in bad.json()["message"]


@pytest.mark.parametrize(("body", "status", "error", "says"), [
    # not UTF-8: FastAPI cannot read it at all
    (b'{"context": "\xff"}', 400, "bad_body", "not text in UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "bad_body", "could not be read (RecursionError)"),
    (b'{"context": ', 422, "validation_error", "invalid request body"),  # UTF-8 but not JSON
])
def test_a_body_that_is_not_json_is_refused_in_the_documented_shape(
        make_client: Callable[..., TestClient], body: bytes, status: int, error: str,
        says: str) -> None:
    reply = make_client().post("/v1/run", content=body,
                               headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == error and says in reply.json()["message"], reply.text


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_sent_as_another_content_type_is_told_so(
        make_client: Callable[..., TestClient], kind: str | None) -> None:
    """It got a 422 saying the body "should be a valid dictionary"."""
    import json

    headers = {"content-type": kind} if kind else {}
    reply = make_client().post("/v1/run", content=json.dumps(REQUEST).encode(), headers=headers)
    assert reply.status_code == 415, reply.text
    assert reply.json()["error"] == "unsupported_media_type"
    assert "Content-Type: application/json" in reply.json()["message"]


def test_tools_over_http_chain_tool_callers_and_return_the_calls(
        make_client: Callable[..., TestClient]) -> None:
    lsof = {"type": "function", "function": {"name": "lsof", "parameters": {
        "type": "object", "properties": {"port": {"type": "integer"}}}}}
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lsof", "arguments": '{"port": 8080}'}}
    client = make_client(mock={"content": "", "tool_calls": [call]})
    run = client.post("/v1/run", json={**REQUEST, "tools": [lsof], "tool_choice": "auto"})
    assert run.status_code == 200, run.text
    assert run.json()["tool_calls"] == [call] and run.json()["success"] is True
    select = client.post("/v1/select", json={**REQUEST, "tools": [lsof]}).json()
    assert "deepseek-coder-33b-instruct" not in [select["primary"], *select["fallbacks"]]
    assert select["excluded"]["deepseek-coder-33b-instruct"].startswith("cannot call tools")
    models = {m["id"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["llama-3.3-70b-versatile"]["tool_calling"] is True
    for path in ("/v1/run", "/v1/select"):
        bad = client.post(path, json={**REQUEST, "tools": [{"type": "function"}]})
        assert bad.status_code == 422 and "tools[0]" in bad.json()["message"], bad.text


@pytest.mark.parametrize("path", ["/v1/select", "/v1/run"])
def test_nothing_eligible_is_409_with_every_reason(make_client: Callable[..., TestClient],
                                                    path: str) -> None:
    client = make_client()
    impossible = {**PORT_COLLISION_HEALER, "require_local": True, "max_cost_usd": 0}
    reply = client.post(path, json={**REQUEST, "context": impossible})
    assert reply.status_code == 409, reply.text
    body = reply.json()
    assert body["error"] == "no_eligible_model"
    models = {m["id"] for m in client.get("/v1/models").json()["models"]}
    assert set(body["excluded"]) == models
    assert all(reason for reason in body["excluded"].values())


def test_models_summarises_the_registry(make_client: Callable[..., TestClient]) -> None:
    body = make_client().get("/v1/models").json()
    assert body["count"] == len(body["models"]) == 58
    assert body["groups"] == {"self_heal": 10, "optimize": 15, "modernize": 12, "specialized": 21}
    assert body["policies"]["self_heal"]
    assert body["policies_source"].endswith("fallback_policies.yaml")
    assert {"id", "status", "model", "api_key_env"} <= set(body["models"][0])


def test_health_and_readiness_with_redis(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_not_ready_when_redis_is_down_but_still_alive_and_selecting(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    client = make_client(checkpoints=False)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and "redis" in ready.json()["reason"]
    assert client.get("/healthz").status_code == 200  # liveness must not restart the pod
    # Degraded, not down: the decision is still made from process memory.
    assert client.post("/v1/select", json=REQUEST).json()["primary"] == SPEC_CHAIN[0]


def test_not_ready_when_the_registry_cannot_load(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("REGISTRY_PATH", str(tmp_path / "missing.yaml"))
    client = make_client(make_services=Services.from_env)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "missing.yaml" in ready.json()["reason"]
    assert client.post("/v1/select", json=REQUEST).status_code == 503
    assert client.get("/v1/models").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_no_api_key_in_any_response_or_log(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    # Provider errors that quote the key, as some SDKs do, must come back redacted.
    client = make_client(mock=Exception(f"401 invalid api key {SECRET} for org"))
    texts = [
        client.post("/v1/run", json=REQUEST).text,
        client.post("/v1/select", json={**REQUEST, "require_keys": True}).text,
        client.post("/v1/run", json={**REQUEST, "context": {
            **PORT_COLLISION_HEALER, "domain": SECRET}}).text,  # a key pasted in a field
        client.post("/v1/select", json={**REQUEST, "context": {
            **PORT_COLLISION_HEALER, "require_local": True, "max_cost_usd": 0}}).text,
        client.get("/v1/models").text,
        client.get("/readyz").text,
        client.get("/healthz").text,
    ]
    assert '"success":false' in texts[0].replace(" ", "")
    out, err = capfd.readouterr()
    for text in [*texts, caplog.text, out, err]:
        assert SECRET not in text


def test_the_service_probes_health_urls_in_the_background(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    """Nothing listens on the local servers' health ports here: the prober marks them dead."""
    monkeypatch.setenv("HEALTH_PROBE_INTERVAL_S", "0.2")
    client = make_client()
    store = client.app.state.runtime.services.store
    for _ in range(50):
        if store.statuses({"codellama-70b-instruct": "degraded"})["codellama-70b-instruct"] == "dead":
            break
        time.sleep(0.1)
    assert store.statuses({"codellama-70b-instruct": "degraded"})["codellama-70b-instruct"] == "dead"
    models = client.get("/v1/models").json()
    assert "codellama-70b-instruct" in str(models)


def _history(client: TestClient, thread_id: str) -> list[Any]:
    graph = client.app.state.runtime.graph
    return list(graph.get_state_history({"configurable": {"thread_id": thread_id}}))


def test_run_keeps_the_final_state_by_default_and_every_step_when_asked(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = make_client()
    body = default.post("/v1/run", json=REQUEST).json()
    [final] = _history(default, body["thread_id"])  # durability "exit": one checkpoint
    assert final.values["model_used"] == body["model_used"] and final.next == ()
    monkeypatch.setenv("CHECKPOINT_DURABILITY", "sync")
    stepwise = make_client()
    body = stepwise.post("/v1/run", json=REQUEST).json()
    steps = [h.next[0] for h in reversed(_history(stepwise, body["thread_id"])) if h.next]
    assert steps == ["__start__", "analyze_context", "query_registry", "score", "call_model",
                     "record_feedback"]


@pytest.mark.parametrize(("env", "message"), [
    ({"CHECKPOINT_DURABILITY": "always"},
     "CHECKPOINT_DURABILITY='always': must be one of exit, async, sync"),
    ({"HEALTH_PROBE_INTERVAL_S": "often"},
     "HEALTH_PROBE_INTERVAL_S='often': must be a non-negative float"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "udp"},
     "OTEL_EXPORTER_OTLP_PROTOCOL='udp': expected one of http/protobuf, grpc"),
    ({"FEEDBACK_LOG_PATH": "/dev/null/fb.jsonl"},
     "feedback log /dev/null/fb.jsonl (FEEDBACK_LOG_PATH) cannot be written"),
])
def test_a_bad_setting_keeps_the_service_unready_naming_the_variable(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = make_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert message in ready.text
    assert client.post("/v1/run", json=REQUEST).status_code == 503


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """Undo what the service's start-up does to this process's collector."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_freezes_what_it_built_and_raises_the_gc_threshold(
    make_client: Callable[..., TestClient], restore_gc: None,
) -> None:
    gc.unfreeze()
    client = make_client(tune_gc=True)
    assert client.get("/readyz").status_code == 200
    assert gc.get_freeze_count() > 10_000  # the registry, LiteLLM's modules, the graph
    assert gc.get_threshold()[0] == 50_000
    assert client.post("/v1/run", json=REQUEST).json()["success"] is True


def test_a_bad_gc_threshold_keeps_the_service_unready_naming_the_variable(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, restore_gc: None,
) -> None:
    monkeypatch.setenv("GC_YOUNG_THRESHOLD", "lots")
    threshold = gc.get_threshold()
    ready = make_client(tune_gc=True).get("/readyz")
    assert ready.status_code == 503
    assert "GC_YOUNG_THRESHOLD='lots': must be a non-negative int" in ready.text
    assert gc.get_threshold() == threshold


def test_an_unexpected_failure_is_a_json_500_without_secrets(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    graph = client.app.state.runtime.graph  # type: ignore[attr-defined]

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("exploded near sk-live1234567890abcdef")

    monkeypatch.setattr(graph, "ainvoke", broken)
    reply = client.post("/v1/run", json=REQUEST)  # answered, not re-raised to the server
    assert reply.status_code == 500
    assert reply.json() == {"error": "internal_error",
                            "message": "RuntimeError: exploded near [REDACTED]"}
    assert "sk-live" not in caplog.text
    assert caplog.text.count("exploded near [REDACTED]") == 2  # one record: message, traceback


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_REQUEST_BYTES", "2000")
    client = make_client()
    big = {**REQUEST, "prompt": "x" * 5000}
    declared = client.post("/v1/run", json=big)
    assert declared.status_code == 413
    assert declared.json() == {"error": "request_too_large",
                               "message": "request body over 2000 bytes (MAX_REQUEST_BYTES)"}
    body = json.dumps(big).encode()
    chunked = client.post("/v1/run", content=iter([body[:1500], body[1500:]]),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["error"] == "request_too_large"
    assert client.post("/v1/run", json=REQUEST).status_code == 200  # under it: served


def test_routing_errors_have_the_documented_shape(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "Not Found"}
    wrong = client.get("/v1/run")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"


# ------------------------------------------------------------------ ratings and policies
def _log(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]


def test_a_run_then_its_rating_is_credited_and_logged(
    make_client: Callable[..., TestClient], tmp_path: Path,
) -> None:
    client = make_client()
    run = client.post("/v1/run", json=REQUEST).json()
    assert run["success"] is True and run["thread_id"]
    reply = client.post("/v1/feedback", json={"request_id": run["thread_id"], "quality": 0.75,
                                              "comment": "worked, but slow"})
    assert reply.status_code == 200, reply.text
    record = reply.json()
    assert {k: record[k] for k in ("type", "request_id", "model_id", "domain", "task_type",
                                   "user_feedback", "replaces", "comment")} == {
        "type": "rating", "request_id": run["thread_id"], "model_id": SPEC_CHAIN[0],
        "domain": "self_heal", "task_type": "code_fix", "user_feedback": 0.75,
        "replaces": None, "comment": "worked, but slow"}
    store = client.app.state.runtime.services.store  # type: ignore[attr-defined]
    assert rounded(store.ratings("self_heal", "code_fix")) == {SPEC_CHAIN[0]: (1, 0.75)}
    assert _log(tmp_path)[-1] == record  # after the run's own record: the durable copy


def test_rating_again_replaces_the_rating(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    rid = client.post("/v1/run", json=REQUEST).json()["thread_id"]
    assert client.post("/v1/feedback", json={"request_id": rid, "quality": 1}).status_code == 200
    again = client.post("/v1/feedback", json={"request_id": rid, "quality": 0.25})
    assert again.status_code == 200, again.text
    assert again.json()["replaces"] == 1.0 and "comment" not in again.json()
    store = client.app.state.runtime.services.store  # type: ignore[attr-defined]
    assert rounded(store.ratings("self_heal", "code_fix")) == {SPEC_CHAIN[0]: (1, 0.25)}


def test_rating_an_unknown_or_unserved_request_is_404(
    make_client: Callable[..., TestClient], tmp_path: Path,
) -> None:
    client = make_client(mock=Exception("provider exploded"))
    failed = client.post("/v1/run", json=REQUEST).json()
    assert failed["success"] is False  # no answer was served: nothing to rate
    lines = len(_log(tmp_path))
    for rid in (failed["thread_id"], "no-such-request"):
        reply = client.post("/v1/feedback", json={"request_id": rid, "quality": 0.5})
        assert reply.status_code == 404, reply.text
        body = reply.json()
        assert body["error"] == "not_ratable" and "is not ratable" in body["message"]
        assert set(body) == {"error", "message"}
    assert len(_log(tmp_path)) == lines  # nothing recorded
    store = client.app.state.runtime.services.store  # type: ignore[attr-defined]
    assert store.ratings("self_heal", "code_fix") == {}


def test_rating_when_ratings_are_off_is_409(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RATING_WINDOW_S", "0")
    client = make_client()
    rid = client.post("/v1/run", json=REQUEST).json()["thread_id"]
    reply = client.post("/v1/feedback", json={"request_id": rid, "quality": 0.5})
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"] == "ratings_off"
    assert "ratings are off" in reply.json()["message"]


@pytest.mark.parametrize(("patch", "field"), [
    ({"quality": 1.5}, "quality"),
    ({"quality": -0.1}, "quality"),
    ({"quality": "0.5"}, "quality"),  # strict: no strings for numbers
    ({"quality": True}, "quality"),
    ({"request_id": ""}, "request_id"),
    ({"comment": "x" * 2001}, "comment"),
    ({"stars": 5}, "stars"),  # an unknown field
])
def test_a_bad_rating_is_422_naming_the_field(make_client: Callable[..., TestClient],
                                               patch: dict[str, Any], field: str) -> None:
    reply = make_client().post("/v1/feedback", json={"request_id": "r1", "quality": 0.5, **patch})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "validation_error"
    assert any(field in e["loc"] for e in reply.json()["detail"]), reply.text


def test_rating_with_redis_down_is_503_without_a_traceback(
    make_client: Callable[..., TestClient], env: str, tmp_path: Path,
) -> None:
    from graph.store import Store

    dead = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True)

    def services() -> Services:
        return dataclasses.replace(no_sleep_services(), store=Store(dead, prefix=env))

    client = make_client(make_services=services, checkpoints=False)
    reply = client.post("/v1/feedback", json={"request_id": "r1", "quality": 0.5})
    assert reply.status_code == 503, reply.text
    body = reply.json()
    assert body["error"] == "redis_unavailable" and set(body) == {"error", "message"}
    assert body["message"].startswith("Redis did not answer; the rating was not recorded")
    assert "Traceback" not in reply.text
    assert _log(tmp_path) == []


@pytest.mark.parametrize(("policy", "problem"), [
    ("best", "unknown policy"),
    ("model:no-such-model", "pins a model the registry does not have"),
    ("", "at least 1 character"),
])
def test_an_unknown_policy_is_422_before_the_graph_runs(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    policy: str, problem: str,
) -> None:
    client = make_client()
    graph = client.app.state.runtime.graph  # type: ignore[attr-defined]

    async def never(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the graph ran")

    monkeypatch.setattr(graph, "ainvoke", never)
    reply = client.post("/v1/run", json={**REQUEST, "options": {"policy": policy}})
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["error"] == "validation_error"
    [error] = body["detail"]
    assert error["loc"] == ["body", "options", "policy"] and problem in error["msg"]
    if policy:  # the known ones are named, the value is not echoed
        assert "spec, cheapest, random, learned, learned-quality, model:<id>" in error["msg"]
        assert policy not in reply.text
    assert _log(tmp_path) == []


def test_select_refuses_a_policy_it_cannot_apply(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    reply = client.post("/v1/select", json={**REQUEST, "options": {"policy": "learned"}})
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "options", "policy"] and "/v1/run" in error["msg"]
    spec = client.post("/v1/select", json={**REQUEST, "options": {"policy": "spec"}})
    assert spec.status_code == 200 and spec.json()["primary"] == SPEC_CHAIN[0]


def test_the_learned_policies_route_by_the_ratings(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    rid = client.post("/v1/run", json=REQUEST).json()["thread_id"]
    assert client.post("/v1/feedback", json={"request_id": rid, "quality": 0}).status_code == 200
    learned = client.post("/v1/run", json={**REQUEST, "options": {"policy": "learned"}})
    assert learned.status_code == 200, learned.text
    body = learned.json()
    assert body["success"] is True
    scores = {c["model_id"]: c["score"] for c in body["candidates"]}
    assert scores[SPEC_CHAIN[0]]["ratings"] == pytest.approx(1, rel=1e-4)  # read, decayed
    assert scores[SPEC_CHAIN[0]]["learned_quality"] < scores[SPEC_CHAIN[1]]["learned_quality"]
    # by rated quality first, the badly rated primary is no longer first
    quality = client.post("/v1/run", json={**REQUEST, "options": {"policy": "learned-quality"}})
    assert quality.status_code == 200, quality.text
    assert quality.json()["model_used"] != SPEC_CHAIN[0]
    pinned = client.post("/v1/run", json={**REQUEST,
                                          "options": {"policy": f"model:{SPEC_CHAIN[1]}"}})
    assert pinned.json()["model_used"] == SPEC_CHAIN[1]
