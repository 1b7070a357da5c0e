"""The graph LangGraph Studio (`langgraph dev`) serves, named by `langgraph.json`.

`langgraph dev` refuses a graph compiled with its own checkpointer (the server brings its
persistence), so this one is compiled without one; `selection_graph` keeps the Redis
checkpointer for in-process use. Services come from the environment as everywhere else
(`REDIS_URL` or the embedded Redis, `REGISTRY_PATH`, ...). To run offline from Studio,
put `{"mock_responses": {"*": "some text"}, "require_keys": false}` in the run's context.
"""

from __future__ import annotations

from langgraph.graph.state import CompiledStateGraph

from graph.builder import compile_graph
from graph.services import Services

graph: CompiledStateGraph = compile_graph(Services.from_env(), checkpointer=None)
