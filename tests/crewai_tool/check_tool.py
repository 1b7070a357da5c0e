"""The CrewAI tool in an environment that has CrewAI: run by run_crewai_check.sh.

Plain asserts, no pytest (it is not in that environment). Real Redis (db 15, a key prefix
of its own, deleted afterwards); models answer through LiteLLM's `mock_response`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import tempfile
import uuid

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = f"test-crewai-{uuid.uuid4().hex[:10]}:"
os.environ["MODEL_SELECTOR_KEY_PREFIX"] = PREFIX
os.environ["FEEDBACK_LOG_PATH"] = os.path.join(tempfile.mkdtemp(), "feedback.jsonl")

import redis
from crewai.tools import BaseTool

from graph.builder import compile_graph
from graph.crewai_tool import ModelSelectorTool
from graph.services import Services
from graph.state import RunSettings

HEALER = {"task_type": "code_fix", "domain": "self_heal", "complexity": "simple",
          "priority": "critical", "max_latency_ms": 2000, "max_cost_usd": 0.01,
          "agent_id": "PortCollisionHealer", "agent_category": "self_heal",
          "keywords": ["port", "kill", "restart", "process"]}
SCRIPT = "#!/bin/sh\nfuser -k 8080/tcp && systemctl restart api"


def offline(mock: object) -> RunSettings:
    return RunSettings(mock_responses={"*": mock}, require_keys=False)


def check() -> None:
    tool = ModelSelectorTool(settings=offline(SCRIPT))
    assert isinstance(tool, BaseTool) and tool.name == "model_selector"
    fields = set(tool.args_schema.model_fields)
    assert {"task_type", "domain", "complexity", "priority", "prompt", "system_prompt"} <= fields

    answer = tool.run(**HEALER, prompt="Port 8080 is taken by 'api'. Bash only.",
                      system_prompt="You are a DevOps engineer.")
    assert answer == SCRIPT, answer
    answer = asyncio.run(tool.arun(**HEALER, prompt="Port 8080 is taken by 'api'."))
    assert answer == SCRIPT, answer

    try:  # CrewAI validates against args_schema and names the field
        tool.run(**{**HEALER, "domain": "cooking"}, prompt="x")
        raise AssertionError("a bad domain was accepted")
    except ValueError as exc:
        assert "domain" in str(exc), exc

    # what an agent's model writes: a comma-separated list; the fields described for it
    answer = tool.run(**{**HEALER, "keywords": "port, kill"}, prompt="Port 8080 is taken.")
    assert answer == SCRIPT, answer
    schema = tool.args_schema.model_json_schema()["properties"]
    assert "shell_scripting" in schema["task_type"]["description"], schema["task_type"]
    # a bad argument is named, its value never echoed (it could be a pasted key), on the
    # paths CrewAI takes: its own validation before _run, and the agent's structured tool
    pasted = {**HEALER, "max_cost_usd": "sk-abcdefghijklmnop12345", "prompt": "x"}
    for call in (lambda: tool.run(**pasted), lambda: tool.to_structured_tool().invoke(pasted)):
        try:
            said = str(call())
        except ValueError as exc:
            said = str(exc)
        assert "max_cost_usd" in said and "sk-abc" not in said, said
    answer = tool._run(**pasted)
    assert answer.startswith("model-selector: invalid request: max_cost_usd: "), answer
    assert "sk-abc" not in answer, answer

    no_sleep = dataclasses.replace(Services.from_env(), sleep=lambda _s: None)
    failing = ModelSelectorTool(settings=offline(Exception("provider down")),
                                selection=compile_graph(no_sleep, None))
    answer = failing.run(**HEALER, prompt="Port 8080 is taken by 'api'.")
    assert answer.startswith("model-selector: no model served the request"), answer
    assert "llama-3.3-70b-versatile try 1: " in answer and "provider down" in answer, answer

    answer = tool.run(**{**HEALER, "require_local": True, "max_cost_usd": 0}, prompt="x")
    assert answer.startswith("model-selector: no model can serve"), answer
    assert "not local (require_local is set)" in answer, answer

    structured = tool.to_structured_tool()
    assert structured.name == "model_selector"


def main() -> int:
    try:
        check()
    finally:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)
    print("crewai tool check: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
