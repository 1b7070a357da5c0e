"""The skeleton the bench times as LangGraph's floor has the selection graph's shape."""

from __future__ import annotations

from pathlib import Path

from graph.builder import compile_graph
from graph.feedback import FeedbackLog
from graph.registry import load_registry
from graph.services import Services
from graph.store import Store

from . import common
from .skeleton import SERVED_PATH, recorded_updates, skeleton_graph


def test_skeleton_has_the_graph_shape_and_returns_the_served_result(tmp_path: Path) -> None:
    services = Services(registry=load_registry(), store=Store.in_memory(),
                        feedback=FeedbackLog(tmp_path / "fb.jsonl"))
    graph = compile_graph(services, checkpointer=None)
    updates = recorded_updates(graph, common.graph_input(), common.SETTINGS)
    skeleton = skeleton_graph(updates)

    assert set(skeleton.channels) == set(graph.channels)
    assert set(skeleton.nodes) == set(graph.nodes)
    served = skeleton.invoke(common.graph_input(), context=common.SETTINGS)
    assert served["success"] and served["model_used"] == updates["call_model"]["model_used"]
    assert set(served) == set(graph.invoke(common.graph_input(), context=common.SETTINGS))
    lines = (tmp_path / "fb.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # the recorded run and the real one; the skeleton wrote nothing
    assert tuple(updates) == SERVED_PATH
