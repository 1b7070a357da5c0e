"""model-selector: pick the model for an agent's task, call it, fall back, record, learn.

`selection_graph` is built on first access (it connects to Redis), so `import graph` stays
cheap for the CLI and for code that only needs the types.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices at import

from graph.context import TaskContext  # noqa: E402
from graph.state import RunSettings, SelectionInput, SelectionOutput  # noqa: E402

__all__ = ["RunSettings", "SelectionInput", "SelectionOutput", "TaskContext",
           "selection_graph", "build_graph", "compile_graph"]

_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name == "selection_graph":
        if name not in _built:
            from graph.builder import default_graph

            _built[name] = default_graph()
        return _built[name]
    if name in ("build_graph", "compile_graph"):
        from graph import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'graph' has no attribute {name!r}")
