"""The attribution tool still wraps every piece it names and times whole requests.

Run in a child process: the tool patches modules for good.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_attribution_covers_every_piece_of_a_checkpointed_request() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.attribute", "-n", "4", "--durability", "exit"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    rows = {m[1].strip(): m.groups()[1:] for line in out.splitlines()[1:]
            if (m := re.fullmatch(r"(.+?) +([\d.]+) +([\d.]+%) *([\d.]*)", line))}
    for node in ("analyze_context", "query_registry", "score", "call_model", "record_feedback"):
        assert rows[f"node {node}"][2] == "1.0", node  # called once per request
    for piece in ("llm.call: litellm.completion", "call_model: circuits admit (Lua)",
                  "query_registry: Store.live (health MGET + circuit snapshot)",
                  "record_feedback: Store.log_usage (MULTI)", "checkpointer.put",
                  "LiteLLM background work left after the return"):
        assert piece in rows, piece
    whole = float(rows["whole graph.invoke"][0])
    runtime = float(rows["LangGraph runtime (whole - nodes - checkpointer calls)"][0])
    assert 0 < runtime < whole  # the wrapped pieces neither overlap nor miss the whole
