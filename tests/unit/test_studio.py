"""langgraph.json and graph/studio.py: what `langgraph dev` (LangGraph Studio) loads.

Studio draws the graph from `get_graph()`; the on-error edges must be visible there, and
the graph must carry no checkpointer of its own (the dev server refuses one).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
NODES = ("analyze_context", "query_registry", "score", "call_model", "next_fallback",
         "record_feedback")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")  # conftest sets it
CONDITIONAL = {("call_model", "next_fallback"), ("call_model", "record_feedback"),
               ("next_fallback", "call_model"), ("next_fallback", "record_feedback")}


@pytest.fixture
def studio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """graph.studio imported afresh on the test Redis under a key prefix of its own."""
    prefix = f"test-studio-{uuid.uuid4().hex[:10]}:"
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("MODEL_SELECTOR_KEY_PREFIX", prefix)
    monkeypatch.setenv("FEEDBACK_LOG_PATH", str(tmp_path / "feedback.jsonl"))
    import graph.studio

    yield importlib.reload(graph.studio)
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_langgraph_json_names_an_existing_graph() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    assert config["env"]["LANGGRAPH_CLI_NO_ANALYTICS"] == "1"
    for spec in config["graphs"].values():
        location, attribute = spec.rsplit(":", 1)
        if location.endswith(".py"):
            path = (ROOT / location).resolve()
            assert path.is_file(), spec
            module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        else:
            module_name = location
        assert importlib.util.find_spec(module_name) is not None, spec
        assert f"\n{attribute}" in (ROOT / (module_name.replace(".", "/") + ".py")).read_text()


def test_studio_graph_has_no_checkpointer(studio: ModuleType) -> None:
    assert studio.graph.checkpointer is None


def test_studio_drawing_shows_every_node_and_the_fallback_loop(studio: ModuleType) -> None:
    drawn = studio.graph.get_graph()
    mermaid = drawn.draw_mermaid()
    for node in NODES:
        assert f"\t{node}({node})" in mermaid, node
    for source, target in CONDITIONAL:
        assert f"{source} -.-> {target};" in mermaid, (source, target)
    conditional = {(e.source, e.target) for e in drawn.edges if e.conditional}
    assert conditional == CONDITIONAL


def test_studio_graph_runs_with_settings_from_the_run_context(studio: ModuleType) -> None:
    """What a Studio user does to run offline: mock responses in the run's context."""
    from graph.state import RunSettings

    context = {"task_type": "code_fix", "domain": "self_heal", "complexity": "simple",
               "priority": "critical", "max_latency_ms": 2000, "max_cost_usd": 0.01}
    out = studio.graph.invoke(
        {"context": context, "prompt": "free port 8080"},
        context=RunSettings(mock_responses={"*": "fuser -k 8080/tcp"}, require_keys=False),
    )
    assert out["success"] and out["response"] == "fuser -k 8080/tcp"
    assert out["model_used"] == "llama-3.3-70b-versatile"


def test_studio_can_show_the_input_and_output_forms(studio: ModuleType) -> None:
    """Studio builds its input form and output view from these JSON schemas."""
    inputs = studio.graph.get_input_jsonschema()
    assert {"context", "prompt", "messages"} <= set(inputs["properties"])
    assert "context" in inputs["required"]
    outputs = studio.graph.get_output_jsonschema()
    assert {"success", "model_used", "response", "error"} <= set(outputs["properties"])
